//! `speedbox-balancer`: the one address clients use, a streaming reverse proxy in front of
//! the storage nodes.
//!
//! Read [`proxy`] first: it is the request path. Around it:
//! - [`service`]: what every request goes through before and after it (observation,
//!   principal, [`limits`] with [`shape`], lingering close);
//! - [`cluster`]: the cluster snapshot (the nodes of the running config) and its reloads;
//! - [`node`]: one node's live state (health, in-flight count) and its up/down flips;
//! - [`select`]: which node takes a request (round robin, least-outstanding);
//! - [`conn`]: connections to nodes that hand back unsent requests; [`keepalive`]: the
//!   idle ones each node keeps;
//! - [`rewrite`]: hop-by-hop and forwarding headers (trusted proxies);
//! - [`up_body`] (client to node) and [`down_body`] (node to client): streaming bodies;
//!   [`idle`]: their idle cut-offs;
//! - [`expect`]: `Expect: 100-continue` decided by the node, not the balancer;
//! - [`resume`] (downloads) and [`protect`] with [`window`] and [`attempt`] (uploads): a transfer whose
//!   node dies goes on on another; [`hedge`]: a hung node's request sent elsewhere too;
//! - [`health`] (pure rise/fall) and [`probe`] (the active check loop);
//! - [`reload`]: live `cluster.toml` changes; [`status`]: `GET /_cluster`; [`metrics`]:
//!   `GET /metrics` (the access log and request counts: [`speedbox_common::observe`]);
//! - [`page`]: the browser upload page at `/` and its hls.js;
//! - [`error`]: every failure mapped to an HTTP answer in one place.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests drive it in-process.
#![forbid(unsafe_code)]

mod attempt;
mod cluster;
mod conn;
mod down_body;
mod error;
mod expect;
mod health;
mod hedge;
mod idle;
mod keepalive;
mod limits;
mod metrics;
mod node;
mod page;
mod probe;
mod protect;
mod proxy;
mod reload;
mod resume;
mod rewrite;
mod select;
mod sent;
mod service;
mod shape;
mod status;
mod up_body;
mod window;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use speedbox_common::auth::LiveAuth;
use speedbox_common::config::ClusterConfig;
use speedbox_common::linger;
use speedbox_common::observe::{Metered, Observer};
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::idle::IdleIo;
use crate::service::Shared;
use crate::shape::Shaped;

/// A client's request body: hyper's, held by the service too ([`linger`]).
pub(crate) type ClientBody = linger::Held<Shaped<Metered<hyper::body::Incoming>>>;

/// hyper's buffer limit on client connections: an upload arrives in frames of up to this,
/// which its window holds while protected (downstream frames come at the upstream
/// connection's [`conn::MAX_BUF_SIZE`] whatever this is). Measured (5 concurrent 1 GiB
/// uploads into sinks, proxy-only, 2 runs each): 1 MiB gave 1598 MB/s and 24.8 MiB peak
/// RSS unprotected, 50.4 with 6 MiB windows; 512 KiB 1611 MB/s, 18.6 and 45.8 MiB;
/// 256 KiB lost 10% of the throughput and used 23% more CPU.
const CLIENT_MAX_BUF_SIZE: usize = 512 * 1024;

/// Serves clients on `listener` until `shutdown` resolves, then stops accepting and gives
/// in-flight transfers up to `drain_timeout_ms` (as the config reads then) to finish (see
/// [`speedbox_common::serve`]).
pub async fn run(
    listener: TcpListener,
    config_path: PathBuf,
    config: ClusterConfig,
    shutdown: impl Future,
) -> std::io::Result<()> {
    let auth = LiveAuth::new(&config_path, &config).map_err(|problems| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("[auth]: {}", problems.join("; ")),
        )
    })?;
    let auth = Arc::new(auth);
    let watch = tokio::spawn(Arc::clone(&auth).watch());
    let cluster = Arc::new(Cluster::new(config_path, config));
    let probe = tokio::spawn(probe::run(Arc::clone(&cluster)));
    let reload = tokio::spawn(reload::run(Arc::clone(&cluster)));
    let metrics = Arc::new(metrics::Metrics::new(Arc::clone(&cluster)));
    let shared = Arc::new(Shared {
        cluster: Arc::clone(&cluster),
        auth: Arc::clone(&auth),
        observer: Observer::new(Arc::clone(&metrics.http)),
        metrics,
    });
    let connection = {
        let cluster = Arc::clone(&cluster);
        move |stream, client| {
            // Read per connection so that a reload reaches new connections.
            let cfg = cluster.snapshot().config.balancer.clone();
            let io = TokioIo::new(IdleIo::new(stream, cfg.idle_timeout()));
            let shared = Arc::clone(&shared);
            let service =
                service_fn(move |request| service::handle(Arc::clone(&shared), client, request));
            http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(cfg.header_timeout())
                .max_buf_size(CLIENT_MAX_BUF_SIZE)
                .writev(true)
                .serve_connection(io, service)
        }
    };
    let drain_timeout = || cluster.snapshot().config.balancer.drain_timeout();
    speedbox_common::serve::serve(listener, connection, shutdown, drain_timeout).await;
    probe.abort();
    reload.abort();
    watch.abort();
    Ok(())
}
