//! `cluster.toml`: the one file that describes a speedbox cluster.
//!
//! [`ClusterConfig::load`] reads the file through the `config` crate, applies `SPEEDBOX_`
//! environment overrides (`SPEEDBOX_MONGODB__URI=...`, `__` separates sections), and runs
//! [`ClusterConfig::validate`], which collects every problem at once and names the key of each.
//! Validation is pure so the balancer can check a live edit before it swaps it in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::forwarded::TrustedProxies;

mod limits;
mod media;
pub use limits::LimitsConfig;
pub use media::MediaConfig;

/// The default GridFS chunk size (255 KiB), as the GridFS spec and every driver use.
pub const DEFAULT_CHUNK_SIZE: u32 = 255 * 1024;
/// Chunks are stored as BSON documents, which MongoDB caps at 16 MiB.
pub const MAX_CHUNK_SIZE: u32 = 15 * 1024 * 1024;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    #[error("{path} is invalid:\n  - {}", .problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

/// The whole cluster: what every process of it reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default)]
    pub balancer: BalancerConfig,
    pub mongodb: MongoConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    /// Settings every node's HTTP server uses (`[node]`; the nodes themselves are
    /// `[[nodes]]`).
    #[serde(default)]
    pub node: NodeServerConfig,
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// Access control; absent means open (every request may do everything).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Per-principal limits, enforced by the balancer.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Video jobs (posters, HLS renditions), run by every node.
    #[serde(default)]
    pub media: MediaConfig,
}

/// `[auth]`: who may do what (tokens and signed links, see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// false: open, as without the section.
    pub enabled: bool,
    /// HMAC-SHA256 keys; the first signs new tokens, every one verifies.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Scopes anyone has without a token (e.g. `["read"]` for a public site).
    #[serde(default)]
    pub anonymous: Vec<String>,
}

/// One `[auth] keys` entry. The secret is never in the config itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` of tokens signed with it.
    pub id: String,
    /// A file holding the secret, relative to the config file.
    pub secret_file: String,
}

/// How the balancer picks a node for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// The node with the fewest requests in flight, relative to its weight.
    #[default]
    LeastOutstanding,
    /// Weighted round robin.
    RoundRobin,
}

