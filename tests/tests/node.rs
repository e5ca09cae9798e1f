//! The storage node against a real SecantusDB: uploads, downloads, ranges, conditional
//! requests, replacement, listing, bad input, broken uploads and a database outage.

use std::time::Duration;

use bson::doc;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use speedbox_tests::{data, eventually, Cluster};

const MIB: u64 = 1 << 20;

async fn put(c: &Cluster, name: &str, body: Vec<u8>) -> Value {
    let resp = c
        .http
        .put(format!("{}/files/{name}", c.node_url(0)))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

async fn get(c: &Cluster, name: &str) -> reqwest::Response {
    c.http
        .get(format!("{}/files/{name}", c.node_url(0)))
        .send()
        .await
        .unwrap()
}

async fn count(c: &Cluster, collection: &str, filter: bson::Document) -> u64 {
    c.db()
        .await
        .collection::<bson::Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

/// Waits until no chunk and no upload record is left in the database.
async fn nothing_left_behind(c: &Cluster, within: Duration, what: &str) {
    eventually(within, what, || async {
        count(c, "fs.chunks", doc! {}).await == 0 && count(c, "fs.uploads", doc! {}).await == 0
    })
    .await;
}

async fn error_of(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("JSON error body");
    body["error"].as_str().expect("error field").to_string()
}

#[tokio::test]
async fn one_gib_round_trip_is_byte_identical() {
    let c = Cluster::builder().start().await;
    let len = 1024 * MIB;
    let resp = c
        .http
        .put(format!("{}/files/big/video.bin", c.node_url(0)))
        .body(data::body(1, len))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let stored: Value = resp.json().await.unwrap();
    let expected = data::sha256(1, len);
    assert_eq!(stored["length"], len);
    assert_eq!(stored["sha256"], expected.as_str());

    let resp = get(&c, "big/video.bin").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(len));
    assert_eq!(data::drain(resp).await.unwrap(), (len, expected));

    // A range across a chunk boundary deep inside the file.
    let cs = 255 * 1024;
    let (start, end) = (1000 * cs - 10, 1000 * cs + 9);
    let resp = c
        .http
        .get(format!("{}/files/big/video.bin", c.node_url(0)))
        .header("range", format!("bytes={start}-{end}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let got = resp.bytes().await.unwrap();
    // Regenerate only the megabyte around the range.
    let mb = start / MIB;
    let around = data::bytes(1, (mb + 2) * MIB);
    assert_eq!(&got[..], &around[start as usize..=end as usize]);
}

#[tokio::test]
async fn ranges_at_chunk_boundaries() {
    let c = Cluster::builder()
        .storage_toml("chunk_size = 1024\nchunks_per_read = 3\n")
        .start()
        .await;
    let len = 10 * 1024 + 500;
    let content = data::bytes(2, len);
    put(&c, "r.bin", content.clone()).await;
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-0", 0, 0),
        ("bytes=1023-1024", 1023, 1024),
        ("bytes=1024-2047", 1024, 2047),
        ("bytes=1000-2000", 1000, 2000),
        ("bytes=3000-", 3000, len as usize - 1),
        ("bytes=-1", len as usize - 1, len as usize - 1),
        ("bytes=-600", len as usize - 600, len as usize - 1),
        ("bytes=10240-99999", 10240, len as usize - 1),
        ("bytes=0-", 0, len as usize - 1),
    ];
    for &(range, start, end) in cases {
        let resp = c
            .http
            .get(format!("{}/files/r.bin", c.node_url(0)))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{end}/{len}").as_str(),
            "{range}"
        );
        assert_eq!(
            resp.content_length(),
            Some((end - start + 1) as u64),
            "{range}"
        );
        assert_eq!(
            &resp.bytes().await.unwrap()[..],
            &content[start..=end],
            "{range}"
        );
    }
}

#[tokio::test]
async fn unsatisfiable_ranges_conditional_requests_and_head() {
    let c = Cluster::builder().start().await;
    let content = data::bytes(3, 5000);
    let stored = put(&c, "c.txt", content.clone()).await;
    let url = format!("{}/files/c.txt", c.node_url(0));

    let resp = c
        .http
        .get(&url)
        .header("range", "bytes=5000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()["content-range"], "bytes */5000");
    assert!(!error_of(resp).await.is_empty());

    let resp = c.http.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-length"], "5000");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("last-modified"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", stored["sha256"].as_str().unwrap()));
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = c
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = c
        .http
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // If-Range with a stale validator: the whole file, not the range.
    let resp = c
        .http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().len(), 5000);
    let resp = c
        .http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..10]);

    // The compatibility route serves the same file.
    let resp = c
        .http
        .get(format!("{}/download?filename=c.txt", c.node_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);
}

