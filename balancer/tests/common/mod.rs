//! In-process test rig: fake nodes (small hyper servers whose behaviour a test can switch)
//! and a balancer running [`speedbox_balancer::run`] on a free port, plus a client.
//!
//! The real-process tests with real nodes live in the workspace's `tests` crate; these
//! check the proxy's own rules (retries, timeouts, draining) where a real node cannot be
//! made to misbehave on cue.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use speedbox_common::config::ClusterConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// Byte `i` of every generated body, so both ends can check content without storing it.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// FNV-1a over a stream of bytes, to compare what was sent with what arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub len: u64,
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            len: 0,
            hash: 0xcbf29ce484222325,
        }
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        self.len += bytes.len() as u64;
    }

    pub fn of_pattern(len: u64) -> Self {
        // a whole number of 251-byte periods, so every block starts the pattern afresh
        let block: Vec<u8> = (0..251 * 4096).map(pattern).collect();
        let mut digest = Digest::default();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            digest.update(&block[..n]);
            left -= n as u64;
        }
        digest
    }
}

/// A stream of `len` pattern bytes in `chunk`-sized frames, `delay` apart.
pub fn pattern_body(len: u64, chunk: usize, delay: Duration) -> TestBody {
    let stream = futures::stream::unfold(0u64, move |sent| async move {
        if sent >= len {
            return None;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let n = (len - sent).min(chunk as u64);
        let bytes: Bytes = (sent..sent + n).map(pattern).collect::<Vec<u8>>().into();
        Some((Ok::<_, std::io::Error>(Frame::data(bytes)), sent + n))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(text: String) -> TestBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

/// What a fake node does, switchable while it runs.
#[derive(Debug, Default)]
pub struct Behaviour {
    pub unhealthy: AtomicBool,
    /// Drop the connection without answering (a crash before the response head).
    pub die: AtomicBool,
    pub head_delay_ms: AtomicU64,
    pub chunk_delay_ms: AtomicU64,
    pub requests: AtomicUsize,
    pub connections: AtomicUsize,
    /// Uploads whose body ended in an error.
    pub broken_uploads: AtomicUsize,
    /// New connections: a request (other than a health check) is answered by a reset
    /// (RST) after this many ms, as a node that dies with it does. 0: off.
    pub reset_after_ms: AtomicU64,
    /// New connections are closed (FIN) this many ms after they were accepted, whatever
    /// they are doing, as a node closes keep-alive connections it finds idle. 0: off.
    pub conn_lifetime_ms: AtomicU64,
}

pub struct FakeNode {
    pub id: String,
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeNode {
    pub async fn start(id: &str) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Behaviour::default());
        let (stop, mut stopped) = oneshot::channel();
        let (b, node_id) = (Arc::clone(&behaviour), id.to_owned());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = &mut stopped => return,
                };
                b.connections.fetch_add(1, Ordering::SeqCst);
                let reset_after = b.reset_after_ms.load(Ordering::SeqCst);
                if reset_after > 0 {
                    tokio::spawn(reset_after_head(stream, reset_after));
                    continue;
                }
                let (b, node_id) = (Arc::clone(&b), node_id.clone());
                let lifetime = Duration::from_millis(b.conn_lifetime_ms.load(Ordering::SeqCst));
                let service = service_fn(move |req| serve(Arc::clone(&b), node_id.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    if lifetime.is_zero() {
                        let _ = conn.await;
                    } else {
                        let _ = tokio::time::timeout(lifetime, conn).await;
                    }
                });
            }
        });
        FakeNode {
            id: id.to_owned(),
            addr,
            behaviour,
            stop: Some(stop),
        }
    }

    /// Stops accepting: new connections are refused (open ones keep working).
    pub fn stop_listening(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads a request head; answers a health check, or resets the connection after `ms`.
async fn reset_after_head(mut stream: tokio::net::TcpStream, ms: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with(b"GET /healthz ") {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = stream.write_all(ok).await;
        return;
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    // A zero linger makes the close a reset, as a dying node's kernel may send.
    let _ = stream.set_zero_linger();
}

async fn serve(
    b: Arc<Behaviour>,
    id: String,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, std::io::Error> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        let status = if b.unhealthy.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        return Ok(Response::builder().status(status).body(empty()).unwrap());
    }
    b.requests.fetch_add(1, Ordering::SeqCst);
    if b.die.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("node crashed"));
    }
    let delay = b.head_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let builder = Response::builder().header("x-speedbox-node", &id);
    if let Some(len) = path.strip_prefix("/bytes/") {
        let len: u64 = len.parse().unwrap();
        let chunk_delay = Duration::from_millis(b.chunk_delay_ms.load(Ordering::SeqCst));
        let body = pattern_body(len, 256 * 1024, chunk_delay);
        return Ok(builder.header("content-length", len).body(body).unwrap());
    }
    if req.method() == http::Method::PUT || req.method() == http::Method::POST {
        let mut digest = Digest::default();
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        digest.update(data);
                    }
                }
                Err(_) => {
                    b.broken_uploads.fetch_add(1, Ordering::SeqCst);
                    return Err(std::io::Error::other("upload broken"));
                }
            }
        }
        let json = format!("{{\"len\":{},\"hash\":{}}}", digest.len, digest.hash);
        return Ok(builder
            .status(StatusCode::CREATED)
            .body(full(json))
            .unwrap());
    }
    // Echo what the node was sent, for header tests.
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let json = serde_json::json!({"node": id, "uri": req.uri().to_string(), "headers": headers});
    Ok(builder.body(full(json.to_string())).unwrap())
}

