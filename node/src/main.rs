//! `speedbox-node --config cluster.toml --id node-1`

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Parser;
use speedbox_common::config::ClusterConfig;
use speedbox_node::AppState;

/// A speedbox storage node: streams files into MongoDB GridFS and back.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The cluster description.
    #[arg(long, default_value = "cluster.toml", env = "SPEEDBOX_CONFIG")]
    config: PathBuf,
    /// Which `[[nodes]]` entry this process is.
    #[arg(long)]
    id: String,
    /// Listen here instead of the entry's `listen` (e.g. 127.0.0.1:0 for a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _log = speedbox_common::telemetry::init().context("cannot start the log writer")?;
    let config = ClusterConfig::load(&args.config)?;
    let node = config.node(&args.id).ok_or_else(|| {
        let ids: Vec<_> = config.nodes.iter().map(|n| n.id.as_str()).collect();
        anyhow!(
            "{}: no [[nodes]] entry with id {:?} (ids: {})",
            args.config.display(),
            args.id,
            ids.join(", ")
        )
    })?;
    let addr = args.listen.unwrap_or(node.listen);
    let state = AppState::start(&args.config, &config, &node.id).await?;
    let listener =
        speedbox_node::listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(node = %node.id, "listening on {}", listener.local_addr()?);
    let shutdown = async {
        let signal = speedbox_common::shutdown::signal_received().await;
        tracing::info!(signal, "shutdown requested");
    };
    speedbox_node::run(listener, state, config.node.clone(), shutdown).await;
    Ok(())
}
