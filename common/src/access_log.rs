//! The access-log line, written without `tracing`'s formatter.
//!
//! One line per request is the hottest log line there is: through `tracing-subscriber`'s fmt
//! layer it cost the balancer about 6.6 µs of CPU per request (9 % of its samples in
//! `scripts/bench-observe --perf 10`: the fields' Debug/Display through `core::fmt`, the
//! timestamp, the event dispatch). Here the line is formatted into a reused buffer by hand
//! and handed to the same batching writer as every other line ([`crate::telemetry`]), in
//! the same shape as the formatter's: text
//!
//! ```text
//! 2026-11-30T18:45:22.269553Z  INFO access client=127.0.0.1:35922 principal="-" method=PUT path=/files/a status=201 bytes_in=1024 bytes_out=270 duration_ms=323.201 first_byte_ms=323.181 node="node-2" request_id="5b46…"
//! ```
//!
//! or, with `SPEEDBOX_LOG_FORMAT=json`, `{"timestamp":…,"level":"INFO","fields":{"message":
//! "access",…}}`. `RUST_LOG` still decides whether it is written (target `access`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::log_writer::LineWriter;

/// Where access lines go, and in which format; set once by [`crate::telemetry::init`].
static SINK: OnceLock<Sink> = OnceLock::new();

struct Sink {
    writer: LineWriter,
    json: bool,
}

/// Installs the writer access lines go to (the one every other line goes to).
pub(crate) fn install(writer: LineWriter, json: bool) {
    let _ = SINK.set(Sink { writer, json });
}

/// What one access line says.
#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    pub client: SocketAddr,
    /// The token's `sub`, or `-`.
    pub principal: &'a str,
    pub method: &'a str,
    /// Path and query, credentials redacted.
    pub path: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(serialize_with = "as_millis")]
    pub duration_ms: Duration,
    #[serde(serialize_with = "as_millis")]
    pub first_byte_ms: Duration,
    /// The node that answered (`X-Speedbox-Node`), or `-`.
    pub node: &'a str,
    /// `X-Request-Id`, or `-`.
    pub request_id: &'a str,
}

/// Milliseconds with microsecond precision, as the formatter printed the f64 before.
fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

/// Writes `line` at `level` if the log is installed and `RUST_LOG` lets target `access`
/// through at that level (`debug` for routine requests, see [`crate::observe`]).
pub fn write(debug: bool, line: &AccessLine<'_>) {
    let enabled = if debug {
        tracing::enabled!(target: "access", tracing::Level::DEBUG)
    } else {
        tracing::enabled!(target: "access", tracing::Level::INFO)
    };
    let Some(sink) = SINK.get().filter(|_| enabled) else {
        return;
    };
    thread_local! {
        static BUF: RefCell<String> = const { RefCell::new(String::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        let level = if debug { "DEBUG" } else { "INFO" };
        format_line(&mut buf, SystemTime::now(), level, sink.json, line);
        // One call, one whole line: lines never interleave.
        sink.writer.write_line(buf.as_bytes());
    });
}

/// The line as text or JSON, newline included.
fn format_line(buf: &mut String, now: SystemTime, level: &str, json: bool, l: &AccessLine<'_>) {
    let timestamp = humantime::format_rfc3339_micros(now);
    if json {
        #[derive(Serialize)]
        struct Fields<'a> {
            message: &'static str,
            #[serde(flatten)]
            line: &'a AccessLine<'a>,
        }
        #[derive(Serialize)]
        struct Event<'a> {
            timestamp: String,
            level: &'a str,
            fields: Fields<'a>,
        }
        let event = Event {
            timestamp: timestamp.to_string(),
            level,
            fields: Fields {
                message: "access",
                line: l,
            },
        };
        if let Ok(text) = serde_json::to_string(&event) {
            buf.push_str(&text);
        }
    } else {
        // Strings the client chose are quoted and escaped (Debug), as the formatter did,
        // so that no request can forge a line.
        let _ = write!(
            buf,
            "{timestamp} {level:>5} access client={} principal={:?} method={} path={} \
             status={} bytes_in={} bytes_out={} duration_ms={} first_byte_ms={} node={:?} \
             request_id={:?}",
            l.client,
            l.principal,
            l.method,
            l.path,
            l.status,
            l.bytes_in,
            l.bytes_out,
            millis(l.duration_ms),
            millis(l.first_byte_ms),
            l.node,
            l.request_id,
        );
    }
    buf.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            client: "127.0.0.1:35922".parse().unwrap(),
            principal: "al\"ice",
            method: "PUT",
            path: "/files/a?token=REDACTED",
            status: 201,
            bytes_in: 1024,
            bytes_out: 270,
            duration_ms: Duration::from_micros(323_201),
            first_byte_ms: Duration::from_micros(323_181),
            node: "node-2",
            request_id: "id\nforged",
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_064_322_269_553)
    }

    #[test]
    fn text_lines_have_the_formatters_shape_and_escape_what_clients_chose() {
        let mut buf = String::new();
        format_line(&mut buf, at(), "INFO", false, &line());
        assert_eq!(
            buf,
            "2026-11-30T18:45:22.269553Z  INFO access client=127.0.0.1:35922 \
             principal=\"al\\\"ice\" method=PUT path=/files/a?token=REDACTED status=201 \
             bytes_in=1024 bytes_out=270 duration_ms=323.201 first_byte_ms=323.181 \
             node=\"node-2\" request_id=\"id\\nforged\"\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_the_fields() {
        let mut buf = String::new();
        format_line(&mut buf, at(), "DEBUG", true, &line());
        assert!(
            buf.ends_with("}\n") && buf.matches('\n').count() == 1,
            "{buf}"
        );
        let v: serde_json::Value = serde_json::from_str(&buf).unwrap();
        assert_eq!(v["timestamp"], "2026-11-30T18:45:22.269553Z");
        assert_eq!(v["level"], "DEBUG");
        let f = &v["fields"];
        assert_eq!(f["message"], "access");
        assert_eq!(f["client"], "127.0.0.1:35922");
        assert_eq!(f["status"], 201);
        assert_eq!(f["duration_ms"], 323.201);
        assert_eq!(f["request_id"], "id\nforged");
    }
}
