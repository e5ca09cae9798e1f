//! A tus upload whose finisher died between its last byte and publishing it, and uploads
//! whose state expires: the next request or the sweep publishes a stranded upload once and
//! whole, and expiry removes state and unfinished chunks, never a published file.
//!
//! Like `retry_safety.rs`, each test ends by checking the published file byte for byte and
//! chunk for chunk.

use std::time::Duration;

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::client::{assert_intact, count, get};
use speedbox_tests::tus::{offset_of, TusClient};
use speedbox_tests::{data, eventually, Cluster};

const CHUNK: u64 = 1024;

/// Puts the database into the state a finisher's crash right after the last offset
/// leaves: complete, unpublished (no files document, no name), lease released.
async fn strand(c: &Cluster, url: &str, name: &str) {
    let id = url.rsplit('/').next().unwrap().to_string();
    let db = c.db().await;
    let file_id = db
        .collection::<bson::Document>("fs.names")
        .find_one_and_delete(doc! {"_id": name})
        .await
        .unwrap()
        .unwrap()
        .get_object_id("file_id")
        .unwrap();
    db.collection::<bson::Document>("fs.files")
        .delete_one(doc! {"_id": file_id})
        .await
        .unwrap();
    db.collection::<bson::Document>("fs.tus")
        .update_one(
            doc! {"_id": &id},
            doc! {"$set": {"done": false, "lease_until": null}},
        )
        .await
        .unwrap();
}

/// A finisher that died between completing an upload and publishing it: the next HEAD
/// (or empty PATCH) publishes it, once, with the right digests.
#[tokio::test]
async fn a_complete_upload_whose_finisher_died_is_published_by_the_next_request() {
    let c = Cluster::builder()
        .nodes(2)
        .balancer(true)
        .storage_toml(&format!("chunk_size = {CHUNK}\nchunks_per_write = 2\n"))
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.balancer_url(),
    };
    let content = data::bytes(400, 9 * CHUNK + 1);
    let len = content.len() as u64;
    let url = t.create(len, "stranded.bin").await;
    assert_eq!(
        t.patch(&url, 0, content.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    strand(&c, &url, "stranded.bin").await;
    let missing = get(&c, &c.balancer_url(), "stranded.bin").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let resp = t.head(&url).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(offset_of(&resp), len);
    assert_intact(&c, &c.balancer_url(), "stranded.bin", &content, CHUNK).await;
    // Published once: a second request changes nothing.
    assert_eq!(
        t.patch(&url, len, Vec::new()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_intact(&c, &c.balancer_url(), "stranded.bin", &content, CHUNK).await;
}

/// A stranded upload with no client coming back: the sweep publishes it.
#[tokio::test]
async fn the_sweep_publishes_a_stranded_upload() {
    let c = Cluster::builder()
        .storage_toml(&format!("chunk_size = {CHUNK}\nsweep_interval_secs = 1\n"))
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(401, 5 * CHUNK + 7);
    let url = t.create(content.len() as u64, "swept-in.bin").await;
    assert_eq!(
        t.patch(&url, 0, content.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    strand(&c, &url, "swept-in.bin").await;
    let node = c.node_url(0);
    eventually(
        Duration::from_secs(15),
        "the sweep publishes it",
        || async { get(&c, &node, "swept-in.bin").await.status() == StatusCode::OK },
    )
    .await;
    assert_intact(&c, &c.node_url(0), "swept-in.bin", &content, CHUNK).await;
}

/// Expiry of a finished upload's state never touches the published file; expiry of an
/// unfinished one removes its chunks.
#[tokio::test]
async fn expiry_removes_state_not_files() {
    let c = Cluster::builder()
        .storage_toml(&format!(
            "chunk_size = {CHUNK}\ntus_expiry_secs = 1\nsweep_interval_secs = 1\n"
        ))
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(700, 4 * CHUNK + 1);
    let len = content.len() as u64;
    let done = t.create(len, "expired-done.bin").await;
    assert_eq!(
        t.patch(&done, 0, content.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let open = t.create(len, "expired-open.bin").await;
    assert_eq!(
        t.patch(&open, 0, content[..2000].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    eventually(Duration::from_secs(15), "expired states swept", || async {
        count(&c, "fs.tus", doc! {}).await == 0
    })
    .await;
    assert_intact(&c, &c.node_url(0), "expired-done.bin", &content, CHUNK).await;
    assert_eq!(
        count(&c, "fs.names", doc! {"_id": "expired-open.bin"}).await,
        0
    );
    // Only the finished file's chunks remain.
    assert_eq!(count(&c, "fs.chunks", doc! {}).await, len.div_ceil(CHUNK));
}
