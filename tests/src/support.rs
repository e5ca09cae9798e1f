//! Small things the harness and the tests share: free ports, the workspace's paths and
//! binaries, and polling until something holds.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A port that was free a moment ago and that this process has not handed out before.
/// The OS may give the same ephemeral port to two binds in a row once the first is closed,
/// and a cluster's balancer and node on one port fail to start (seen once in the suite);
/// ports of other processes can still clash, which shows as a failed start with a clear log.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A binary of this workspace, from the target directory this test runs from.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("SPEEDBOX_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/<profile>/deps/<test-exe> → target/<profile>
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .expect("binary directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Polls `check` every 50 ms until it returns true, or panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
