//! Test videos and what the tests ask of video jobs: clips made by ffmpeg's `testsrc` and
//! `sine` sources, `GET /media/{name}` polled until a job ends, and ffprobe reading what
//! the cluster serves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::file_url;
use crate::Cluster;

/// Makes `dir/name`: an H.264/AAC MP4 of `secs` seconds at `width`×`height`, 25 fps,
/// with a 440 Hz tone unless `silent`; index at the front (`+faststart`).
pub fn make(dir: &Path, name: &str, secs: u32, width: u32, height: u32, silent: bool) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=25"));
    if !silent {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
        cmd.args(["-c:a", "aac"]);
    }
    cmd.args([
        "-t",
        &secs.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    ])
    .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
    .arg(&out);
    let status = cmd.status().expect("ffmpeg (scripts/setup installs it)");
    assert!(status.success(), "ffmpeg could not make {name}");
    out
}

/// `GET /media/{name}` at `base`: status and JSON.
pub async fn status(c: &Cluster, base: &str, name: &str) -> (u16, Value) {
    status_as(c, base, name, None).await
}

/// [`status`] with an `Authorization` header.
pub async fn status_as(c: &Cluster, base: &str, name: &str, auth: Option<&str>) -> (u16, Value) {
    let url = file_url(base, name).replacen("/files/", "/media/", 1);
    let mut req = c.http.get(url);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /media/{name}` until its job is `done` or `failed` (or `within` passes,
/// which fails the test), and returns the last answer.
pub async fn wait_ended(c: &Cluster, base: &str, name: &str, within: Duration) -> Value {
    wait_ended_as(c, base, name, None, within).await
}

/// [`wait_ended`] with an `Authorization` header.
pub async fn wait_ended_as(
    c: &Cluster,
    base: &str,
    name: &str,
    auth: Option<&str>,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, job) = status_as(c, base, name, auth).await;
        assert_eq!(code, 200, "GET /media/{name}: {job}");
        if job["state"] == "done" || job["state"] == "failed" {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job of {name} not over after {within:?}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ffprobe's `-show_streams -show_format` of `url`, as JSON.
pub fn probe(url: &str) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(url)
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
