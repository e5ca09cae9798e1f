//! ffprobe and ffmpeg as child processes: the argument lists (pure, unit-tested), reading
//! ffprobe's JSON, and running a tool niced with its progress and its error summary.
//!
//! Every child is started with `kill_on_drop`, so dropping the future that runs it (a lost
//! lease, a scratch directory over its limit, a node shutting down) stops it.

use std::path::Path;
use std::process::Stdio;

use serde::Deserialize;
use speedbox_common::config::MediaConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::store::{MediaFacts, Rendition};

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

/// Audio of every rendition: AAC-LC stereo at this many bits per second.
const AUDIO_BITRATE: i64 = 128_000;
/// Lines of a tool's stderr kept for its error summary.
const STDERR_LINES: usize = 8;

/// Video bits per second for a rendition `height` pixels high: 5 Mb/s at 1080p, scaled by
/// pixel count to the power 0.75 (about 2.9 Mb/s at 720p, 1.2 Mb/s at 360p), in line with
/// the ladders of Apple's HLS authoring specification.
pub fn video_bitrate(height: u32) -> i64 {
    (5_000_000.0 * (f64::from(height) / 1080.0).powf(1.5)) as i64
}

/// The width of a rendition `height` high of a `width`×`source_height` source: the aspect
/// kept, rounded to even as ffmpeg's `scale=-2:H` does.
pub fn rendition_width(width: i64, source_height: i64, height: u32) -> i64 {
    if source_height <= 0 {
        return 0;
    }
    let exact = width as f64 * f64::from(height) / source_height as f64;
    ((exact / 2.0).round() as i64) * 2
}

/// The renditions a job makes of a source with `facts`, and their playlists' names
/// (relative to the job's output directory).
pub fn plan(cfg: &MediaConfig, facts: &MediaFacts) -> Vec<Rendition> {
    cfg.renditions_for(u32::try_from(facts.height).unwrap_or(0))
        .into_iter()
        .map(|h| Rendition {
            width: rendition_width(facts.width, facts.height, h),
            height: i64::from(h),
            bandwidth: video_bitrate(h) * 11 / 10
                + if facts.audio_codec.is_some() {
                    AUDIO_BITRATE
                } else {
                    0
                },
            playlist: format!("{h}p/index.m3u8"),
        })
        .collect()
}

/// ffprobe's arguments for `input`.
pub fn probe_args(input: &str) -> Vec<String> {
    [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        input,
    ]
    .map(String::from)
    .to_vec()
}

/// ffmpeg's arguments for a poster JPEG at `out`: the frame at `at_s` seconds, at most
/// 720 pixels high.
pub fn poster_args(cfg: &MediaConfig, input: &str, at_s: f64, out: &str) -> Vec<String> {
    let mut args = common_args(cfg);
    args.extend(
        [
            "-ss",
            &format!("{at_s:.3}"),
            "-i",
            input,
            "-frames:v",
            "1",
            "-vf",
            "scale=-2:'min(720,ih)'",
            "-q:v",
            "3",
            "-update",
            "1",
            out,
        ]
        .map(String::from),
    );
    args
}

/// ffmpeg's arguments for the HLS renditions `plan` of `input` in one run: one decode,
/// split and scaled per rendition, H.264 (keyframes every `segment_secs`, so segments
/// cut there) and AAC; written as `<H>p/index.m3u8`, `<H>p/000000.ts`, … and
/// `master.m3u8`, all URLs relative (RFC 8216).
pub fn hls_args(
    cfg: &MediaConfig,
    input: &str,
    facts: &MediaFacts,
    plan: &[Rendition],
) -> Vec<String> {
    let n = plan.len();
    let audio = facts.audio_codec.is_some();
    let mut filter = format!("[0:v]split={n}");
    for i in 0..n {
        filter.push_str(&format!("[s{i}]"));
    }
    for (i, r) in plan.iter().enumerate() {
        filter.push_str(&format!(";[s{i}]scale=-2:{}[v{i}]", r.height));
    }
    let mut args = common_args(cfg);
    let seg = cfg.segment_secs;
    args.extend(["-i", input, "-filter_complex", &filter].map(String::from));
    for i in 0..n {
        args.extend(["-map".to_string(), format!("[v{i}]")]);
        if audio {
            args.extend(["-map", "0:a:0"].map(String::from));
        }
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            &format!("expr:gte(t,n_forced*{seg})"),
        ]
        .map(String::from),
    );
    for (i, r) in plan.iter().enumerate() {
        let rate = video_bitrate(r.height as u32);
        args.extend([
            format!("-b:v:{i}"),
            rate.to_string(),
            format!("-maxrate:v:{i}"),
            (rate * 11 / 10).to_string(),
            format!("-bufsize:v:{i}"),
            (rate * 2).to_string(),
        ]);
    }
    if audio {
        args.extend(
            [
                "-c:a",
                "aac",
                "-b:a",
                &AUDIO_BITRATE.to_string(),
                "-ac",
                "2",
            ]
            .map(String::from),
        );
    }
    let map: Vec<String> = plan
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let a = if audio {
                format!(",a:{i}")
            } else {
                String::new()
            };
            format!("v:{i}{a},name:{}p", r.height)
        })
        .collect();
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            &seg.to_string(),
            "-hls_playlist_type",
            "vod",
            "-hls_flags",
            "independent_segments",
            "-hls_segment_filename",
            "%v/%06d.ts",
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            &map.join(" "),
            "%v/index.m3u8",
        ]
        .map(String::from),
    );
    args
}

/// What every ffmpeg run starts with: quiet but for errors, machine-readable progress on
/// stdout, and the thread limit for decoding, filtering and encoding.
fn common_args(cfg: &MediaConfig) -> Vec<String> {
    let threads = cfg.threads.to_string();
    [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-y",
        "-threads",
        &threads,
        "-filter_threads",
        &threads,
        "-filter_complex_threads",
        &threads,
    ]
    .map(String::from)
    .to_vec()
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    avg_frame_rate: Option<String>,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: i64,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
    bit_rate: Option<String>,
}

/// The facts of ffprobe's `-print_format json -show_format -show_streams` output, or why
/// it is not a video (no video stream; a cover picture does not count).
pub fn parse_probe(json: &str) -> Result<MediaFacts, ToolError> {
    let probe: Probe = serde_json::from_str(json)
        .map_err(|e| ToolError::Failed(format!("ffprobe's output: {e}")))?;
    let video = probe
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .ok_or_else(|| ToolError::Rejected("no video stream".into()))?;
    let (width, height) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
    if width <= 0 || height <= 0 {
        return Err(ToolError::Rejected("the video stream has no size".into()));
    }
    let audio = probe
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"));
    let format = probe.format.as_ref();
    Ok(MediaFacts {
        duration_s: format
            .and_then(|f| f.duration.as_deref()?.parse().ok())
            .unwrap_or(0.0),
        width,
        height,
        video_codec: video.codec_name.clone().unwrap_or_default(),
        audio_codec: audio.map(|a| a.codec_name.clone().unwrap_or_default()),
        bit_rate: format.and_then(|f| f.bit_rate.as_deref()?.parse().ok()),
        frame_rate: video.avg_frame_rate.as_deref().and_then(parse_rate),
    })
}

/// `"30000/1001"` → 29.97; `"0/0"` → None.
fn parse_rate(rate: &str) -> Option<f64> {
    let (n, d) = rate.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

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
#[path = "ffmpeg_tests.rs"]
mod tests;
