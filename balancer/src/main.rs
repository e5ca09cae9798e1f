//! `speedbox-balancer --config cluster.toml`: loads the config, binds `[balancer] listen`,
//! and serves until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use speedbox_common::config::ClusterConfig;
use speedbox_common::{shutdown, telemetry};
use tokio::net::TcpListener;

/// jemalloc rather than the system allocator: see the workspace Cargo.toml.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (`_RJEM_MALLOC_CONF` in the environment overrides them). One arena
/// instead of 4 per CPU: each arena keeps the pages its threads freed, and the balancer's
/// large buffers move between threads. Measured on 5 concurrent 1 GiB uploads through
/// the balancer into sinks: peak RSS 34.4 → 25.2 MiB unprotected, 82 → 66 MiB with 8 MiB
/// windows, throughput unchanged within run-to-run noise.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"narenas:1\0";

/// The single address clients use in front of the speedbox storage nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The cluster file; `[balancer]` and `[[nodes]]` are read, and it is watched for changes.
    #[arg(long, default_value = "cluster.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _log = telemetry::init().context("cannot start the log writer")?;
    let args = Args::parse();
    let config = ClusterConfig::load(&args.config)?;
    let listen = config.balancer.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (balancer.listen)"))?;
    tracing::info!("listening on {}", listener.local_addr()?);
    tracing::info!(
        nodes = config.nodes.len(),
        algorithm = ?config.balancer.algorithm,
        "serving {}",
        args.config.display()
    );
    let shutdown = async {
        let signal = shutdown::signal_received().await;
        tracing::info!("{signal} received, shutting down");
    };
    speedbox_balancer::run(listener, args.config, config, shutdown).await?;
    Ok(())
}
