//! The storage node when things go wrong, against a real SecantusDB: refused digests and
//! broken-off uploads store nothing, a killed node's chunks are swept, a replacement is
//! invisible until complete, and a database outage gives 503 until the node recovers.

use std::time::Duration;

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::client::{count, error_of, fetch_bytes, file_url, get, list, put};
use speedbox_tests::{data, eventually, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

/// Waits until no chunk and no upload record is left in the database.
async fn nothing_left_behind(c: &Cluster, within: Duration, what: &str) {
    eventually(within, what, || async {
        count(c, "fs.chunks", doc! {}).await == 0 && count(c, "fs.uploads", doc! {}).await == 0
    })
    .await;
}

#[tokio::test]
async fn checksum_mismatch_stores_nothing() {
    let c = Cluster::builder().start().await;
    let node = c.node_url(0);
    let content = data::bytes(4, 3 * MIB);
    let url = file_url(&node, "sum.bin");
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
    let error = error_of(resp).await;
    assert!(error.contains("Repr-Digest"), "{error}");
    assert_eq!(
        get(&c, &node, "sum.bin").await.status(),
        StatusCode::NOT_FOUND
    );
    nothing_left_behind(
        &c,
        Duration::from_secs(10),
        "chunks of refused uploads removed",
    )
    .await;
    assert_eq!(count(&c, "fs.files", doc! {}).await, 0);

    // The right digests are accepted, and what they vouched for is what is stored.
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
    assert!(fetch_bytes(&c, &node, "sum.bin").await == content);
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
    let node = c.node_url(0);
    // Declares 64 MiB, sends 8, then the client gives up.
    let upload = c
        .http
        .put(file_url(&node, "partial.bin"))
        .header("content-length", 64 * MIB)
        .body(reqwest::Body::wrap_stream(data::stalled_body(5, 8 * MIB)))
        .send();
    let _ = tokio::time::timeout(Duration::from_secs(3), upload).await;
    assert_eq!(
        get(&c, &node, "partial.bin").await.status(),
        StatusCode::NOT_FOUND
    );
    nothing_left_behind(
        &c,
        Duration::from_secs(10),
        "chunks of the broken upload removed",
    )
    .await;
    assert_eq!(list(&c, &node, "").await.names, Vec::<String>::new());
}

#[tokio::test]
async fn chunks_of_a_killed_node_are_swept() {
    let mut c = Cluster::builder()
        .storage_toml("gc_grace_secs = 2\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let upload = c
        .http
        .put(file_url(&c.node_url(0), "killed.bin"))
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
    assert_eq!(
        get(&c, &c.node_url(0), "killed.bin").await.status(),
        StatusCode::NOT_FOUND
    );
    nothing_left_behind(&c, Duration::from_secs(15), "orphaned chunks swept").await;
}

#[tokio::test]
async fn replace_in_place_keeps_old_until_new_is_complete() {
    let c = Cluster::builder()
        .storage_toml("gc_grace_secs = 2\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let node = c.node_url(0);
    let old = put(&c, &node, "doc.bin", data::bytes(7, 2 * MIB)).await;
    let old_id = bson::oid::ObjectId::parse_str(old["id"].as_str().unwrap()).unwrap();

    // A slow replacement: readers keep getting the old file while it streams in.
    let (tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let url = file_url(&node, "doc.bin");
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
    let during = fetch_bytes(&c, &node, "doc.bin").await;
    assert_eq!(data::sha256_of(&during), old["sha256"].as_str().unwrap());
    tx.send(Ok(bytes::Bytes::copy_from_slice(
        &new_content[2 * MIB as usize..],
    )))
    .await
    .unwrap();
    drop(tx);
    let resp = replacement.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(fetch_bytes(&c, &node, "doc.bin").await == new_content);

    // One name, one listed file; the old revision's chunks go after the grace period.
    assert_eq!(list(&c, &node, "").await.names, ["doc.bin"]);
    eventually(Duration::from_secs(15), "old revision removed", || async {
        count(&c, "fs.chunks", doc! {"files_id": old_id}).await == 0
            && count(&c, "fs.files", doc! {"_id": old_id}).await == 0
    })
    .await;
    assert_eq!(count(&c, "fs.files", doc! {}).await, 1);
    assert!(fetch_bytes(&c, &node, "doc.bin").await == new_content);
}

#[tokio::test]
async fn database_outage_gives_503_and_the_node_recovers() {
    let mut c = Cluster::builder().start().await;
    let node = c.node_url(0);
    let content = data::bytes(10, 300_000);
    put(&c, &node, "survivor.bin", content.clone()).await;
    c.kill_db();
    let health = format!("{node}/healthz");
    let started = std::time::Instant::now();
    let resp = c.http.get(&health).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(10));
    let resp = get(&c, &node, "survivor.bin").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_of(resp).await.contains("database"));
    let resp = c
        .http
        .put(file_url(&node, "during-outage"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_of(resp).await.contains("database"));

    c.restart_db().await;
    eventually(Duration::from_secs(20), "node healthy again", || async {
        c.http
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(fetch_bytes(&c, &node, "survivor.bin").await == content);
    assert_eq!(
        get(&c, &node, "during-outage").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Sends a `len`-byte PUT of `big.bin` to `addr` on a raw connection, the whole body
/// (with `Expect: 100-continue`, none: the client waits for the answer), and returns
/// everything it reads back until the server closes, lowercased. Panics if the server
/// resets the connection instead.
async fn put_raw(addr: &str, len: u64, expect: bool) -> String {
    let expect = if expect {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    let head =
        format!("PUT /files/big.bin HTTP/1.1\r\nHost: n\r\nContent-Length: {len}\r\n{expect}\r\n");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    if expect.is_empty() {
        let block = vec![7u8; MIB as usize];
        for _ in 0..len / MIB {
            conn.write_all(&block)
                .await
                .expect("the server takes the whole body");
        }
    }
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .await
        .expect("the answer, then a clean close");
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

/// An answer given before the body is read reaches a client that sends its whole body
/// anyway (curl without `Expect`, most HTTP libraries): the server reads the rest and
/// throws it away, then closes (a lingering close, RFC 9112 §9.6). Closing on the unread
/// body reset the connection, and the client saw a broken pipe instead of the answer. A
/// client that asked `Expect: 100-continue` gets the answer without a 100 and sends no
/// body. The node's own answer (413 from Content-Length), the same relayed by the
/// balancer, and the balancer's own (503, no node up).
#[tokio::test]
async fn an_early_refusal_reaches_a_client_that_sends_its_body_anyway() {
    let mut c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .storage_toml("max_file_size = 1048576\n")
        .start()
        .await;
    let node = c.node_url(0).trim_start_matches("http://").to_string();
    for addr in [node.clone(), c.balancer_addr()] {
        let answer = put_raw(&addr, 32 * MIB, false).await;
        assert!(answer.starts_with("http/1.1 413"), "{addr}: {answer}");
        // The balancer relays the node's answer, and the body on to the node, which
        // reads it off: the connection to the client stays whole either way.
        if addr == node {
            assert!(answer.contains("connection: close"), "{answer}");
        }
        let answer = put_raw(&addr, 32 * MIB, true).await;
        assert!(
            answer.starts_with("http/1.1 413"),
            "{addr}: no 100 first: {answer}"
        );
    }
    assert_eq!(
        get(&c, &c.node_url(0), "big.bin").await.status(),
        StatusCode::NOT_FOUND
    );
    c.kill_node(0);
    let balancer = c.balancer_addr();
    eventually(
        Duration::from_secs(10),
        "the balancer sees its node down",
        || async {
            put_raw(&balancer, 0, false)
                .await
                .starts_with("http/1.1 503")
        },
    )
    .await;
    let answer = put_raw(&balancer, 32 * MIB, false).await;
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
}

/// A PUT that pauses past the grace period: the sweep takes its upload for abandoned and
/// removes its chunks, so the rest of its body must not publish a file (its chunks are
/// gone). The client gets a 5xx; nothing is visible or left behind.
#[tokio::test]
async fn an_upload_the_sweep_took_for_abandoned_is_never_published() {
    let c = Cluster::builder()
        .storage_toml("gc_grace_secs = 1\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let node = c.node_url(0);
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let url = file_url(&node, "paused.bin");
    let upload = tokio::spawn(c.http.put(&url).body(reqwest::Body::wrap_stream(rx)).send());
    use futures::SinkExt;
    let content = data::bytes(9, 2 * MIB + 10);
    let (head, tail) = content.split_at(2 * MIB as usize);
    tx.send(Ok(bytes::Bytes::copy_from_slice(head)))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "chunks written", || async {
        count(&c, "fs.chunks", doc! {}).await > 0
    })
    .await;
    // The sweep claims the silent upload and removes its chunks.
    eventually(Duration::from_secs(10), "upload swept", || async {
        count(&c, "fs.uploads", doc! {}).await == 0 && count(&c, "fs.chunks", doc! {}).await == 0
    })
    .await;
    tx.send(Ok(bytes::Bytes::copy_from_slice(tail)))
        .await
        .unwrap();
    drop(tx);
    let resp = upload.await.unwrap().unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_server_error(), "{status}: {text}");
    assert_eq!(
        get(&c, &node, "paused.bin").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(count(&c, "fs.names", doc! {}).await, 0);
    nothing_left_behind(&c, Duration::from_secs(10), "nothing left").await;
}