/// A balancer running in this process.
pub struct Balancer {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// `cluster.toml` text for `nodes`, with extra `[balancer]` lines.
pub fn config_text(listen: SocketAddr, nodes: &[&FakeNode], balancer: &str) -> String {
    let mut text = format!("[balancer]\nlisten = \"{listen}\"\n{balancer}\n");
    for (key, default) in [("health_interval_ms", 100), ("health_timeout_ms", 500)] {
        if !balancer.contains(key) {
            text += &format!("{key} = {default}\n");
        }
    }
    text += "[mongodb]\nuri = \"mongodb://127.0.0.1:1\"\n";
    for node in nodes {
        text += &format!(
            "[[nodes]]\nid = \"{}\"\nlisten = \"{}\"\n",
            node.id, node.addr
        );
    }
    text
}

impl Balancer {
    pub async fn start(nodes: &[&FakeNode], balancer_toml: &str) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "speedbox-balancer-test-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("cluster.toml");
        std::fs::write(&config_path, config_text(addr, nodes, balancer_toml)).unwrap();
        let config = ClusterConfig::load(&config_path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(speedbox_balancer::run(
            listener,
            config_path.clone(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Balancer {
            addr,
            config_path,
            dir,
            stop: Some(stop),
            done,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Replaces the config file the way editors do (write a temp file, rename over).
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.join("cluster.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub async fn status(&self) -> serde_json::Value {
        let response = client()
            .get(self.url("/_cluster").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        json(response).await
    }

    /// Polls `/_cluster` until `check` accepts it, failing after 5 s.
    pub async fn wait_status(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let status = self.status().await;
            if check(&status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {status:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The state string of node `id` in a `/_cluster` document.
pub fn node_state(status: &serde_json::Value, id: &str) -> String {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map(|n| n["state"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| "absent".into())
}

pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn request(method: &str, url: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .unwrap()
}

/// Sends `n` GETs of `url` and concatenates the `x-speedbox-node` of each answer.
pub async fn served_by(client: &Client<HttpConnector, TestBody>, url: &str, n: usize) -> String {
    let mut nodes = String::new();
    for _ in 0..n {
        let response = client.request(request("GET", url, empty())).await.unwrap();
        nodes += response.headers()["x-speedbox-node"].to_str().unwrap();
        let _ = json(response).await;
    }
    nodes
}

pub async fn json(response: Response<Incoming>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
}

/// Reads a body to the end without keeping it.
pub async fn digest(response: Response<Incoming>) -> Result<Digest, hyper::Error> {
    let mut body = response.into_body().into_data_stream();
    let mut digest = Digest::default();
    while let Some(chunk) = body.next().await {
        digest.update(&chunk?);
    }
    Ok(digest)
}
