//! Resumable uploads (tus 1.0) through the balancer: real clients (tuspy, tus-js-client),
//! an upload that survives the SIGKILL of the node writing it, and creation-with-upload
//! with CORS. The protocol's features one by one, driven by hand, are in `tus_protocol.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::client::fetch;
use speedbox_tests::tus::{offset_of, run_ok, tus_js, tuspy, TusClient};
use speedbox_tests::{data, Cluster};

const MIB: u64 = 1 << 20;

fn write_file(dir: &Path, name: &str, seed: u64, len: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data::bytes(seed, len)).unwrap();
    path
}

/// Length and SHA-256 of a stored file, as [`fetch`] checked them.
async fn stored(c: &Cluster, name: &str) -> (u64, String) {
    let got = fetch(c, &c.balancer_url(), name).await;
    (got.len, got.sha256)
}

#[tokio::test]
async fn tuspy_and_tus_js_client_upload_through_the_balancer() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    let len = 20 * MIB + 12_345;
    let file = write_file(c.dir(), "video.bin", 21, len);
    let endpoint = format!("{}/uploads", c.balancer_url());

    // Chunks that do not align with GridFS chunks, each PATCH with a sha1 checksum.
    let url = run_ok(tuspy(&endpoint, &file, "clips/by-tuspy.bin", 3 * MIB + 7)).await;
    assert!(url.trim().starts_with(&format!("{endpoint}/")), "{url}");
    let want = (len, data::sha256(21, len));
    assert_eq!(stored(&c, "clips/by-tuspy.bin").await, want);

    let by_js = run_ok(tus_js(&endpoint, &file, "clips/by-tus-js.bin", 5 * MIB)).await;
    assert!(by_js.trim().starts_with(&format!("{endpoint}/")), "{by_js}");
    assert_eq!(stored(&c, "clips/by-tus-js.bin").await, want);

    // A finished upload keeps answering HEAD with its full offset.
    let t = TusClient {
        c: &c,
        base: c.balancer_url(),
    };
    let resp = t.head(url.trim()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["upload-offset"], len.to_string().as_str());
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn upload_resumes_on_another_node_after_a_sigkill() {
    let mut c = Cluster::builder()
        .nodes(3)
        .balancer(true)
        .balancer_toml("fall = 1\n")
        .start()
        .await;
    let len = 48 * MIB + 999;
    let file = write_file(c.dir(), "long.bin", 22, len);
    let endpoint = format!("{}/uploads", c.balancer_url());
    let mut client = tuspy(&endpoint, &file, "resumed.bin", 8 * MIB)
        .spawn()
        .unwrap();

    // Wait until some bytes are durable and a node holds the lease mid-PATCH.
    let db = c.db().await;
    let tus = db.collection::<bson::Document>("fs.tus");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (holder, offset_at_kill) = loop {
        if let Ok(Some(d)) = tus.find_one(doc! {}).await {
            let offset = d.get_i64("offset").unwrap_or(0);
            if let (Ok(node), true) = (d.get_str("lease_node"), offset >= 8 * MIB as i64) {
                break (node.to_string(), offset);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no upload in progress on any node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let upload_id = tus
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap()
        .get_str("_id")
        .unwrap()
        .to_string();
    let victim = (0..3)
        .find(|&i| c.node_id(i) == holder)
        .expect("holder is a node");
    c.kill_node(victim);
    let killed = Instant::now();

    // Watch HEAD through the balancer: it may only ever move forward.
    let t = TusClient {
        c: &c,
        base: c.balancer_url(),
    };
    let head_url = format!("{endpoint}/{upload_id}");
    let mut offsets = vec![offset_at_kill];
    let mut resumed_after = None;
    loop {
        if let Ok(Some(status)) = client.try_wait() {
            assert!(status.success(), "tuspy failed after the kill");
            break;
        }
        let resp = t.head(&head_url).await;
        if resp.status() == StatusCode::OK {
            let offset: i64 = resp.headers()["upload-offset"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                offset >= *offsets.last().unwrap(),
                "HEAD went backwards: {offsets:?} then {offset}"
            );
            if offset > offset_at_kill && resumed_after.is_none() {
                resumed_after = Some(killed.elapsed());
            }
            offsets.push(offset);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "upload did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "node {holder} killed at offset {offset_at_kill}; upload moving again after {:?}",
        resumed_after
    );
    assert_eq!(
        stored(&c, "resumed.bin").await,
        (len, data::sha256(22, len))
    );
}

#[tokio::test]
async fn creation_with_upload_and_cors() {
    let c = Cluster::builder().nodes(1).balancer(true).start().await;
    let content = data::bytes(24, 300_000);
    let resp = c
        .http
        .post(format!("{}/uploads", c.balancer_url()))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 300_000)
        .header(
            "upload-metadata",
            "filename b25lLXNob3QuYmlu,filetype dGV4dC9wbGFpbg==",
        )
        .header("content-type", "application/offset+octet-stream")
        .header("origin", "http://example.test")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(offset_of(&resp), 300_000);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("location") && exposed.contains("upload-offset"));
    // The Location is the balancer's address, not the node's.
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/uploads/", c.balancer_url())),
        "{location}"
    );
    let got = fetch(&c, &c.balancer_url(), "one-shot.bin").await;
    assert_eq!(got.headers["content-type"], "text/plain");
    assert_eq!(got.sha256, data::sha256_of(&content));

    // A browser's preflight.
    let resp = c
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/uploads", c.balancer_url()),
        )
        .header("origin", "http://example.test")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "tus-resumable, upload-offset",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("upload-offset") && allowed.contains("tus-resumable"));
    assert!(resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PATCH"));
}
