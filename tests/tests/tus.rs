//! Resumable uploads (tus 1.0): real clients (tuspy, tus-js-client) through the balancer,
//! an upload that survives the SIGKILL of the node writing it, and the protocol's error
//! cases driven by hand.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::tus::{offset_of, TusClient};
use speedbox_tests::{data, eventually, workspace_root, Cluster};

const MIB: u64 = 1 << 20;

fn write_file(dir: &Path, name: &str, seed: u64, len: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data::bytes(seed, len)).unwrap();
    path
}

/// Length and SHA-256 of a stored file's bytes, after checking that the digest the node
/// recorded for it (its ETag) is the digest of those bytes.
async fn stored_sha256(c: &Cluster, base: &str, name: &str) -> (u64, String) {
    let resp = c
        .http
        .get(format!("{base}/files/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {name}");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let (len, sha) = data::drain(resp).await.unwrap();
    assert_eq!(etag, format!("\"{sha}\""), "recorded digest of {name}");
    (len, sha)
}

fn tuspy(endpoint: &str, file: &Path, name: &str, chunk: u64) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(workspace_root().join(".venv/bin/python"));
    cmd.arg(workspace_root().join("tests/clients/tuspy_upload.py"))
        .arg(endpoint)
        .arg(file)
        .arg(name)
        .arg(chunk.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run_ok(mut cmd: tokio::process::Command) -> String {
    let out = cmd.output().await.expect("start client");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
    assert_eq!(
        stored_sha256(&c, &c.balancer_url(), "clips/by-tuspy.bin").await,
        want
    );

    let mut node = tokio::process::Command::new("node");
    node.arg(workspace_root().join("tests/clients/tus_js_upload.js"))
        .arg(&endpoint)
        .arg(&file)
        .arg("clips/by-tus-js.bin")
        .arg((5 * MIB).to_string());
    run_ok(node).await;
    assert_eq!(
        stored_sha256(&c, &c.balancer_url(), "clips/by-tus-js.bin").await,
        want
    );

    // A finished upload keeps answering HEAD with its full offset.
    let resp = c
        .http
        .head(url.trim())
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
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
    let head_url = format!("{endpoint}/{upload_id}");
    let mut offsets = vec![offset_at_kill];
    let mut resumed_after = None;
    loop {
        if let Ok(Some(status)) = client.try_wait() {
            assert!(status.success(), "tuspy failed after the kill");
            break;
        }
        let resp = c
            .http
            .head(&head_url)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
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
        stored_sha256(&c, &c.balancer_url(), "resumed.bin").await,
        (len, data::sha256(22, len))
    );
}

#[tokio::test]
async fn protocol_errors_checksums_termination_and_expiry() {
    let c = Cluster::builder()
        .storage_toml("chunk_size = 1024\ntus_expiry_secs = 2\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(23, 5000);

    // OPTIONS advertises the protocol; other requests must name its version.
    let resp = c
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/uploads", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let h = resp.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert!(h["tus-extension"].to_str().unwrap().contains("checksum"));
    assert!(h["tus-extension"].to_str().unwrap().contains("expiration"));
    assert_eq!(h["tus-checksum-algorithm"], "sha1,md5,sha256");
    assert!(h.contains_key("tus-max-size"));
    let resp = c
        .http
        .post(format!("{}/uploads", t.base))
        .header("upload-length", 5)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");

    let url = t.create(5000, "proto.bin").await;
    let resp = t.patch(&url, 0, content[..1500].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&resp), 1500);
    assert_eq!(offset_of(&t.head(&url).await), 1500);

    // Wrong offset: 409. Wrong content type: 415.
    let resp = t.patch(&url, 1000, content[1000..2000].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let resp = c
        .http
        .patch(&url)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", 1500)
        .header("content-type", "application/octet-stream")
        .body(content[1500..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A checksum mismatch discards the PATCH's bytes: 460, offset unchanged.
    let wrong = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=";
    let resp = t
        .patch_checked(&url, 1500, content[1500..4000].to_vec(), wrong)
        .await;
    assert_eq!(resp.status().as_u16(), 460);
    assert_eq!(offset_of(&t.head(&url).await), 1500);
    let resp = t
        .patch_checked(&url, 1500, content[1500..4000].to_vec(), "crc32 AAAA")
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // The right checksum (sha256 here) is accepted; the last PATCH completes the file.
    use base64::Engine;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sum = format!(
        "sha256 {}",
        b64.encode(sha2::Sha256::digest(&content[1500..4000]))
    );
    let resp = t
        .patch_checked(&url, 1500, content[1500..4000].to_vec(), &sum)
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&resp), 4000);
    // The file is invisible until its last byte.
    let resp = c
        .http
        .get(format!("{}/files/proto.bin", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = t.patch(&url, 4000, content[4000..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&resp), 5000);
    assert_eq!(
        stored_sha256(&c, &t.base, "proto.bin").await,
        (5000, data::sha256_of(&content))
    );

    // More bytes than Upload-Length: 413.
    let url2 = t.create(10, "small.bin").await;
    let resp = t.patch(&url2, 0, vec![1; 20]).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Termination: 204, then the upload is gone and its chunks with it.
    let url3 = t.create(4096, "terminated.bin").await;
    let resp = t.patch(&url3, 0, content[..3000].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c
        .http
        .delete(&url3)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.head(&url3).await.status(), StatusCode::NOT_FOUND);
    let resp = t.patch(&url3, 3000, content[3000..4000].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Expiry (2 s here): an idle upload answers 410, then the sweep removes it and its chunks.
    let url4 = t.create(4096, "expiring.bin").await;
    let resp = t.patch(&url4, 0, content[..2048].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let db = c.db().await;
    let tus = db.collection::<bson::Document>("fs.tus");
    let id = url4.rsplit('/').next().unwrap().to_string();
    let file_id = tus
        .find_one(doc! {"_id": &id})
        .await
        .unwrap()
        .unwrap()
        .get_object_id("file_id")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = t.head(&url4).await.status();
    assert!(
        status == StatusCode::GONE || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    let chunks = db.collection::<bson::Document>("fs.chunks");
    eventually(Duration::from_secs(10), "expired upload swept", || async {
        tus.count_documents(doc! {"_id": &id}).await.unwrap() == 0
            && chunks
                .count_documents(doc! {"files_id": file_id})
                .await
                .unwrap()
                == 0
    })
    .await;
    // The completed file is untouched by all of this.
    let resp = c
        .http
        .get(format!("{}/files/proto.bin", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
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
    let resp = c
        .http
        .get(format!("{}/files/one-shot.bin", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);

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
