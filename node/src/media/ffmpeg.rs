//! ffprobe and ffmpeg as child processes: run niced, with their progress read as they go
//! and their errors summarised.
//!
//! Every child is started with `kill_on_drop`, so dropping the future that runs it (a lost
//! lease, a scratch directory over its limit, a node shutting down) stops it.

use std::path::Path;
use std::process::Stdio;

use speedbox_common::config::MediaConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Why a tool run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The input is not a video ffmpeg can read: trying again cannot help.
    #[error("{0}")]
    Rejected(String),
    /// Anything else (could not start, killed, ffmpeg failed mid-way): worth a retry.
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    /// The same error with `secret` (the source's loopback URL, which carries the source
    /// server's key) replaced by `source`: the summary is shown to clients.
    pub fn hiding(self, secret: &str) -> ToolError {
        match self {
            ToolError::Rejected(why) => ToolError::Rejected(why.replace(secret, "source")),
            ToolError::Failed(why) => ToolError::Failed(why.replace(secret, "source")),
        }
    }
}

/// Lines of a tool's stderr kept for its error summary.
const STDERR_LINES: usize = 8;

/// The seconds of output a `-progress` line reports (`out_time_us=…`).
pub fn progress_secs(line: &str) -> Option<f64> {
    let us: i64 = line.strip_prefix("out_time_us=")?.trim().parse().ok()?;
    (us >= 0).then(|| us as f64 / 1e6)
}

/// Runs `program` with `args` in `dir` at the configured niceness. With `progress`, calls
/// it with each `-progress` report (seconds of output) and returns nothing; without,
/// returns stdout. A non-zero exit becomes `failed(summary)`, the summary being the last
/// lines of stderr.
pub async fn run(
    cfg: &MediaConfig,
    program: &str,
    args: &[String],
    dir: &Path,
    mut progress: Option<&mut (dyn FnMut(f64) + Send)>,
    failed: fn(String) -> ToolError,
) -> Result<String, ToolError> {
    // `nice` rather than setpriority in the child: this crate has no unsafe code.
    let mut child = Command::new("nice")
        .arg("-n")
        .arg(cfg.nice.to_string())
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ToolError::Failed(format!("cannot start {program}: {e}")))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ToolError::Failed(format!("{program}: no pipes")));
    };
    let errors = tokio::spawn(last_lines(stderr));
    let mut out = String::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match progress.as_mut() {
            Some(report) => {
                if let Some(secs) = progress_secs(&line) {
                    report(secs);
                }
            }
            None => {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ToolError::Failed(format!("{program}: {e}")))?;
    let errors = errors.await.unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let summary = if errors.is_empty() {
        format!("{program} exited with {status}")
    } else {
        errors.join("; ")
    };
    Err(failed(summary))
}

/// The last [`STDERR_LINES`] non-empty lines of `stream`.
async fn last_lines(stream: impl AsyncRead + Unpin) -> Vec<String> {
    let mut kept = std::collections::VecDeque::new();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(line.chars().take(300).collect::<String>());
    }
    kept.into()
}

#[cfg(test)]
mod tests {
    use super::progress_secs;

    #[test]
    fn progress_lines_are_read() {
        assert_eq!(progress_secs("out_time_us=2500000"), Some(2.5));
        assert_eq!(progress_secs("out_time_us=N/A"), None);
        assert_eq!(progress_secs("frame=12"), None);
    }
}
