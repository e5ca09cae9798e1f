//! Tracing set-up: one line per event on stdout, which the supervisor writes to `logs/`.
//!
//! Lines are written by a background thread in batches ([`crate::log_writer`]): a request
//! never waits for a `write(2)` to stdout, and a slow reader of stdout (the supervisor's
//! pipe) can never stall the runtime's threads. Under a backlog of more than 32 MiB (about
//! 128,000 lines), new ones are dropped rather than block the proxy.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::log_writer::{self, FlushGuard, LineWriter};

/// The writer every line goes to, once [`init`] ran.
static WRITER: OnceLock<LineWriter> = OnceLock::new();

/// Log lines dropped so far because too much was waiting (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    WRITER.get().map_or(0, LineWriter::dropped_lines)
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`);
/// `SPEEDBOX_LOG_FORMAT=json` switches to one JSON object per line. Keep the returned guard
/// until the process ends: dropping it writes the lines still waiting.
///
/// # Errors
/// The writing thread could not be started.
pub fn init() -> std::io::Result<FlushGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Each batch is one write: stdout itself is unbuffered, its lock taken once per batch.
    let (writer, guard) = log_writer::spawn(std::io::stdout())?;
    let _ = WRITER.set(writer.clone());
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
    Ok(guard)
}
