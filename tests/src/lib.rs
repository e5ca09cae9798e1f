//! The shared harness of speedbox's integration tests.
//!
//! [`Cluster::builder`] starts a real SecantusDB, real `speedbox-node` processes and
//! optionally a real `speedbox-balancer`, each on a free loopback port, from a `cluster.toml`
//! written into a temporary directory that also holds their data and logs. Everything is
//! killed when the [`Cluster`] is dropped; the directory is kept (and its path printed) when
//! the test panicked, so the logs can be read.
//!
//! Binaries come from the cargo target directory of this test executable
//! (`cargo build --workspace --bins` first; `scripts/test` does it), SecantusDB from the
//! project's virtualenv (`scripts/setup`), started by `scripts/secantusdb` with the same
//! flags as the local cluster. `SPEEDBOX_BIN_DIR` overrides the binaries' directory, and
//! `SPEEDBOX_SECANTUSD` (read by `scripts/secantusdb`) the SecantusDB server binary.

pub mod auth;
mod builder;
pub mod client;
pub mod data;
pub mod lossy;
pub mod process;
mod support;
pub mod tus;
pub mod video;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use builder::ClusterBuilder;
pub use process::Proc;
pub use support::{bin, eventually, free_port, workspace_root};

/// How long a process gets to become ready before the test fails with its log.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running test cluster.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    db: Option<Proc>,
    db_port: u16,
    nodes: Vec<NodeProc>,
    balancer: Option<Proc>,
    balancer_port: u16,
    balancer_toml: String,
    storage_toml: String,
    media_toml: String,
    /// Sections after `[storage]`, e.g. `[auth]`.
    extra_toml: String,
    /// Appended to the nodes' `mongodb.uri` after `/?` (see [`ClusterBuilder::uri_options`]).
    uri_options: String,
    /// A client for the tests' requests (no proxy, no timeouts that would cut big bodies).
    pub http: reqwest::Client,
}

struct NodeProc {
    id: String,
    port: u16,
    proc: Option<Proc>,
}

