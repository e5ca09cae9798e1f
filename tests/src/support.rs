//! Small things the harness and the tests share: free ports, the workspace's paths and
//! binaries, and polling until something holds.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A port that is free now, below the kernel's ephemeral range, and that this process has
/// not handed out before.
///
/// Below the ephemeral range because a port is only reserved once the process under test
/// binds it, hundreds of milliseconds later (a node builds its indexes first): a port the
/// kernel had handed out for `bind(:0)` is also one it hands out to outgoing connections,
/// and the suite's own clients and database pools took one in that gap (`cannot listen on
/// 127.0.0.1:44871`, seen in `page`). Ports below the range are never given to a
/// connection. Each test binary starts at its own place (by process id) and counts up, so
/// two binaries, or two clusters of one, do not meet on a port.
pub fn free_port() -> u16 {
    const LOWEST: u16 = 10_000;
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let ceiling = ephemeral_low().max(LOWEST + 1_000);
    let span = u32::from(ceiling - LOWEST);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut port = next.unwrap_or_else(|| LOWEST + (std::process::id() * 97 % span) as u16);
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= ceiling {
            LOWEST
        } else {
            port + 1
        };
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free port between {LOWEST} and {ceiling}");
}

/// The lowest port the kernel gives to outgoing connections (Linux; 32768 elsewhere).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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
