//! What a test asks [`Cluster::builder`] to start.

use crate::{free_port, Cluster, NodeProc};

/// What to start.
pub struct ClusterBuilder {
    nodes: usize,
    balancer: bool,
    balancer_toml: String,
    storage_toml: String,
    media_toml: String,
    extra_toml: String,
    uri_options: String,
    files: Vec<(String, Vec<u8>)>,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            nodes: 1,
            balancer: false,
            balancer_toml: String::new(),
            storage_toml: String::new(),
            media_toml: String::new(),
            extra_toml: String::new(),
            uri_options: String::new(),
            files: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    pub fn balancer(mut self, on: bool) -> Self {
        self.balancer = on;
        self
    }
    /// Lines added to `[balancer]`, e.g. `"fall = 1\n"`.
    pub fn balancer_toml(mut self, lines: &str) -> Self {
        self.balancer_toml.push_str(lines);
        self
    }
    /// Whole sections added to `cluster.toml`, e.g. `"[auth]\nenabled = true\n..."`.
    pub fn extra_toml(mut self, text: &str) -> Self {
        self.extra_toml.push_str(text);
        self
    }
    /// A file written at `path` (relative to the cluster's directory, where `cluster.toml`
    /// is) before anything starts, e.g. a key file.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_string(), content.into()));
        self
    }
    /// Lines added to `[media]`, e.g. `"heights = [120, 240]\n"` (its `scratch_dir` is in
    /// the cluster's directory).
    pub fn media_toml(mut self, lines: &str) -> Self {
        self.media_toml.push_str(lines);
        self
    }
    /// Options the nodes' `mongodb.uri` carries, e.g. `"retryWrites=true"` (the URI is
    /// `mongodb://127.0.0.1:PORT/?OPTIONS`).
    pub fn uri_options(mut self, options: &str) -> Self {
        self.uri_options = options.to_string();
        self
    }
    /// Lines added to `[storage]`, e.g. `"gc_grace_secs = 2\n"`.
    pub fn storage_toml(mut self, lines: &str) -> Self {
        self.storage_toml.push_str(lines);
        self
    }

    /// Starts the database, the nodes and the balancer, and waits until all answer.
    pub async fn start(self) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("speedbox-test-")
            .tempdir()
            .expect("temp dir");
        let mut cluster = Cluster {
            dir: Some(dir),
            db: None,
            db_port: free_port(),
            nodes: (0..self.nodes)
                .map(|i| NodeProc {
                    id: format!("node-{}", i + 1),
                    port: free_port(),
                    proc: None,
                })
                .collect(),
            balancer: None,
            balancer_port: free_port(),
            balancer_toml: self.balancer_toml,
            storage_toml: self.storage_toml,
            media_toml: self.media_toml,
            extra_toml: self.extra_toml,
            uri_options: self.uri_options,
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
        };
        std::fs::create_dir_all(cluster.dir().join("logs")).expect("logs dir");
        let all: Vec<usize> = (0..self.nodes).collect();
        for (path, content) in &self.files {
            cluster.write_file(path, content);
        }
        cluster.write_config(&all);
        cluster.start_db().await;
        for i in all {
            cluster.start_node(i).await;
        }
        if self.balancer {
            cluster.start_balancer().await;
        }
        cluster
    }
}
