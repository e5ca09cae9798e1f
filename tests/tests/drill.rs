//! The operator's failover drill, on a small scale, against a cluster started the way users
//! start it: `scripts/cluster up` under a real supervisord, then `scripts/cluster drill`.

use std::process::Command;

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
    for i in 1..=3 {
        text.push_str(&format!(
            "[[nodes]]\nid = \"node-{i}\"\nlisten = \"127.0.0.1:{}\"\n\n",
            free_port()
        ));
    }
    std::fs::write(&config, text).unwrap();
    let down = Down(&config);
    let (ok, out) = cluster(&config, &["up"]);
    assert!(ok, "scripts/cluster up failed:\n{out}");
    assert!(out.contains("node-3") && out.contains("up"), "{out}");

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