impl Cluster {
    /// The temporary directory holding config, data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("cluster.toml")
    }

    pub fn node_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].port)
    }

    pub fn node_id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    pub fn balancer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.balancer_port)
    }

    pub fn balancer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.balancer_port)
    }

    pub fn mongodb_uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.db_port
        )
    }

    /// The database the nodes use, for inspecting what they stored.
    pub async fn db(&self) -> mongodb::Database {
        let mut opts = mongodb::options::ClientOptions::parse(self.mongodb_uri())
            .await
            .expect("uri");
        opts.server_selection_timeout = Some(Duration::from_secs(5));
        mongodb::Client::with_options(opts)
            .expect("client")
            .database("speedbox")
    }

    /// Rewrites `cluster.toml` listing only the nodes with these indexes.
    pub fn write_config(&self, nodes: &[usize]) {
        let mut text = format!(
            "[balancer]\nlisten = \"127.0.0.1:{}\"\nhealth_interval_ms = 200\nhealth_timeout_ms = 1000\n{}\n\
             [mongodb]\nuri = \"mongodb://127.0.0.1:{}{}\"\ndatabase = \"speedbox\"\nembedded = true\n\n\
             [storage]\n{}\n[media]\nscratch_dir = {:?}\n{}\n{}\n",
            self.balancer_port,
            self.balancer_toml,
            self.db_port,
            if self.uri_options.is_empty() {
                String::new()
            } else {
                format!("/?{}", self.uri_options)
            },
            self.storage_toml,
            self.dir().join("media-scratch").display().to_string(),
            self.media_toml,
            self.extra_toml
        );
        for &i in nodes {
            let n = &self.nodes[i];
            text.push_str(&format!(
                "[[nodes]]\nid = \"{}\"\nlisten = \"127.0.0.1:{}\"\n\n",
                n.id, n.port
            ));
        }
        self.write_raw_config(&text);
    }

    /// Replaces the extra sections (see [`ClusterBuilder::extra_toml`]) and rewrites
    /// `cluster.toml` with every node, as a live edit.
    pub fn set_extra_toml(&mut self, text: &str) {
        self.extra_toml = text.to_string();
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.write_config(&all);
    }

    /// Writes `content` at `path` relative to the cluster's directory, atomically
    /// (write, then rename), creating directories as needed.
    pub fn write_file(&self, path: &str, content: &[u8]) {
        let path = self.dir().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        let tmp = path.with_extension("tmp-write");
        std::fs::write(&tmp, content).expect("write file");
        std::fs::rename(&tmp, &path).expect("rename file");
    }

    /// Replaces `cluster.toml` atomically (write, then rename), as editors do.
    pub fn write_raw_config(&self, text: &str) {
        let tmp = self.dir().join("cluster.toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    /// Starts one more node process, not yet listed in `cluster.toml`; returns its index.
    pub async fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        self.nodes.push(NodeProc {
            id: format!("node-{}", i + 1),
            port: free_port(),
            proc: None,
        });
        let listed: Vec<usize> = (0..=i).collect();
        // The node reads its own entry from the file; the balancer is told separately.
        let path = self.dir().join(format!("node-{}.toml", i + 1));
        let saved = std::fs::read_to_string(self.config_path()).expect("read config");
        self.write_config(&listed);
        std::fs::copy(self.config_path(), &path).expect("copy config");
        self.write_raw_config(&saved);
        self.spawn_node(i, &path).await;
        i
    }

    async fn start_db(&mut self) {
        // scripts/secantusdb: the database's one command line (it writes the empty
        // secantusd.toml and execs the server, so the PID is the server's own).
        let mut cmd = Command::new(workspace_root().join("scripts/secantusdb"));
        // Test commands on: the replica-set tests arm `failCommand` (harmless otherwise).
        cmd.args(["--port", &self.db_port.to_string(), "--test-commands"])
            .arg("--dir")
            .arg(self.dir())
            .current_dir(self.dir());
        let log = self.dir().join("logs/secantusd.log");
        let mut proc = Proc::spawn("secantusd", cmd, &log);
        let deadline = Instant::now() + READY_TIMEOUT;
        let db = self.db().await;
        loop {
            if db.run_command(bson::doc! {"ping": 1}).await.is_ok() {
                break;
            }
            if proc.exited() || Instant::now() > deadline {
                panic!("SecantusDB did not start\n{}", proc.tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.db = Some(proc);
    }

    /// Stops the database with SIGKILL (a crash).
    pub fn kill_db(&mut self) {
        if let Some(mut db) = self.db.take() {
            db.kill();
        }
    }

    /// Starts the database again on the same port and data.
    pub async fn restart_db(&mut self) {
        self.kill_db();
        self.start_db().await;
    }

    async fn start_node(&mut self, i: usize) {
        let config = self.config_path();
        self.spawn_node(i, &config).await;
    }

    async fn spawn_node(&mut self, i: usize, config: &Path) {
        let id = self.nodes[i].id.clone();
        let mut cmd = Command::new(bin("speedbox-node"));
        cmd.arg("--config")
            .arg(config)
            .args(["--id", &id])
            .env("RUST_LOG", "info")
            .current_dir(self.dir());
        let log = self.dir().join(format!("logs/{id}.log"));
        let mut proc = Proc::spawn(&id, cmd, &log);
        let url = format!("{}/healthz", self.node_url(i));
        self.wait_ready(&mut proc, &url).await;
        self.nodes[i].proc = Some(proc);
    }

    /// SIGKILLs node `i`.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut proc) = self.nodes[i].proc.take() {
            proc.kill();
        }
    }

    /// Starts node `i` again on its port, from the current `cluster.toml`.
    pub async fn restart_node(&mut self, i: usize) {
        self.kill_node(i);
        self.start_node(i).await;
    }

    /// Sends `signal` to node `i` (`libc::SIGSTOP` hangs it, `libc::SIGCONT` lets it go on).
    pub fn signal_node(&mut self, i: usize, signal: i32) {
        if let Some(proc) = self.nodes[i].proc.as_mut() {
            proc.signal(signal);
        }
    }

    pub fn node_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].proc.as_ref().and_then(Proc::pid)
    }

    /// Starts the balancer on the current `cluster.toml`.
    pub async fn start_balancer(&mut self) {
        let mut cmd = Command::new(bin("speedbox-balancer"));
        cmd.arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .current_dir(self.dir());
        let log = self.dir().join("logs/balancer.log");
        let mut proc = Proc::spawn("balancer", cmd, &log);
        let url = format!("{}/_cluster", self.balancer_url());
        self.wait_ready(&mut proc, &url).await;
        self.balancer = Some(proc);
    }

    /// Sends a signal (e.g. `libc::SIGTERM`, `libc::SIGHUP`) to the balancer.
    pub fn signal_balancer(&mut self, signal: i32) {
        self.balancer
            .as_mut()
            .expect("balancer running")
            .signal(signal);
    }

    /// Waits for the balancer to exit after a signal; returns its exit code.
    pub fn wait_balancer_exit(&mut self, within: Duration) -> Option<i32> {
        self.balancer
            .as_mut()
            .expect("balancer running")
            .wait_exit(within)
    }

    /// The text of a process's log (`secantusd`, `node-1`, `balancer`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("logs/{name}.log"))).unwrap_or_default()
    }

    async fn wait_ready(&self, proc: &mut Proc, url: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(resp) = self.http.get(url).send().await {
                // 401: `/_cluster` with access control on; the process answers, it is up.
                if resp.status().is_success() || resp.status() == reqwest::StatusCode::UNAUTHORIZED
                {
                    return;
                }
            }
            if proc.exited() || Instant::now() > deadline {
                panic!(
                    "{} did not become ready at {url}\n{}",
                    proc.name,
                    proc.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.balancer.take();
        for node in &mut self.nodes {
            node.proc.take();
        }
        self.db.take();
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!("test cluster kept for inspection: {}", dir.keep().display());
            }
        }
    }
}
