//! What ffprobe and ffmpeg are asked to do: the renditions a source gets and the
//! argument lists that make them (pure, unit-tested).

use speedbox_common::config::MediaConfig;

use crate::store::{MediaFacts, Rendition};

/// Audio of every rendition: AAC-LC stereo at this many bits per second.
const AUDIO_BITRATE: i64 = 128_000;

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

/// A read of the source that moves no byte for this long fails the run (`-rw_timeout`,
/// in µs): a stuck input must not hold a job's lease forever.
const READ_TIMEOUT_US: &str = "30000000";

/// ffprobe's arguments for `input`.
pub fn probe_args(input: &str) -> Vec<String> {
    [
        "-v",
        "error",
        "-rw_timeout",
        READ_TIMEOUT_US,
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
            "-rw_timeout",
            READ_TIMEOUT_US,
            "-i",
            input,
            "-threads",
            &cfg.threads.to_string(),
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
    let threads = cfg.threads.to_string();
    let mut filter = format!("[0:v]split={n}");
    for i in 0..n {
        filter.push_str(&format!("[s{i}]"));
    }
    for (i, r) in plan.iter().enumerate() {
        filter.push_str(&format!(";[s{i}]scale=-2:{}[v{i}]", r.height));
    }
    let mut args = common_args(cfg);
    let seg = cfg.segment_secs;
    args.extend(
        [
            "-rw_timeout",
            READ_TIMEOUT_US,
            "-i",
            input,
            "-filter_complex",
            &filter,
        ]
        .map(String::from),
    );
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
            // Again after the input: before it, -threads binds only the decoder, and x264
            // would take 1.5 threads per core for each rendition (13 threads, 1.7 cores
            // measured on 2 cores with a limit of 1).
            "-threads",
            &threads,
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

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
