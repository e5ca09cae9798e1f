//! The tus 1.0 protocol on one node, driven by hand, one feature per test: discovery and
//! the version header, offsets and content type, checksums, completion, the length limit,
//! termination and expiry.

use std::time::Duration;

use base64::Engine;
use bson::doc;
use reqwest::StatusCode;
use sha2::Digest;
use speedbox_tests::client::{count, fetch, fetch_bytes, get};
use speedbox_tests::tus::{offset_of, TusClient};
use speedbox_tests::{data, eventually, Cluster};

/// Small GridFS chunks, so a few KiB span several chunks and a partial last one.
const SMALL_CHUNKS: &str = "chunk_size = 1024\n";

async fn node() -> Cluster {
    Cluster::builder().storage_toml(SMALL_CHUNKS).start().await
}

fn client(c: &Cluster) -> TusClient<'_> {
    TusClient {
        c,
        base: c.node_url(0),
    }
}

/// The `file_id` an upload's state reserved for its chunks.
async fn file_id_of(c: &Cluster, url: &str) -> bson::oid::ObjectId {
    let id = url.rsplit('/').next().unwrap();
    c.db()
        .await
        .collection::<bson::Document>("fs.tus")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .expect("the upload's state")
        .get_object_id("file_id")
        .unwrap()
}

