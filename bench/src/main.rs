//! `speedbox-bench gridfs --uri U --file F`: how fast the plain `mongodb` driver writes a file
//! into GridFS and reads it back, with the same write concern as the node (journaled) and
//! 1 MiB writes and reads. It is the baseline the node's own upload and download speeds are
//! compared against (`scripts/bench-storage`). Prints one JSON line per measurement.
//!
//! `speedbox-bench auth`: the CPU access control adds to one request on a node — verifying
//! a bearer token, checking it against revocations, and deciding its scope and prefix — in
//! a loop on one core (`scripts/bench-auth`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::{AsyncReadExt, AsyncWriteExt};
use mongodb::options::{Acknowledgment, ClientOptions, GridFsBucketOptions, WriteConcern};
use tokio::io::AsyncReadExt as _;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Upload `file` through the driver's GridFS stream, then download it.
    Gridfs {
        #[arg(long)]
        uri: String,
        #[arg(long, default_value = "speedbox_bench")]
        database: String,
        #[arg(long)]
        file: PathBuf,
        /// Bytes per write and per read.
        #[arg(long, default_value_t = 1 << 20)]
        block: usize,
    },
    /// Verify a bearer token (and decide one action) `iterations` times.
    Auth {
        #[arg(long, default_value_t = 200_000)]
        iterations: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Gridfs {
            uri,
            database,
            file,
            block,
        } => gridfs(uri, database, file, block).await,
        Cmd::Auth { iterations } => auth(iterations),
    }
}

/// What a node does per request with access control on, as `access::check` does it.
fn auth(iterations: u32) -> anyhow::Result<()> {
    use speedbox_common::auth::{
        token, Authenticator, Claims, Key, KeyRing, Revocations, Scope, Scopes,
    };
    let keys = KeyRing::new(vec![Key::new("k1", &[7u8; 32]).map_err(anyhow::Error::msg)?]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = Claims {
        sub: "bench-user".into(),
        exp: now + 3600,
        nbf: None,
        iat: Some(now),
        jti: Some(format!("{:032x}", 42u128)),
        scope: "read write".into(),
        prefix: "users/bench-user/".into(),
        max_bytes: Some(1 << 30),
    };
    let token = token::mint(&keys, &claims)?;
    let auth = Authenticator::new(keys, Scopes::NONE);
    let revoked = Revocations::default();
    let started = Instant::now();
    for _ in 0..iterations {
        let principal = auth.authenticate(Some(std::hint::black_box(&token)))?;
        revoked.check(&principal)?;
        principal.may(Scope::Read, Some("users/bench-user/a.mp4"))?;
    }
    let per = started.elapsed().as_secs_f64() / f64::from(iterations);
    let line = serde_json::json!({
        "op": "auth-verify", "iterations": iterations, "token_bytes": token.len(),
        "us_per_request": per * 1e6,
    });
    println!("{line}");
    Ok(())
}

async fn gridfs(uri: String, database: String, file: PathBuf, block: usize) -> anyhow::Result<()> {
    let mut opts = ClientOptions::parse(&uri).await?;
    opts.write_concern = Some(
        WriteConcern::builder()
            .w(Acknowledgment::Nodes(1))
            .journal(true)
            .build(),
    );
    let db = mongodb::Client::with_options(opts)?.database(&database);
    let bucket = db.gridfs_bucket(GridFsBucketOptions::default());
    bucket.drop().await.ok();

    let mut input = tokio::fs::File::open(&file)
        .await
        .with_context(|| format!("open {}", file.display()))?;
    let mut buf = vec![0u8; block];
    let started = Instant::now();
    let mut upload = bucket.open_upload_stream("bench.bin").await?;
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        upload.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    upload.close().await?;
    report("driver-upload", total, started);

    let started = Instant::now();
    let mut download = bucket.open_download_stream_by_name("bench.bin").await?;
    let mut read = 0u64;
    loop {
        let n = download.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    report("driver-download", read, started);
    anyhow::ensure!(read == total, "read {read} bytes of {total}");
    bucket.drop().await?;
    Ok(())
}

fn report(op: &str, bytes: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "op": op, "bytes": bytes, "seconds": secs, "mb_per_s": bytes as f64 / 1e6 / secs,
    });
    println!("{line}");
}
