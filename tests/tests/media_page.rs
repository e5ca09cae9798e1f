//! Videos on the browser page, in a real headless Chromium driven by selenium: an MP4
//! uploaded through the balancer gets its video job (poster and HLS renditions under
//! `NAME.media/`), and the page shows the poster and plays the video with hls.js. The first
//! test leaves its screenshot in `target/test-artifacts/page-video.png`.
//!
//! Needs ffmpeg (for the test video, and on the nodes), Chromium with selenium, and hls.js
//! built into the balancer: `scripts/setup --test-tools` installs all three.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use speedbox_tests::client::put_with;
use speedbox_tests::{auth, video, workspace_root, Cluster};

/// A name with a directory and a space, so every URL the page builds must encode it.
const NAME: &str = "clips/sunset clip.mp4";
const ENCODED: &str = "clips/sunset%20clip.mp4";
/// How long the job may take on a debug build of the nodes.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn the_page_shows_a_videos_poster_and_plays_it_by_hls() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    assert_hls_served(&c).await;
    upload_and_wait(&c, None).await;
    let shot = c.dir().join("page-video.png");
    let seen = browser_video(c.balancer_url(), &shot).await;
    assert_played_by_hls(&seen);
    let png = std::fs::read(&shot).expect("the browser's screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let artifact = workspace_root().join("target/test-artifacts/page-video.png");
    std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
    std::fs::copy(&shot, &artifact).unwrap();
}

/// With access control on and nothing anonymous, every request of the player needs the
/// token: the poster carries it in the query, hls.js in the header of each playlist and
/// segment request (else it would fail and the page fall back to the original file).
#[tokio::test]
async fn with_a_token_the_poster_and_every_hls_request_carry_it() {
    let c = Cluster::builder()
        .nodes(2)
        .balancer(true)
        .file("secrets/k1.key", auth::K1)
        .extra_toml(&auth::auth_toml(&["k1"], ""))
        .start()
        .await;
    assert_hls_served(&c).await;
    let token = auth::mint(&auth::claims("viewer", "read write", ""));
    upload_and_wait(&c, Some(&token)).await;
    let shot = c.dir().join("page-video-token.png");
    let seen = browser_video(format!("{}/#token={token}", c.balancer_url()), &shot).await;
    assert_played_by_hls(&seen);
}

/// The balancer serves hls.js itself, to anyone (it is no secret), cached for good.
async fn assert_hls_served(c: &Cluster) {
    let url = format!("{}/assets/hls.min.js", c.balancer_url());
    let resp = c.http.get(url).send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "hls.js is not built into the balancer (run scripts/setup, which installs it): {}",
        String::from_utf8_lossy(&body)
    );
    assert!(body.len() > 100_000, "{} bytes", body.len());
    let cache = headers["cache-control"].to_str().unwrap();
    assert!(cache.contains("immutable"), "{cache}");
}

/// PUTs a 6 s 640×360 H.264/AAC test video as [`NAME`] through the balancer and waits
/// until its job is done.
async fn upload_and_wait(c: &Cluster, token: Option<&str>) {
    let clip = video::make(c.dir(), "clip.mp4", 6, 640, 360, false);
    let bearer = token.map(auth::bearer);
    let mut headers = vec![("content-type", "video/mp4")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let body = std::fs::read(&clip).unwrap();
    let resp = put_with(c, &c.balancer_url(), ENCODED, body, &headers).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let job = video::wait_ended_as(
        c,
        &c.balancer_url(),
        ENCODED,
        bearer.as_deref(),
        JOB_TIMEOUT,
    )
    .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["facts"]["height"], 360, "{job}");
}

/// What a person must have seen: the poster, the video played past 1.5 s by hls.js at
/// its size, and the job's outputs in one row rather than file by file.
fn assert_played_by_hls(seen: &Value) {
    assert!(seen["poster"]["width"].as_u64() > Some(0), "{seen}");
    assert_eq!(seen["mode"], "hls", "{seen}");
    assert!(
        seen["player"]["how"].as_str().unwrap().starts_with("HLS"),
        "{seen}"
    );
    assert!(seen["player"]["height"].as_u64() > Some(0), "{seen}");
    let times: Vec<f64> = seen["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(times.last() > Some(&1.5), "{seen}");
    let rows: Vec<&str> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let media_dir = format!("{NAME}.media/");
    let grouped = rows.iter().filter(|r| r.contains(&media_dir)).count();
    assert_eq!(grouped, 1, "one row for the job's outputs: {rows:#?}");
    assert!(
        !rows.iter().any(|r| r.contains(".media/poster.jpg")),
        "{rows:#?}"
    );
}

/// Runs `tests/clients/browser_video.py`: plays [`NAME`] on the page at `url` in
/// headless Chromium; returns its report (`poster`, `mode`, `player`, `times`, `rows`).
async fn browser_video(url: String, screenshot: &Path) -> Value {
    let out = tokio::task::spawn_blocking({
        let shot = screenshot.to_path_buf();
        move || {
            Command::new(workspace_root().join(".venv/bin/python"))
                .arg(workspace_root().join("tests/clients/browser_video.py"))
                .arg(url)
                .arg(NAME)
                .arg(shot)
                .output()
                .expect("run the browser")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("report")
}