/// `[balancer]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancerConfig {
    pub listen: SocketAddr,
    pub algorithm: Algorithm,
    /// Every node's `/healthz` is requested this often.
    pub health_interval_ms: u64,
    /// A health check slower than this counts as a failure.
    pub health_timeout_ms: u64,
    /// Consecutive failed checks that take a node down.
    pub fall: u32,
    /// Consecutive good checks that bring it back.
    pub rise: u32,
    pub connect_timeout_ms: u64,
    /// From the request's last byte sent to the node's response headers.
    pub response_timeout_ms: u64,
    /// A body (either way) that moves no byte for this long is cut.
    pub idle_timeout_ms: u64,
    /// A node that sends nothing for this long on a request the balancer may send again
    /// (no response head to a body-less GET/HEAD/DELETE/OPTIONS, or no next frame of a
    /// download it can continue elsewhere) is asked to share the work: the request, or the
    /// rest of the download, goes to another node as well and the first to answer wins.
    /// 0 turns hedging off. Default 500: a node answers a small GET in 1-5 ms and a chunk
    /// window in under 50 ms here, even under upload load; 500 ms is ten times the slow
    /// case and still well under what a person or a video player notices as a hang.
    pub first_byte_timeout_ms: u64,
    /// Consecutive first-byte timeouts (see above) that eject a node: it is marked down at
    /// once and returns only after `rise` good health checks (outlier detection). 0 never
    /// ejects.
    pub eject_after: u32,
    /// Bytes of a plain `PUT /files/...` kept after they were forwarded, so that when the
    /// node writing it dies another node can continue it from where it durably stands.
    /// Unset (the default): what a node may hold unrecorded with this file's `[storage]`,
    /// [`StorageConfig::unrecorded_max_bytes`] (8.0 MiB with its defaults), so that a
    /// change of `chunks_per_write` cannot leave the window short. Smaller values save
    /// memory and risk a continuation that cannot start (`uploads.cut` in `/_cluster`).
    /// 0 turns the protection off. See [`ClusterConfig::upload_window_bytes`].
    pub upload_window_bytes: Option<u64>,
    /// All uploads' windows together may take at most this; an upload that finds it spent
    /// goes on unprotected, logged and counted in `/_cluster`.
    pub upload_window_budget_bytes: u64,
    /// A client must finish sending request headers within this.
    pub header_timeout_ms: u64,
    /// On SIGTERM, in-flight transfers get this long to finish.
    pub drain_timeout_ms: u64,
    /// Peers (CIDRs) whose `X-Forwarded-*` and `Forwarded` headers are kept and extended
    /// rather than replaced: a TLS terminator in front of the balancer. Default none.
    pub trusted_proxies: TrustedProxies,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            algorithm: Algorithm::default(),
            health_interval_ms: 1000,
            health_timeout_ms: 800,
            fall: 2,
            rise: 2,
            connect_timeout_ms: 1000,
            response_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            first_byte_timeout_ms: 500,
            eject_after: 3,
            upload_window_bytes: None,
            upload_window_budget_bytes: 128 * 1024 * 1024,
            header_timeout_ms: 10_000,
            drain_timeout_ms: 30_000,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// `[mongodb]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoConfig {
    pub uri: String,
    #[serde(default = "default_database")]
    pub database: String,
    /// The local cluster and the tests start SecantusDB at `uri` themselves.
    #[serde(default)]
    pub embedded: bool,
    /// Where the embedded database keeps its files (relative to the config file).
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Operations that cannot reach the database fail after this, so a node answers 503
    /// quickly during an outage instead of hanging.
    #[serde(default = "default_server_selection_timeout_ms")]
    pub server_selection_timeout_ms: u64,
    /// How many members must have a write before it counts: `"majority"` or a number
    /// (MongoDB's `w`, <https://www.mongodb.com/docs/manual/reference/write-concern/>).
    /// Unset: the URI's `w=`, else `"majority"` when the URI names a replica set
    /// (`replicaSet=`; a `w: 1` write can be rolled back by a failover), else 1. Every
    /// write is journaled (`j: true`) whatever this says. With `"majority"`, reads use
    /// read concern `majority` too, so that no node serves a write that may roll back.
    #[serde(default)]
    pub write_concern: Option<WriteAck>,
    /// How often the driver checks each server, in ms (at least 500, the driver's floor):
    /// after a primary steps down, writes wait about this long for the new one. The
    /// driver's default, 10 s, outlasts `server_selection_timeout_ms`, so every write would
    /// fail until then.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
}

/// `[mongodb] write_concern`: `"majority"` or a number of members.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum WriteAck {
    Nodes(u32),
    /// Only `"majority"` is accepted (checked by [`ClusterConfig::validate`]).
    Majority(String),
}

fn default_database() -> String {
    "speedbox".into()
}
fn default_data_dir() -> String {
    "data/db".into()
}
fn default_server_selection_timeout_ms() -> u64 {
    2000
}
fn default_heartbeat_ms() -> u64 {
    500
}

/// `[storage]`: how nodes lay files out in GridFS. Every node must agree.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// GridFS bucket name: collections `<bucket>.files` and `<bucket>.chunks`.
    pub bucket: String,
    /// Bytes per GridFS chunk of new files.
    pub chunk_size: u32,
    /// Chunks written per `insert_many` round trip.
    pub chunks_per_write: u32,
    /// Chunks fetched per query when serving a file.
    pub chunks_per_read: u32,
    /// Replaced or deleted revisions, and uploads whose node went silent, are removed
    /// after this long: readers of the old revision get this long to finish.
    pub gc_grace_secs: u64,
    /// How often each node looks for garbage.
    pub sweep_interval_secs: u64,
    /// How often each node asks the database for the chunks collection's size (`collStats`,
    /// the `speedbox_store_chunks_size_bytes` gauge). Cheap on MongoDB; the embedded
    /// `secantusd-py` reads every stored byte to answer it.
    pub size_interval_secs: u64,
    /// A request body that sends nothing for this long is abandoned.
    pub body_idle_timeout_secs: u64,
    /// Largest file accepted, in bytes (advertised to tus clients as `Tus-Max-Size`).
    pub max_file_size: u64,
    /// An unfinished resumable upload expires this long after its last byte.
    pub tus_expiry_secs: u64,
}

