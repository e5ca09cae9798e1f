//! Reading ffprobe's JSON: the facts of a source, or why it is not a video.

use serde::Deserialize;

use super::ffmpeg::ToolError;
use crate::store::MediaFacts;

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

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