#[tokio::test]
async fn options_advertise_the_protocol_and_other_requests_must_name_its_version() {
    let c = node().await;
    let base = c.node_url(0);
    let resp = c
        .http
        .request(reqwest::Method::OPTIONS, format!("{base}/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let h = resp.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert!(h["tus-extension"].to_str().unwrap().contains("checksum"));
    assert!(h["tus-extension"].to_str().unwrap().contains("expiration"));
    assert_eq!(h["tus-checksum-algorithm"], "sha1,md5,sha256");
    let max: u64 = h["tus-max-size"].to_str().unwrap().parse().unwrap();
    assert!(max > 0, "Tus-Max-Size {max}");
    let resp = c
        .http
        .post(format!("{base}/uploads"))
        .header("upload-length", 5)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
}

#[tokio::test]
async fn a_patch_must_start_at_the_offset_and_carry_offset_octet_stream() {
    let c = node().await;
    let t = client(&c);
    let content = data::bytes(23, 5000);
    let url = t.create(5000, "proto.bin").await;
    let resp = t.patch(&url, 0, content[..1500].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&resp), 1500);
    assert_eq!(offset_of(&t.head(&url).await), 1500);

    // Wrong offset: 409. Wrong content type: 415. Neither moves the offset.
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
    assert_eq!(offset_of(&t.head(&url).await), 1500);
}

/// A refused PATCH (wrong offset, bad checksum) frees the upload's lease before its answer
/// goes out: the client's next PATCH, sent the moment it reads the refusal, finds the lease
/// free instead of getting 423.
#[tokio::test]
async fn a_refused_patch_frees_the_lease_before_it_answers() {
    let c = node().await;
    let t = client(&c);
    let rounds = 30u64;
    let content = data::bytes(29, rounds);
    let url = t.create(rounds, "refused.bin").await;
    for offset in 0..rounds {
        let i = offset as usize;
        let refused = t.patch(&url, offset + 1, content[i..i + 1].to_vec()).await;
        assert_eq!(refused.status(), StatusCode::CONFLICT, "round {offset}");
        let wrong = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=";
        let refused = t
            .patch_checked(&url, offset, content[i..i + 1].to_vec(), wrong)
            .await;
        assert_eq!(refused.status().as_u16(), 460, "round {offset}");
        let resp = t.patch(&url, offset, content[i..i + 1].to_vec()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "round {offset}");
    }
    assert_eq!(
        fetch_bytes(&c, &c.node_url(0), "refused.bin").await,
        content
    );
}

#[tokio::test]
async fn a_checksum_mismatch_discards_the_patch() {
    let c = node().await;
    let t = client(&c);
    let content = data::bytes(23, 5000);
    let url = t.create(5000, "proto.bin").await;
    let resp = t.patch(&url, 0, content[..1500].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // A mismatch discards the PATCH's bytes: 460, offset unchanged.
    let wrong = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=";
    let resp = t
        .patch_checked(&url, 1500, content[1500..4000].to_vec(), wrong)
        .await;
    assert_eq!(resp.status().as_u16(), 460);
    assert_eq!(offset_of(&t.head(&url).await), 1500);
    // An algorithm the server does not offer: 400.
    let resp = t
        .patch_checked(&url, 1500, content[1500..4000].to_vec(), "crc32 AAAA")
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(offset_of(&t.head(&url).await), 1500);

    // The right checksum (sha256 here) is accepted.
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
    // What was discarded left no trace: the file ends up exactly the content.
    let resp = t.patch(&url, 4000, content[4000..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(fetch_bytes(&c, &t.base, "proto.bin").await == content);
}

#[tokio::test]
async fn the_file_appears_with_its_last_byte() {
    let c = node().await;
    let t = client(&c);
    let content = data::bytes(23, 5000);
    let url = t.create(5000, "proto.bin").await;
    for (from, to) in [(0, 1500), (1500, 4000)] {
        let resp = t
            .patch(&url, from, content[from as usize..to].to_vec())
            .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        // The file is invisible until its last byte.
        let resp = get(&c, &t.base, "proto.bin").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "after {to} bytes");
    }
    let resp = t.patch(&url, 4000, content[4000..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&resp), 5000);
    let got = fetch(&c, &t.base, "proto.bin").await;
    assert_eq!((got.len, got.sha256), (5000, data::sha256_of(&content)));
}

#[tokio::test]
async fn more_bytes_than_the_upload_length_are_refused() {
    let c = node().await;
    let t = client(&c);
    let url = t.create(10, "small.bin").await;
    let resp = t.patch(&url, 0, vec![1; 20]).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(offset_of(&t.head(&url).await), 0);
}

#[tokio::test]
async fn termination_removes_the_upload_and_its_chunks() {
    let c = node().await;
    let t = client(&c);
    let content = data::bytes(23, 5000);
    let url = t.create(4096, "terminated.bin").await;
    let resp = t.patch(&url, 0, content[..3000].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let file_id = file_id_of(&c, &url).await;
    assert!(count(&c, "fs.chunks", doc! {"files_id": file_id}).await > 0);
    assert_eq!(t.delete(&url).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(count(&c, "fs.chunks", doc! {"files_id": file_id}).await, 0);
    assert_eq!(t.head(&url).await.status(), StatusCode::NOT_FOUND);
    let resp = t.patch(&url, 3000, content[3000..4000].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = get(&c, &t.base, "terminated.bin").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_idle_upload_expires_and_is_swept() {
    let c = Cluster::builder()
        .storage_toml(&format!(
            "{SMALL_CHUNKS}tus_expiry_secs = 2\nsweep_interval_secs = 1\n"
        ))
        .start()
        .await;
    let t = client(&c);
    let content = data::bytes(23, 5000);
    // A completed upload, which expiry must leave alone.
    let done = t.create(5000, "proto.bin").await;
    let resp = t.patch(&done, 0, content.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Expiry (2 s here): an idle upload answers 410, then the sweep removes it and its chunks.
    let url = t.create(4096, "expiring.bin").await;
    let resp = t.patch(&url, 0, content[..2048].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let id = url.rsplit('/').next().unwrap().to_string();
    let file_id = file_id_of(&c, &url).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = t.head(&url).await.status();
    assert!(
        status == StatusCode::GONE || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    eventually(Duration::from_secs(10), "expired upload swept", || async {
        count(&c, "fs.tus", doc! {"_id": &id}).await == 0
            && count(&c, "fs.chunks", doc! {"files_id": file_id}).await == 0
    })
    .await;
    // The completed file is untouched by all of this.
    assert!(fetch_bytes(&c, &t.base, "proto.bin").await == content);
}
