//! Pieces shared by `speedbox-node` and `speedbox-balancer`.
//!
//! Start with [`config`]: `cluster.toml` is the one file that describes a cluster, and both
//! binaries load and validate it through [`config::ClusterConfig::load`]. The rest is small:
//! header names ([`headers`]), the `X-Request-Id` rule ([`request_id`]), trusted proxies and
//! RFC 7239 `Forwarded` ([`forwarded`]), JSON responses ([`respond`]), the accept-and-drain
//! loop ([`serve`]), metrics ([`metrics`]) and the access log ([`observe`], [`access_log`]), the lingering close of an answer given before the request body's end
//! ([`linger`]), the shutdown signal ([`shutdown`]), logging ([`telemetry`], written in batches by [`log_writer`]) and access
//! control ([`auth`]: tokens, scopes, keys).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod auth;
pub mod config;
pub mod forwarded;
pub mod headers;
pub mod linger;
pub mod log_writer;
pub mod metrics;
pub mod observe;
pub mod request_id;
pub mod respond;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
