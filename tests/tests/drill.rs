//! The operator's failover drill, on a small scale, against a cluster started the way users
//! start it: `scripts/cluster up` under a real supervisord, then `scripts/cluster drill`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use speedbox_tests::{free_port, workspace_root};

/// Stops the supervised cluster even when the test fails.
struct Down<'a>(&'a std::path::Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = cluster(self.0, &["down"]);
    }
}

fn cluster(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(workspace_root().join("scripts/cluster"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SPEEDBOX_PROFILE", "debug")
        .env("SPEEDBOX_SKIP_SETUP", "1")
        .output()
        .expect("run scripts/cluster");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What `scripts/cluster up` and `scripts/cluster status` print, read back: the supervisor's
/// state of each program, and the balancer's view of each node (`id address state …` under
/// `balancer ADDR (ALGORITHM):`).
#[derive(Debug, Default)]
struct Status {
    programs: BTreeMap<String, String>,
    nodes: Vec<(String, String, String)>,
}

fn parse_status(out: &str) -> Status {
    let mut status = Status::default();
    let mut in_view = false;
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("balancer ") && line.ends_with("):") {
            in_view = true;
        } else if in_view && line.starts_with("  ") && fields.len() >= 3 {
            let [id, address, state] = [fields[0], fields[1], fields[2]].map(str::to_owned);
            status.nodes.push((id, address, state));
        } else if !in_view
            && fields.len() >= 2
            && fields[1].len() >= 4
            && fields[1].bytes().all(|b| b.is_ascii_uppercase())
        {
            // supervisorctl: `NAME  STATE  pid …, uptime …`
            status
                .programs
                .insert(fields[0].to_owned(), fields[1].to_owned());
        }
    }
    status
}

#[test]
fn drill_passes_on_a_supervised_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("drill-{}", free_port());
    let config = dir.path().join(format!("{tag}.toml"));
    let mut text = format!(
        "[balancer]\nlisten = \"127.0.0.1:{}\"\nhealth_interval_ms = 250\n\n\
         [mongodb]\nuri = \"mongodb://127.0.0.1:{}\"\nembedded = true\ndata_dir = \"db\"\n\n",
        free_port(),
        free_port()
    );
    let nodes: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("node-{i}"), format!("127.0.0.1:{}", free_port())))
        .collect();
    for (id, listen) in &nodes {
        text.push_str(&format!(
            "[[nodes]]\nid = \"{id}\"\nlisten = \"{listen}\"\n\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let down = Down(&config);
    let (ok, out) = cluster(&config, &["up"]);
    assert!(ok, "scripts/cluster up failed:\n{out}");
    // Every program started under the supervisor, and the balancer lists every node at its
    // address (a node may still be on its way up: states are waited for below).
    let status = parse_status(&out);
    let programs: Vec<&str> = status.programs.keys().map(String::as_str).collect();
    assert_eq!(
        programs,
        ["balancer", "node-1", "node-2", "node-3", "secantusd"],
        "{out}"
    );
    for (name, state) in &status.programs {
        assert!(state == "RUNNING" || state == "STARTING", "{name}: {out}");
    }
    let listed: Vec<(&str, &str)> = status
        .nodes
        .iter()
        .map(|(id, address, _)| (id.as_str(), address.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(i, l)| (i.as_str(), l.as_str()))
        .collect();
    assert_eq!(listed, want, "{out}");
    for (id, _, state) in &status.nodes {
        assert!(state == "up" || state == "down", "{id}: {out}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = cluster(&config, &["status"]);
        let status = parse_status(&out);
        let running =
            status.programs.len() == 5 && status.programs.values().all(|s| s == "RUNNING");
        let up = status.nodes.len() == 3 && status.nodes.iter().all(|n| n.2 == "up");
        if ok && running && up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every program running and every node up after 30 s:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let (ok, out) = cluster(
        &config,
        &[
            "drill",
            "--duration",
            "25",
            "--kills",
            "3",
            "--sizes",
            "1K,64K,1M,4M",
            "--workers",
            "3",
        ],
    );
    assert!(ok, "drill failed:\n{out}");
    assert!(out.contains("drill PASSED"), "{out}");
    assert!(
        out.contains("\"acknowledged_files_lost_or_corrupt\": 0"),
        "{out}"
    );
    assert!(
        out.contains("\"partial_or_unacknowledged_files_visible\": 0"),
        "{out}"
    );
    // Every killed node came back under the supervisor and rejoined the balancer.
    assert_eq!(out.matches("  killed node-").count(), 3, "{out}");
    assert_eq!(out.matches("never").count(), 0, "{out}");
    drop(down);
    let logs = workspace_root().join("logs").join(&tag);
    let _ = std::fs::remove_dir_all(logs);
    let _ = std::fs::remove_dir_all(workspace_root().join("run").join(&tag));
}
