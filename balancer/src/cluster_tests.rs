use speedbox_common::config::Algorithm;

use super::*;

fn config(nodes: &[(&str, u16, u32)], algorithm: Algorithm) -> ClusterConfig {
    let mut text = String::from(
        "[balancer]\nlisten = \"127.0.0.1:3000\"\n[mongodb]\nuri = \"mongodb://127.0.0.1:27017\"\n",
    );
    for (id, port, weight) in nodes {
        text += &format!(
            "[[nodes]]\nid = \"{id}\"\nlisten = \"127.0.0.1:{port}\"\nweight = {weight}\n"
        );
    }
    let mut cfg = ClusterConfig::from_toml(&text).unwrap();
    cfg.balancer.algorithm = algorithm;
    cfg
}

#[test]
fn snapshot_pick_skips_down_and_tried_nodes() {
    let snap = Snapshot::new(
        config(
            &[("a", 8001, 1), ("b", 8002, 1), ("c", 8003, 1)],
            Algorithm::RoundRobin,
        ),
        SystemTime::now(),
    );
    snap.nodes[1].force_down("refused".into());
    let tried = [0usize];
    let pick = snap.pick(0, |i, n| n.state.is_up() && !tried.contains(&i));
    assert_eq!(pick, Some(2));
    snap.nodes[2].force_down("refused".into());
    assert_eq!(
        snap.pick(0, |i, n| n.state.is_up() && !tried.contains(&i)),
        None
    );
}

#[test]
fn reload_keeps_state_of_surviving_nodes() {
    let cluster = Cluster::new(
        PathBuf::from("cluster.toml"),
        config(
            &[("a", 8001, 1), ("b", 8002, 1), ("c", 8003, 1)],
            Algorithm::LeastOutstanding,
        ),
    );
    let before = cluster.snapshot();
    before.nodes[0].force_down("refused".into());
    let busy_b = before.nodes[1].state.begin();
    let _busy_a = before.nodes[0].state.begin();

    // b removed (busy), c moves to another port (a different node), d added, a reweighted
    let diff = cluster.apply(config(
        &[("a", 8001, 5), ("c", 8013, 1), ("d", 8004, 1)],
        Algorithm::RoundRobin,
    ));
    assert_eq!(diff.kept, ["a"]);
    assert_eq!(diff.added, ["c", "d"]);
    assert_eq!(diff.removed, ["b", "c"]);

    let after = cluster.snapshot();
    let a = &after.nodes[0];
    assert!(Arc::ptr_eq(&a.state, &before.nodes[0].state));
    assert_eq!(a.weight, 5);
    assert!(!a.state.is_up(), "health survives the reload");
    assert_eq!(a.state.in_flight(), 1, "counters survive the reload");
    assert_eq!(a.state.health().rise_fall.consecutive_failures(), 1);
    assert!(after.nodes[1].state.is_up(), "a new node starts up");
    assert_eq!(after.nodes[1].addr.port(), 8013);
    let draining: Vec<&str> = after.draining.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(draining, ["b"], "idle c is gone at once, busy b drains");
    assert_eq!(after.config.balancer.algorithm, Algorithm::RoundRobin);

    cluster.prune_drained();
    assert_eq!(cluster.snapshot().draining.len(), 1, "b still busy");
    drop(busy_b);
    cluster.prune_drained();
    assert!(cluster.snapshot().draining.is_empty());
}

#[test]
fn a_draining_node_readded_keeps_its_state() {
    let cluster = Cluster::new(
        PathBuf::from("cluster.toml"),
        config(
            &[("a", 8001, 1), ("b", 8002, 1)],
            Algorithm::LeastOutstanding,
        ),
    );
    let b_state = Arc::clone(&cluster.snapshot().nodes[1].state);
    let _busy = b_state.begin();
    cluster.apply(config(&[("a", 8001, 1)], Algorithm::LeastOutstanding));
    assert_eq!(cluster.snapshot().draining.len(), 1);
    let diff = cluster.apply(config(
        &[("a", 8001, 1), ("b", 8002, 1)],
        Algorithm::LeastOutstanding,
    ));
    assert_eq!(diff.kept, ["a", "b"]);
    let snap = cluster.snapshot();
    assert!(snap.draining.is_empty());
    assert!(Arc::ptr_eq(&snap.nodes[1].state, &b_state));
    assert_eq!(snap.nodes[1].state.in_flight(), 1);
}
