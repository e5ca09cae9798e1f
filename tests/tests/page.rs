//! The browser upload page, in a real headless Chromium driven by selenium: a generated
//! 100 MiB file goes up through the page (tus, with a progress bar), shows up in the list,
//! and downloads byte-identical. The test leaves the screenshot it took in
//! `target/test-artifacts/page-upload.png`.

use std::path::Path;
use std::process::Command;

use speedbox_tests::client::fetch;
use speedbox_tests::{auth, data, workspace_root, Cluster};

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
    let seen = browser_upload(c.balancer_url(), &file, &screenshot).await;
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

/// Runs `tests/clients/browser_upload.py`: uploads `file` through the page at `url` in
/// headless Chromium; returns its report (`progress_seen`, `status`, `listed`).
async fn browser_upload(url: String, file: &Path, screenshot: &Path) -> serde_json::Value {
    let out = tokio::task::spawn_blocking({
        let (file, shot) = (file.to_path_buf(), screenshot.to_path_buf());
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
    serde_json::from_str(stdout.trim()).expect("report")
}

/// With access control on, the page takes the token from the link `scripts/cluster token
/// --page` prints and sends it on every call, tus included; the upload belongs to the
/// token's principal.
#[tokio::test]
async fn the_page_uploads_with_the_token_its_link_carries() {
    let c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .file("secrets/k1.key", auth::K1)
        .extra_toml(&auth::auth_toml(&["k1"], ""))
        .start()
        .await;
    let token = auth::mint(&auth::claims("page-user", "read write", ""));
    let listing = c
        .http
        .get(format!("{}/files", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 401, "the cluster is protected");

    let len = 5 * MIB;
    let file = c.dir().join("with-token.bin");
    std::fs::write(&file, data::bytes(32, len)).unwrap();
    let shot = c.dir().join("page-token.png");
    let url = format!("{}/#token={token}", c.balancer_url());
    let seen = browser_upload(url, &file, &shot).await;
    assert!(
        seen["status"].as_str().unwrap().starts_with("done"),
        "{seen}"
    );
    assert_eq!(seen["listed"], true, "{seen}");
    let resp = c
        .http
        .get(format!("{}/files/with-token.bin", c.balancer_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (got_len, sha) = data::drain(resp).await.unwrap();
    assert_eq!((got_len, sha), (len, data::sha256(32, len)));
    let upload = c
        .db()
        .await
        .collection::<bson::Document>("fs.tus")
        .find_one(bson::doc! {"name": "with-token.bin"})
        .await
        .unwrap()
        .expect("the tus upload's state, kept until it expires");
    assert_eq!(upload.get_str("owner").unwrap(), "page-user");
}

/// A big-endian `u32` of a PNG's IHDR chunk: the width at byte 16, the height at 20.
fn png_dimension(png: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(png[at..at + 4].try_into().expect("an IHDR chunk"))
}