#[tokio::test]
async fn checksum_mismatch_stores_nothing() {
    let c = Cluster::builder().start().await;
    let content = data::bytes(4, 3 * MIB);
    let url = format!("{}/files/sum.bin", c.node_url(0));
    let resp = c
        .http
        .put(&url)
        .header("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(resp).await.contains("Content-MD5"));
    let wrong_sha = "sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:";
    let resp = c
        .http
        .put(&url)
        .header("repr-digest", wrong_sha)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get(&c, "sum.bin").await.status(), StatusCode::NOT_FOUND);
    nothing_left_behind(
        &c,
        Duration::from_secs(10),
        "chunks of refused uploads removed",
    )
    .await;
    assert_eq!(count(&c, "fs.files", doc! {}).await, 0);

    // The right digests are accepted.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sha = hex_to_bytes(&data::sha256_of(&content));
    let resp = c
        .http
        .put(&url)
        .header("repr-digest", format!("sha-256=:{}:", b64.encode(sha)))
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn broken_off_upload_leaves_nothing_visible() {
    let c = Cluster::builder().start().await;
    let url = format!("{}/files/partial.bin", c.node_url(0));
    // Declares 64 MiB, sends 8, then the client gives up.
    let upload = c
        .http
        .put(&url)
        .header("content-length", 64 * MIB)
        .body(reqwest::Body::wrap_stream(data::stalled_body(5, 8 * MIB)))
        .send();
    let _ = tokio::time::timeout(Duration::from_secs(3), upload).await;
    assert_eq!(get(&c, "partial.bin").await.status(), StatusCode::NOT_FOUND);
    nothing_left_behind(
        &c,
        Duration::from_secs(10),
        "chunks of the broken upload removed",
    )
    .await;
    let list: Value = c
        .http
        .get(format!("{}/files", c.node_url(0)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["files"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn chunks_of_a_killed_node_are_swept() {
    let mut c = Cluster::builder()
        .storage_toml("gc_grace_secs = 2\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let url = format!("{}/files/killed.bin", c.node_url(0));
    let upload = c
        .http
        .put(&url)
        .body(reqwest::Body::wrap_stream(data::stalled_body(6, 6 * MIB)))
        .send();
    let upload = tokio::spawn(upload);
    eventually(Duration::from_secs(10), "chunks written", || async {
        count(&c, "fs.chunks", doc! {}).await >= 8
    })
    .await;
    c.kill_node(0);
    let _ = upload.await;
    assert!(count(&c, "fs.chunks", doc! {}).await > 0);
    assert_eq!(count(&c, "fs.files", doc! {}).await, 0);
    c.restart_node(0).await;
    assert_eq!(get(&c, "killed.bin").await.status(), StatusCode::NOT_FOUND);
    eventually(Duration::from_secs(15), "orphaned chunks swept", || async {
        count(&c, "fs.chunks", doc! {}).await == 0 && count(&c, "fs.uploads", doc! {}).await == 0
    })
    .await;
}

#[tokio::test]
async fn replace_in_place_keeps_old_until_new_is_complete() {
    let c = Cluster::builder()
        .storage_toml("gc_grace_secs = 2\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let old = put(&c, "doc.bin", data::bytes(7, 2 * MIB)).await;
    let old_id = bson::oid::ObjectId::parse_str(old["id"].as_str().unwrap()).unwrap();

    // A slow replacement: readers keep getting the old file while it streams in.
    let (tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let url = format!("{}/files/doc.bin", c.node_url(0));
    let replacement = tokio::spawn(c.http.put(&url).body(reqwest::Body::wrap_stream(rx)).send());
    let new_content = data::bytes(8, 3 * MIB);
    let mut tx = tx;
    use futures::SinkExt;
    tx.send(Ok(bytes::Bytes::copy_from_slice(
        &new_content[..2 * MIB as usize],
    )))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "replacement chunks written",
        || async { count(&c, "fs.chunks", doc! {"files_id": {"$ne": old_id}}).await > 0 },
    )
    .await;
    let during = get(&c, "doc.bin").await.bytes().await.unwrap();
    assert_eq!(data::sha256_of(&during), old["sha256"].as_str().unwrap());
    tx.send(Ok(bytes::Bytes::copy_from_slice(
        &new_content[2 * MIB as usize..],
    )))
    .await
    .unwrap();
    drop(tx);
    let resp = replacement.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let after = get(&c, "doc.bin").await.bytes().await.unwrap();
    assert_eq!(&after[..], &new_content[..]);

    // One name, one listed file; the old revision's chunks go after the grace period.
    let list: Value = c
        .http
        .get(format!("{}/files", c.node_url(0)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["files"].as_array().unwrap().len(), 1);
    eventually(Duration::from_secs(15), "old revision removed", || async {
        count(&c, "fs.chunks", doc! {"files_id": old_id}).await == 0
            && count(&c, "fs.files", doc! {"_id": old_id}).await == 0
    })
    .await;
    assert_eq!(count(&c, "fs.files", doc! {}).await, 1);
    let after = get(&c, "doc.bin").await.bytes().await.unwrap();
    assert_eq!(&after[..], &new_content[..]);
}

#[tokio::test]
async fn listing_is_sorted_paginated_and_filtered_by_prefix() {
    let c = Cluster::builder().start().await;
    for name in ["a/3", "a/1", "b/1", "a/2", "a/5", "a0", "a/4"] {
        put(&c, name, name.as_bytes().to_vec()).await;
    }
    let list = |query: String| {
        let c = &c;
        async move {
            let resp = c
                .http
                .get(format!("{}/files?{query}", c.node_url(0)))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let v: Value = resp.json().await.unwrap();
            let names: Vec<String> = v["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_string())
                .collect();
            (names, v["next_after"].as_str().map(str::to_string))
        }
    };
    let (page, next) = list("prefix=a%2F&limit=2".into()).await;
    assert_eq!(page, ["a/1", "a/2"]);
    let (page, next) = list(format!("prefix=a%2F&limit=2&after={}", next.unwrap())).await;
    assert_eq!(page, ["a/3", "a/4"]);
    let (page, next) = list(format!("prefix=a%2F&limit=2&after={}", next.unwrap())).await;
    assert_eq!((page, next), (vec!["a/5".to_string()], None));
    let (all, next) = list(String::new()).await;
    assert_eq!(all, ["a/1", "a/2", "a/3", "a/4", "a/5", "a0", "b/1"]);
    assert_eq!(next, None);
    let resp = c
        .http
        .get(format!("{}/files?limit=0", c.node_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_names_and_routes_get_json_errors() {
    let c = Cluster::builder().start().await;
    let long = "x".repeat(1025);
    for path in ["/files/a%0Ab", "/files/%FF%FE", &format!("/files/{long}")] {
        let resp = c
            .http
            .put(format!("{}{path}", c.node_url(0)))
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(resp.headers()["x-speedbox-error"], "node");
        assert!(!error_of(resp).await.is_empty());
    }
    let resp = c
        .http
        .get(format!("{}/nowhere", c.node_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c
        .http
        .post(format!("{}/files/x", c.node_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().contains_key("allow"));
    let resp = get(&c, "missing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(error_of(resp).await.contains("missing"));
    assert_eq!(count(&c, "fs.chunks", doc! {}).await, 0);
}

#[tokio::test]
async fn delete_multipart_and_gridfs_compatibility() {
    let c = Cluster::builder().start().await;
    let content = data::bytes(9, 700_000);
    let form = reqwest::multipart::Form::new()
        .text("note", "not a file")
        .part(
            "file",
            reqwest::multipart::Part::bytes(content.clone()).file_name("clip.mp4"),
        );
    let resp = c
        .http
        .post(format!("{}/upload", c.node_url(0)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["files"][0]["name"], "clip.mp4");
    assert_eq!(stored["files"][0]["content_type"], "video/mp4");
    let resp = get(&c, "clip.mp4").await;
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);

    // What the node wrote is plain GridFS: the driver's own bucket reads it back.
    let bucket = c.db().await.gridfs_bucket(None);
    let mut stream = bucket
        .open_download_stream_by_name("clip.mp4")
        .await
        .unwrap();
    let mut via_driver = Vec::new();
    futures::AsyncReadExt::read_to_end(&mut stream, &mut via_driver)
        .await
        .unwrap();
    assert_eq!(via_driver, content);

    let url = format!("{}/files/clip.mp4", c.node_url(0));
    let resp = c.http.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&c, "clip.mp4").await.status(), StatusCode::NOT_FOUND);
    let resp = c.http.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let resp = c
        .http
        .post(format!("{}/upload", c.node_url(0)))
        .multipart(reqwest::multipart::Form::new().text("note", "no file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn database_outage_gives_503_and_the_node_recovers() {
    let mut c = Cluster::builder().start().await;
    let content = data::bytes(10, 300_000);
    put(&c, "survivor.bin", content.clone()).await;
    c.kill_db();
    let health = format!("{}/healthz", c.node_url(0));
    let started = std::time::Instant::now();
    let resp = c.http.get(&health).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(10));
    let resp = get(&c, "survivor.bin").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_of(resp).await.contains("database"));
    let resp = c
        .http
        .put(format!("{}/files/during-outage", c.node_url(0)))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    c.restart_db().await;
    eventually(Duration::from_secs(20), "node healthy again", || async {
        c.http
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let resp = get(&c, "survivor.bin").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);
    assert_eq!(
        get(&c, "during-outage").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn empty_file_round_trip() {
    let c = Cluster::builder().start().await;
    let stored = put(&c, "empty", Vec::new()).await;
    assert_eq!(stored["length"], 0);
    let resp = get(&c, "empty").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(0));
    let resp = c
        .http
        .get(format!("{}/files/empty", c.node_url(0)))
        .header("range", "bytes=0-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let mut stream = get(&c, "empty").await.bytes_stream();
    assert!(stream.next().await.is_none());
}
