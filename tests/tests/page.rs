//! The browser upload page, in a real headless Chromium driven by selenium: a generated
//! 100 MiB file goes up through the page (tus, with a progress bar), shows up in the list,
//! and downloads byte-identical. The test leaves the screenshot it took in
//! `target/test-artifacts/page-upload.png`.

use std::process::Command;

use speedbox_tests::client::fetch;
use speedbox_tests::{data, workspace_root, Cluster};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_file_uploaded_through_the_page_downloads_byte_identical() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    let resp = c.http.get(c.balancer_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    let len = 100 * MIB;
    let file = c.dir().join("holiday-video.bin");
    std::fs::write(&file, data::bytes(31, len)).unwrap();
    // Taken into this run's new directory, so no earlier run's file can stand in for it.
    let screenshot = c.dir().join("page-upload.png");
    assert!(!screenshot.exists());
    let out = tokio::task::spawn_blocking({
        let (url, file, shot) = (c.balancer_url(), file.clone(), screenshot.clone());
        move || {
            Command::new(workspace_root().join(".venv/bin/python"))
                .arg(workspace_root().join("tests/clients/browser_upload.py"))
                .arg(url)
                .arg(file)
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
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("report");
    let progress: Vec<f64> = seen["progress_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // The bar moved: values strictly between 0 and 100 were shown, never going back.
    assert!(
        progress.iter().any(|p| *p > 0.0 && *p < 100.0),
        "{progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&100.0), "{seen}");
    assert!(
        seen["status"].as_str().unwrap().starts_with("done"),
        "{seen}"
    );
    assert_eq!(seen["listed"], true, "{seen}");
    let png = std::fs::read(&screenshot).expect("the browser's screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, height) = (png_dimension(&png, 16), png_dimension(&png, 20));
    // As wide as the window browser_upload.py opens, and the page's height of it.
    assert!(
        width == 1100 && height >= 600,
        "a {width}x{height} screenshot"
    );
    let artifact = workspace_root().join("target/test-artifacts/page-upload.png");
    std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
    std::fs::copy(&screenshot, &artifact).unwrap();

    let got = fetch(&c, &c.balancer_url(), "holiday-video.bin").await;
    assert_eq!((got.len, got.sha256), (len, data::sha256(31, len)));
}

/// A big-endian `u32` of a PNG's IHDR chunk: the width at byte 16, the height at 20.
fn png_dimension(png: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(png[at..at + 4].try_into().expect("an IHDR chunk"))
}