/// Chunk writes one upload keeps under way at a node while it reads on, each a batch of
/// `chunks_per_write` chunks. Measured (`scripts/bench --only storage --size-mib 256 --reps
/// 2`, secantusd-rs): 0 (write, then read on) 64 MB/s, 1 97, 2 120, 3 117; the plain
/// driver 131-147.
pub const UPLOAD_WRITES_IN_FLIGHT: usize = 2;

/// A node's HTTP read buffer grows up to this (bytes): the largest request head it reads,
/// and as much of a body, read from the socket but not yet taken by the upload.
pub const NODE_READ_BUFFER_BYTES: usize = 1024 * 1024;

/// Bytes in transit between a balancer and a node at most: both sockets' buffers (256 KiB
/// each, doubled by Linux), hyper's write queue at the balancer (1 MiB) and hyper's read
/// buffer at the node ([`NODE_READ_BUFFER_BYTES`]). Without the last, a full bench run saw
/// a node stall on its database with 98,304 bytes more than the window unrecorded, and
/// the upload could not be continued (502).
const IN_TRANSIT_BYTES: u64 = 2 * 1024 * 1024 + NODE_READ_BUFFER_BYTES as u64;

impl StorageConfig {
    /// The most bytes of an upload a node may have been sent but not yet recorded as
    /// durable: the batch being cut, the [`UPLOAD_WRITES_IN_FLIGHT`] batches being written,
    /// the one waiting for its turn and the one whose record is under way (the node reads
    /// on while it lands), and what is in transit to the node. What a protected PUT's
    /// window must hold (8.0 MiB with the defaults; `scripts/bench-failover` measured
    /// 4.4-5.2 MiB at kills, 3.2-5.5 MiB before the node recorded while reading on, and
    /// a node stalled on its database 6.1 MiB).
    pub fn unrecorded_max_bytes(&self) -> u64 {
        let batch = u64::from(self.chunk_size) * u64::from(self.chunks_per_write);
        (UPLOAD_WRITES_IN_FLIGHT as u64 + 3) * batch + IN_TRANSIT_BYTES
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            bucket: "fs".into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunks_per_write: 4,
            chunks_per_read: 8,
            gc_grace_secs: 600,
            sweep_interval_secs: 60,
            size_interval_secs: 600,
            body_idle_timeout_secs: 120,
            max_file_size: 1 << 40,
            tus_expiry_secs: 24 * 3600,
        }
    }
}

/// `[node]`: how every node serves HTTP. Read at each node's start.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeServerConfig {
    /// A client (usually the balancer) must finish sending request headers within this.
    pub header_timeout_ms: u64,
    /// On SIGTERM, requests under way get this long to finish before they are cut.
    pub drain_timeout_ms: u64,
}

impl Default for NodeServerConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 30_000,
            drain_timeout_ms: 30_000,
        }
    }
}

impl NodeServerConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// One `[[nodes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: String,
    pub listen: SocketAddr,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl BalancerConfig {
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms)
    }
    pub fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.health_timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
    /// `None` when hedging is off.
    pub fn first_byte_timeout(&self) -> Option<Duration> {
        (self.first_byte_timeout_ms > 0).then(|| Duration::from_millis(self.first_byte_timeout_ms))
    }
}

