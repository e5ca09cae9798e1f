//! A tus upload whose finisher died between its last byte and publishing it, and uploads
//! whose state expires: the next request or the sweep publishes a stranded upload once and
//! whole, and expiry removes state and unfinished chunks, never a published file.
//!
//! Like `retry_safety.rs`, each test ends by checking the published file byte for byte and
//! chunk for chunk.

use std::time::Duration;

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::client::{assert_intact, count, get, strand};
use speedbox_tests::tus::{offset_of, TusClient};
use speedbox_tests::{data, eventually, Cluster};

const CHUNK: u64 = 1024;

/// The upload id at the end of a tus upload URL.
fn url_id(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
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
    strand(&c, url_id(&url), "stranded.bin").await;
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
    strand(&c, url_id(&url), "swept-in.bin").await;
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

/// Chunks a dead PATCH wrote past the durable offset are cleared by the next PATCH, which
/// would otherwise collide with them; chunks of a newer lease holder are never cleared,
/// even by a PATCH that gets the lease after them (its write fails instead).
#[tokio::test]
async fn a_dead_patchs_leftovers_are_cleared_and_a_newer_holders_kept() {
    let c = Cluster::builder()
        .nodes(1)
        .storage_toml(&format!("chunk_size = {CHUNK}\nchunks_per_write = 2\n"))
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(401, 6 * CHUNK);
    let url = t.create(6 * CHUNK, "left.bin").await;
    let first = content[..2 * CHUNK as usize].to_vec();
    assert_eq!(
        t.patch(&url, 0, first).await.status(),
        StatusCode::NO_CONTENT
    );
    let id = url.rsplit('/').next().unwrap().to_string();
    let db = c.db().await;
    let state = db
        .collection::<bson::Document>("fs.tus")
        .find_one(doc! {"_id": &id})
        .await
        .unwrap()
        .unwrap();
    let (file_id, token) = (
        state.get_object_id("file_id").unwrap(),
        state.get_i64("lease_token").unwrap(),
    );
    let chunks = db.collection::<bson::Document>("fs.chunks");
    let junk = |n: i32, lease: Option<i64>| {
        let mut d = doc! {"files_id": file_id, "n": n, "data": bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0xee; CHUNK as usize] }};
        if let Some(lease) = lease {
            d.insert("lease", lease);
        }
        d
    };
    let rest = content[2 * CHUNK as usize..].to_vec();

    // A newer holder's chunk: the PATCH must not remove it, so it cannot write its own.
    chunks
        .insert_one(junk(2, Some(token + 1000)))
        .await
        .unwrap();
    let refused = t.patch(&url, 2 * CHUNK, rest.clone()).await;
    assert_ne!(refused.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&t.head(&url).await), 2 * CHUNK);
    let newer = doc! {"files_id": file_id, "lease": token + 1000};
    assert_eq!(
        count(&c, "fs.chunks", newer.clone()).await,
        1,
        "a newer holder's chunk was removed"
    );

    // Leftovers of older leases (and of writes from before chunks carried a lease): cleared.
    chunks.delete_one(newer).await.unwrap();
    chunks.insert_one(junk(2, Some(token))).await.unwrap();
    chunks.insert_one(junk(3, None)).await.unwrap();
    assert_eq!(
        t.patch(&url, 2 * CHUNK, rest).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_intact(&c, &c.node_url(0), "left.bin", &content, CHUNK).await;
}

/// The whole-file digests travel with the upload: each PATCH records their state in the
/// same update as its offset, and the node that takes the next PATCH goes on from it. A
/// state recorded at another offset than the current one (a PATCH that moved the offset and
/// then failed) is never used: the digests then come from the stored bytes.
#[tokio::test]
async fn digests_go_on_from_the_state_recorded_with_the_offset_never_from_a_stale_one() {
    let c = Cluster::builder()
        .nodes(2)
        .storage_toml(&format!("chunk_size = {CHUNK}\nchunks_per_write = 2\n"))
        .start()
        .await;
    let db = c.db().await;
    let states = db.collection::<bson::Document>("fs.tus");
    let (a, b) = (c.node_url(0), c.node_url(1));
    for stale in [false, true] {
        let name = format!("handoff-{stale}.bin");
        let content = data::bytes(402 + u64::from(stale), 10 * CHUNK + 5);
        let t = TusClient {
            c: &c,
            base: a.clone(),
        };
        let on_a = t.create(content.len() as u64, &name).await;
        let on_b = on_a.replace(&a, &b);
        let id = on_a.rsplit('/').next().unwrap().to_string();
        let state = || async {
            let d = states.find_one(doc! {"_id": &id}).await.unwrap().unwrap();
            (
                d.get_i64("offset").unwrap(),
                d.get_i64("hash_at").ok(),
                d.get("hash_state").cloned(),
            )
        };
        let (cut1, cut2) = (3 * CHUNK as usize + 7, 7 * CHUNK as usize + 1);
        let sent = t.patch(&on_a, 0, content[..cut1].to_vec()).await;
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
        let (offset, at, first) = state().await;
        assert_eq!((offset, at), (cut1 as i64, Some(cut1 as i64)));
        let sent = t
            .patch(&on_b, cut1 as u64, content[cut1..cut2].to_vec())
            .await;
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            state().await.1,
            Some(cut2 as i64),
            "node B recorded the state too"
        );
        if stale {
            // the state of the first cut, recorded at the first cut: stale at the second
            states
                .update_one(
                    doc! {"_id": &id},
                    doc! {"$set": {"hash_state": first.unwrap(), "hash_at": cut1 as i64}},
                )
                .await
                .unwrap();
        }
        let sent = t.patch(&on_a, cut2 as u64, content[cut2..].to_vec()).await;
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
        assert_intact(&c, &a, &name, &content, CHUNK).await;
    }
}
