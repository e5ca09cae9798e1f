//! Tracing set-up: one line per event on stdout, which the supervisor writes to `logs/`.
//!
//! Lines are written by a background thread (`tracing-appender`'s non-blocking writer)
//! through a buffer flushed whenever the queue runs dry: a request never waits for a
//! `write(2)` to stdout, and a slow reader of stdout (the supervisor's pipe) can never stall
//! the runtime's threads. Under a backlog of more than 128,000 lines, new ones are dropped
//! rather than block the proxy.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Counts the lines the writer dropped (see the module doc), once [`init`] ran.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the writer's queue was full (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`);
/// `SPEEDBOX_LOG_FORMAT=json` switches to one JSON object per line. Keep the returned guard
/// until the process ends: dropping it flushes the lines still queued.
pub fn init() -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking(stdout);
    let _ = DROPPED.set(writer.error_counter());
    let json = std::env::var("SPEEDBOX_LOG_FORMAT").is_ok_and(|v| v == "json");
    crate::access_log::install(writer.clone(), json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    guard
}
