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

fn idle(weights: &[u32]) -> impl Fn(usize) -> Option<Load> + '_ {
    |i| {
        Some(Load {
            in_flight: 0,
            weight: weights[i],
        })
    }
}

fn picks(
    algorithm: Algorithm,
    weights: &[u32],
    n: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Vec<usize> {
    let order = rotation(weights);
    (0..n)
        .map(|cursor| select(algorithm, &order, weights.len(), cursor, &load).unwrap())
        .collect()
}

#[test]
fn rotation_is_smooth_and_reduced() {
    assert_eq!(rotation(&[1, 1, 1]), [0, 1, 2]);
    assert_eq!(rotation(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(rotation(&[2, 4]), [1, 0, 1]);
    assert_eq!(rotation(&[1000]), [0]);
    assert!(rotation(&[]).is_empty());
}

#[test]
fn round_robin_order_is_weighted() {
    let weights = [1, 3];
    assert_eq!(
        picks(Algorithm::RoundRobin, &weights, 8, idle(&weights)),
        [1, 0, 1, 1, 1, 0, 1, 1]
    );
}

#[test]
fn round_robin_skips_refused_nodes() {
    let weights = [1, 1, 1];
    let load = |i| {
        (i != 1).then_some(Load {
            in_flight: 0,
            weight: 1,
        })
    };
    assert_eq!(
        picks(Algorithm::RoundRobin, &weights, 6, load),
        [0, 2, 2, 0, 2, 2]
    );
}

#[test]
fn least_outstanding_spreads_ties_in_turn() {
    let weights = [1, 1, 1];
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 6, idle(&weights)),
        [0, 1, 2, 0, 1, 2]
    );
}

#[test]
fn least_outstanding_honours_weight_when_idle() {
    let weights = [1, 3];
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 4, idle(&weights)),
        [1, 0, 1, 1]
    );
}

#[test]
fn least_outstanding_prefers_lowest_load_per_weight() {
    let weights = [1, 1, 2];
    let in_flight = [3u64, 1, 3];
    let load = |i: usize| {
        Some(Load {
            in_flight: in_flight[i],
            weight: weights[i],
        })
    };
    // node 1: 1/1, node 2: 3/2 = 1.5, node 0: 3
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 4, load),
        [1; 4]
    );
    // with node 1 excluded (already tried), node 2 wins
    let load = |i: usize| {
        (i != 1).then_some(Load {
            in_flight: in_flight[i],
            weight: weights[i],
        })
    };
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 3, load),
        [2; 3]
    );
}

#[test]
fn least_outstanding_breaks_weighted_ties_by_rotation() {
    // 2/2 on node 1 ties 1/1 on node 0; node 2 is busier
    let weights = [1, 2, 1];
    let in_flight = [1u64, 2, 5];
    let load = |i: usize| {
        Some(Load {
            in_flight: in_flight[i],
            weight: weights[i],
        })
    };
    // rotation of [1,2,1] is [1, 0, 2, 1]
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 4, load),
        [1, 0, 1, 1]
    );
}

#[test]
fn nothing_acceptable_gives_none() {
    for algorithm in [Algorithm::RoundRobin, Algorithm::LeastOutstanding] {
        assert_eq!(select(algorithm, &[0, 1], 2, 0, |_| None), None);
        assert_eq!(
            select(algorithm, &[], 0, 0, |_| Some(Load {
                in_flight: 0,
                weight: 1
            })),
            None
        );
    }
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
    let pool = Pool::new(
        PathBuf::from("cluster.toml"),
        config(
            &[("a", 8001, 1), ("b", 8002, 1), ("c", 8003, 1)],
            Algorithm::LeastOutstanding,
        ),
    );
    let before = pool.snapshot();
    before.nodes[0].force_down("refused".into());
    let busy_b = before.nodes[1].state.begin();
    let _busy_a = before.nodes[0].state.begin();

    // b removed (busy), c moves to another port (a different node), d added, a reweighted
    let diff = pool.apply(config(
        &[("a", 8001, 5), ("c", 8013, 1), ("d", 8004, 1)],
        Algorithm::RoundRobin,
    ));
    assert_eq!(diff.kept, ["a"]);
    assert_eq!(diff.added, ["c", "d"]);
    assert_eq!(diff.removed, ["b", "c"]);

    let after = pool.snapshot();
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

    pool.prune_drained();
    assert_eq!(pool.snapshot().draining.len(), 1, "b still busy");
    drop(busy_b);
    pool.prune_drained();
    assert!(pool.snapshot().draining.is_empty());
}

#[test]
fn a_draining_node_readded_keeps_its_state() {
    let pool = Pool::new(
        PathBuf::from("cluster.toml"),
        config(
            &[("a", 8001, 1), ("b", 8002, 1)],
            Algorithm::LeastOutstanding,
        ),
    );
    let b_state = Arc::clone(&pool.snapshot().nodes[1].state);
    let _busy = b_state.begin();
    pool.apply(config(&[("a", 8001, 1)], Algorithm::LeastOutstanding));
    assert_eq!(pool.snapshot().draining.len(), 1);
    let diff = pool.apply(config(
        &[("a", 8001, 1), ("b", 8002, 1)],
        Algorithm::LeastOutstanding,
    ));
    assert_eq!(diff.kept, ["a", "b"]);
    let snap = pool.snapshot();
    assert!(snap.draining.is_empty());
    assert!(Arc::ptr_eq(&snap.nodes[1].state, &b_state));
    assert_eq!(snap.nodes[1].state.in_flight(), 1);
}

#[test]
fn checks_flip_a_node_and_record_errors() {
    let snap = Snapshot::new(
        config(&[("a", 8001, 1)], Algorithm::LeastOutstanding),
        SystemTime::now(),
    );
    let a = &snap.nodes[0];
    assert_eq!(a.observe_check(Err("503".into()), 2, 2), None);
    assert_eq!(
        a.observe_check(Err("refused".into()), 2, 2),
        Some(Flip::Down)
    );
    assert!(!a.state.is_up());
    assert_eq!(a.state.health().last_error.as_deref(), Some("refused"));
    a.observe_check(Ok(Duration::from_millis(3)), 2, 2);
    assert_eq!(
        a.observe_check(Ok(Duration::from_millis(4)), 2, 2),
        Some(Flip::Up)
    );
    let health = a.state.health();
    assert!(a.state.is_up());
    assert_eq!(health.last_error, None);
    assert_eq!(health.last_check_latency_ms, Some(4));
}