impl ClusterConfig {
    /// Reads, overrides from the environment, and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`ClusterConfig::load`] with the environment given as `vars`.
    pub fn load_with_env(
        path: &Path,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let read = |source| ConfigError::Read {
            path: shown.clone(),
            source,
        };
        let cfg: ClusterConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("SPEEDBOX")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(section_overrides(vars))),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(read)?;
        cfg.validate().map_err(|problems| ConfigError::Invalid {
            path: shown,
            problems,
        })?;
        Ok(cfg)
    }

    /// Parses TOML text without environment overrides (tests, live reload checks).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: ClusterConfig = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|source| ConfigError::Read {
                path: "<text>".into(),
                source,
            })?;
        cfg.validate().map_err(|problems| ConfigError::Invalid {
            path: "<text>".into(),
            problems,
        })?;
        Ok(cfg)
    }

    /// The window each protected PUT keeps at the balancer, in bytes: `[balancer]
    /// upload_window_bytes` if set, else [`StorageConfig::unrecorded_max_bytes`].
    pub fn upload_window_bytes(&self) -> u64 {
        self.balancer
            .upload_window_bytes
            .unwrap_or_else(|| self.storage.unrecorded_max_bytes())
    }

    /// Every problem in the configuration, each naming its key; empty means usable.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.limits.validate(&mut problems);
        self.media.validate(&mut problems);
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut listens: HashMap<SocketAddr, String> = HashMap::new();
        listens.insert(self.balancer.listen, "balancer.listen".into());
        if let Some(port) = self.mongodb.embedded_port() {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            listens.insert(addr, "mongodb.uri".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let key = format!("nodes[{i}]");
            if !valid_node_id(&node.id) {
                problems.push(format!(
                    "{key}.id = {:?}: use 1 to 64 letters, digits, '-' or '_'",
                    node.id
                ));
            }
            if let Some(first) = ids.insert(&node.id, i) {
                problems.push(format!(
                    "{key}.id = {:?} is already used by nodes[{first}]",
                    node.id
                ));
            }
            if node.listen.port() == 0 {
                problems.push(format!("{key}.listen = {}: needs a port", node.listen));
            }
            if let Some(other) = listens.insert(node.listen, format!("{key}.listen")) {
                problems.push(format!(
                    "{key}.listen = {} is already used by {other}",
                    node.listen
                ));
            }
            if !(1..=1000).contains(&node.weight) {
                problems.push(format!("{key}.weight = {}: use 1 to 1000", node.weight));
            }
        }
        let m = &self.mongodb;
        if matches!(&m.write_concern, Some(WriteAck::Majority(w)) if w != "majority") {
            problems.push("mongodb.write_concern: use \"majority\" or a number of members".into());
        }
        if m.heartbeat_ms < 500 {
            problems.push(format!(
                "mongodb.heartbeat_ms = {}: use 500 or more (the driver's floor)",
                m.heartbeat_ms
            ));
        }
        let b = &self.balancer;
        if b.fall == 0 {
            problems.push("balancer.fall must be at least 1".into());
        }
        if b.rise == 0 {
            problems.push("balancer.rise must be at least 1".into());
        }
        if self.upload_window_bytes() > b.upload_window_budget_bytes {
            problems.push(format!(
                "balancer.upload_window_bytes = {} is more than balancer.upload_window_budget_bytes = {}: no upload could be protected",
                self.upload_window_bytes(), b.upload_window_budget_bytes
            ));
        }
        for (key, value) in [
            ("balancer.health_interval_ms", b.health_interval_ms),
            ("balancer.health_timeout_ms", b.health_timeout_ms),
            ("balancer.connect_timeout_ms", b.connect_timeout_ms),
            ("balancer.response_timeout_ms", b.response_timeout_ms),
            ("balancer.idle_timeout_ms", b.idle_timeout_ms),
            ("balancer.header_timeout_ms", b.header_timeout_ms),
            ("node.header_timeout_ms", self.node.header_timeout_ms),
        ] {
            if value == 0 {
                problems.push(format!("{key} must be more than 0"));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate(&mut problems);
        }
        let m = &self.mongodb;
        if !(m.uri.starts_with("mongodb://") || m.uri.starts_with("mongodb+srv://")) {
            problems.push(format!(
                "mongodb.uri = {:?}: must start with mongodb:// or mongodb+srv://",
                m.uri
            ));
        } else if m.embedded && m.embedded_port().is_none() {
            problems.push(format!(
                "mongodb.uri = {:?}: with mongodb.embedded = true it must be mongodb://127.0.0.1:PORT (or localhost:PORT)",
                m.uri
            ));
        }
        if m.database.is_empty() || m.database.contains(['/', '\\', '.', ' ', '"', '$']) {
            problems.push(format!(
                "mongodb.database = {:?} is not a valid database name",
                m.database
            ));
        }
        let s = &self.storage;
        if !(1024..=MAX_CHUNK_SIZE).contains(&s.chunk_size) {
            problems.push(format!(
                "storage.chunk_size = {}: use 1024 to {MAX_CHUNK_SIZE}",
                s.chunk_size
            ));
        }
        if !(1..=64).contains(&s.chunks_per_write) {
            problems.push(format!(
                "storage.chunks_per_write = {}: use 1 to 64",
                s.chunks_per_write
            ));
        }
        if !(1..=64).contains(&s.chunks_per_read) {
            problems.push(format!(
                "storage.chunks_per_read = {}: use 1 to 64",
                s.chunks_per_read
            ));
        }
        if s.bucket.is_empty() || s.bucket.contains(['$', ' ']) {
            problems.push(format!(
                "storage.bucket = {:?} is not a valid bucket name",
                s.bucket
            ));
        }
        if s.sweep_interval_secs == 0 {
            problems.push("storage.sweep_interval_secs must be more than 0".into());
        }
        if s.size_interval_secs == 0 {
            problems.push("storage.size_interval_secs must be more than 0".into());
        }
        if s.tus_expiry_secs == 0 {
            problems.push("storage.tus_expiry_secs must be more than 0".into());
        }
        if s.max_file_size == 0 {
            problems.push("storage.max_file_size must be more than 0".into());
        }
        if s.body_idle_timeout_secs == 0 {
            problems.push("storage.body_idle_timeout_secs must be more than 0".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The `[[nodes]]` entry with this id.
    pub fn node(&self, id: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

impl MongoConfig {
    /// The port of an embedded database at `mongodb://127.0.0.1:PORT` or `localhost:PORT`.
    pub fn embedded_port(&self) -> Option<u16> {
        if !self.embedded {
            return None;
        }
        let rest = self.uri.strip_prefix("mongodb://")?;
        let host_port = rest.split(['/', '?']).next()?;
        let (host, port) = host_port.rsplit_once(':')?;
        if host != "127.0.0.1" && host != "localhost" {
            return None;
        }
        port.parse().ok().filter(|p| *p != 0)
    }
}

/// The `SPEEDBOX_<SECTION>__<KEY>` variables: only those address the file, so unrelated
/// `SPEEDBOX_*` variables (`SPEEDBOX_CONFIG`, `SPEEDBOX_LOG_FORMAT`) are not taken for keys.
fn section_overrides(vars: impl Iterator<Item = (String, String)>) -> config::Map<String, String> {
    vars.filter(|(k, _)| {
        ["AUTH", "BALANCER", "MONGODB", "NODE", "STORAGE"]
            .iter()
            .any(|s| k.starts_with(&format!("SPEEDBOX_{s}__")))
    })
    .collect()
}

impl AuthConfig {
    /// Whether requests are checked at all.
    pub fn is_on(auth: Option<&AuthConfig>) -> bool {
        auth.is_some_and(|a| a.enabled)
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let mut ids = HashMap::new();
        for (i, key) in self.keys.iter().enumerate() {
            if !valid_node_id(&key.id) {
                problems.push(format!(
                    "auth.keys[{i}].id = {:?}: use 1 to 64 letters, digits, '-' or '_'",
                    key.id
                ));
            }
            if let Some(first) = ids.insert(key.id.as_str(), i) {
                problems.push(format!(
                    "auth.keys[{i}].id = {:?} is already used by auth.keys[{first}]",
                    key.id
                ));
            }
            if key.secret_file.is_empty() {
                problems.push(format!("auth.keys[{i}].secret_file is empty"));
            }
        }
        if self.enabled && self.keys.is_empty() {
            problems.push("auth.enabled = true needs at least one entry in auth.keys".into());
        }
        if let Err(e) = crate::auth::Scopes::from_names(self.anonymous.iter().map(String::as_str)) {
            problems.push(format!("auth.anonymous: {e}"));
        }
    }
}

fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[balancer]
listen = "127.0.0.1:3000"

[mongodb]
uri = "mongodb://127.0.0.1:27017"
database = "speedbox"
embedded = true

[[nodes]]
id = "node-1"
listen = "127.0.0.1:8001"

[[nodes]]
id = "node-2"
listen = "127.0.0.1:8002"
weight = 3
"#;

    fn problems(text: &str) -> String {
        match ClusterConfig::from_toml(text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let cfg = ClusterConfig::from_toml(GOOD).unwrap();
        assert_eq!(cfg.nodes.len(), 2);
        assert_eq!(cfg.nodes[0].weight, 1);
        assert_eq!(cfg.nodes[1].weight, 3);
        assert_eq!(cfg.balancer.algorithm, Algorithm::LeastOutstanding);
        assert_eq!(cfg.balancer.fall, 2);
        assert_eq!(cfg.storage.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(cfg.mongodb.embedded_port(), Some(27017));
        assert_eq!(cfg.node("node-2").unwrap().listen.port(), 8002);
    }

    #[test]
    fn the_upload_window_covers_what_a_node_may_hold_unrecorded_unless_set() {
        let with = |balancer: &str, storage: &str| {
            let text = GOOD.replace(
                "listen = \"127.0.0.1:3000\"\n",
                &format!("listen = \"127.0.0.1:3000\"\n{balancer}\n[storage]\n{storage}\n"),
            );
            ClusterConfig::from_toml(&text)
        };
        let batch = u64::from(DEFAULT_CHUNK_SIZE) * 4;
        let default = with("", "").unwrap();
        // Cut, two being written, one waiting, one whose record is under way.
        assert_eq!(default.upload_window_bytes(), 5 * batch + IN_TRANSIT_BYTES);
        // Bigger batches at the node: a bigger window, without touching [balancer].
        let big = with("", "chunks_per_write = 16").unwrap();
        assert_eq!(big.upload_window_bytes(), 5 * 4 * batch + IN_TRANSIT_BYTES);
        let set = with("upload_window_bytes = 1048576", "chunks_per_write = 16").unwrap();
        assert_eq!(set.upload_window_bytes(), 1 << 20);
        let off = with("upload_window_bytes = 0", "").unwrap();
        assert_eq!(off.upload_window_bytes(), 0);
        // A derived window larger than the budget is refused like a set one.
        let err = with("upload_window_budget_bytes = 4194304", "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is more than balancer.upload_window_budget_bytes = 4194304"),
            "{err}"
        );
    }

    #[test]
    fn write_concern_and_heartbeat_are_checked() {
        let with = |lines: &str| {
            ClusterConfig::from_toml(
                &GOOD.replace("embedded = true", &format!("embedded = true\n{lines}")),
            )
        };
        let default = with("").unwrap();
        assert_eq!(
            (default.mongodb.write_concern, default.mongodb.heartbeat_ms),
            (None, 500)
        );
        let majority = with("write_concern = \"majority\"").unwrap();
        assert_eq!(
            majority.mongodb.write_concern,
            Some(WriteAck::Majority("majority".into()))
        );
        let two = with("write_concern = 2").unwrap();
        assert_eq!(two.mongodb.write_concern, Some(WriteAck::Nodes(2)));
        let err = with("write_concern = \"all\"").unwrap_err().to_string();
        assert!(err.contains("mongodb.write_concern"), "{err}");
        let err = with("heartbeat_ms = 100").unwrap_err().to_string();
        assert!(err.contains("mongodb.heartbeat_ms = 100"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("embedded = true", "embedded = true\nurl = \"x\"");
        let err = problems(&text);
        assert!(err.contains("url"), "{err}");
    }

    #[test]
    fn unknown_section_is_named() {
        let err = problems(&format!("{GOOD}\n[balancr]\nlisten = \"127.0.0.1:1\"\n"));
        assert!(err.contains("balancr"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_ports_are_refused() {
        let text = GOOD
            .replace("id = \"node-2\"", "id = \"node-1\"")
            .replace("8002", "8001");
        let err = problems(&text);
        assert!(
            err.contains("nodes[1].id = \"node-1\" is already used by nodes[0]"),
            "{err}"
        );
        assert!(
            err.contains("nodes[1].listen = 127.0.0.1:8001 is already used by nodes[0].listen"),
            "{err}"
        );
    }

    #[test]
    fn node_port_clashing_with_balancer_or_database_is_refused() {
        let err = problems(&GOOD.replace("8002", "3000"));
        assert!(err.contains("already used by balancer.listen"), "{err}");
        let err = problems(&GOOD.replace("8002", "27017"));
        assert!(err.contains("already used by mongodb.uri"), "{err}");
    }

    #[test]
    fn bad_address_names_the_key() {
        let err = problems(&GOOD.replace("127.0.0.1:8002", "localhost-8002"));
        assert!(err.contains("nodes") && err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let text = GOOD
            .replace(
                "[balancer]",
                "[balancer]\nfall = 0\nalgorithm = \"round-robin\"",
            )
            .replace("weight = 3", "weight = 0")
            .replace("id = \"node-1\"", "id = \"node 1\"")
            + "\n[storage]\nchunk_size = 10\n";
        let err = problems(&text);
        for needle in [
            "balancer.fall",
            "nodes[1].weight = 0",
            "nodes[0].id = \"node 1\"",
            "storage.chunk_size = 10",
        ] {
            assert!(err.contains(needle), "missing {needle}: {err}");
        }
    }

    #[test]
    fn bad_algorithm_is_refused() {
        let err = problems(&GOOD.replace(
            "listen = \"127.0.0.1:3000\"",
            "listen = \"127.0.0.1:3000\"\nalgorithm = \"random\"",
        ));
        assert!(err.contains("random"), "{err}");
    }

    #[test]
    fn embedded_database_must_be_local() {
        let err = problems(&GOOD.replace("127.0.0.1:27017", "db.example.com:27017"));
        assert!(err.contains("mongodb.embedded = true"), "{err}");
        let external = GOOD
            .replace("127.0.0.1:27017", "db.example.com:27017")
            .replace("embedded = true", "embedded = false");
        assert!(ClusterConfig::from_toml(&external).is_ok());
    }

    #[test]
    fn only_section_variables_override() {
        let vars = [
            ("SPEEDBOX_MONGODB__URI", "mongodb://db:1"),
            ("SPEEDBOX_CONFIG", "x.toml"),
            ("SPEEDBOX_PROFILE", "debug"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let kept = section_overrides(vars.into_iter());
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key("SPEEDBOX_MONGODB__URI"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, GOOD).unwrap();
        let vars = [
            ("SPEEDBOX_MONGODB__DATABASE", "other"),
            ("SPEEDBOX_NODE__DRAIN_TIMEOUT_MS", "5"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let cfg = ClusterConfig::load_with_env(&path, vars.into_iter()).unwrap();
        assert_eq!(cfg.mongodb.database, "other");
        assert_eq!(cfg.node.drain_timeout_ms, 5);
        let plain = ClusterConfig::load_with_env(&path, std::iter::empty()).unwrap();
        assert_eq!(
            plain.mongodb.database,
            ClusterConfig::from_toml(GOOD).unwrap().mongodb.database
        );
        assert_ne!(plain.mongodb.database, "other");
    }

    #[test]
    fn trusted_proxies_load_and_bad_ones_name_the_key() {
        let with = |list: &str| {
            GOOD.replace(
                "listen = \"127.0.0.1:3000\"",
                &format!("listen = \"127.0.0.1:3000\"\ntrusted_proxies = {list}"),
            )
        };
        let cfg = ClusterConfig::from_toml(GOOD).unwrap();
        assert!(cfg.balancer.trusted_proxies.is_empty(), "default: none");
        let cfg = ClusterConfig::from_toml(&with(r#"["10.0.0.0/8", "127.0.0.1/32", "::1/128"]"#))
            .unwrap();
        let trusted = &cfg.balancer.trusted_proxies;
        assert!(trusted.contains("10.9.8.7".parse().unwrap()));
        assert!(trusted.contains("::1".parse().unwrap()));
        assert!(!trusted.contains("192.168.1.1".parse().unwrap()));
        let err = problems(&with(r#"["10.0.0.0/8", "10.0.0.0/40"]"#));
        assert!(
            err.contains("trusted_proxies") && err.contains("\"10.0.0.0/40\""),
            "{err}"
        );
        let err = problems(&with(r#""10.0.0.0/8""#));
        assert!(err.contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn bad_uri_scheme_is_refused() {
        let err = problems(&GOOD.replace("mongodb://127.0.0.1:27017", "http://x"));
        assert!(err.contains("mongodb.uri"), "{err}");
    }
}
