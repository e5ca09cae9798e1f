//! What the nodes send the database, seen by its profiler. A GET of a small file is one
//! round trip (its name's document with its chunks joined, or with its content inline:
//! `inline.rs`). Writes to the embedded server
//! carry no `txnNumber` (retryable writes off): `secantusd-py` keeps the reply of every retryable write for 30 minutes and
//! scans (past 10,000, sorts) them all on each write, which made small PUTs slower with
//! every write since the server started (issue 17). One server has no failover for the
//! retry to ride out; against a replica set they stay on (`tests/tests/replica_set.rs`).

use std::time::Duration;

use bson::{doc, Document};
use futures::TryStreamExt;
use reqwest::StatusCode;
use speedbox_tests::client::{fetch_bytes, get_with, put};
use speedbox_tests::tus::TusClient;
use speedbox_tests::{data, Cluster};

#[tokio::test]
async fn writes_to_the_embedded_database_are_not_retryable_writes() {
    let c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .storage_toml("gc_grace_secs = 1\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let db = c.db().await;
    let (node, bal) = (c.node_url(0), c.balancer_url());
    db.run_command(doc! {"profile": 2}).await.unwrap();

    // Every write path: protected and plain PUTs, a replace, a tus upload, a delete, sweeps.
    put(&c, &bal, "w/a.bin", data::bytes(1, 300 * 1024)).await;
    put(&c, &node, "w/b.bin", data::bytes(2, 1024)).await;
    put(&c, &bal, "w/a.bin", data::bytes(3, 1024)).await;
    let tus = TusClient {
        c: &c,
        base: bal.clone(),
    };
    let url = tus.create(1024, "w/tus.bin").await;
    let patched = tus.patch(&url, 0, data::bytes(4, 1024)).await;
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let deleted = c
        .http
        .delete(format!("{bal}/files/w/b.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    db.run_command(doc! {"profile": 0}).await.unwrap();

    let ops: Vec<Document> = db
        .collection::<Document>("system.profile")
        .find(doc! {"op": {"$in": ["insert", "update", "remove"]}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let kinds = |op: &str| ops.iter().filter(|o| o.get_str("op") == Ok(op)).count();
    // The paths above did write, each kind: the check below looked at something.
    assert!(
        kinds("insert") >= 8 && kinds("update") >= 4 && kinds("remove") >= 2,
        "writes recorded: {} inserts, {} updates, {} removes",
        kinds("insert"),
        kinds("update"),
        kinds("remove")
    );
    for op in &ops {
        let cmd = op.get_document("command").cloned().unwrap_or_default();
        assert!(
            !cmd.contains_key("txnNumber"),
            "a retryable write to the embedded server: {cmd}"
        );
    }
}

/// The profiled operations on `collection` (`fs.names`, …) since the profiler was reset.
async fn ops_on(db: &mongodb::Database, collection: &str) -> Vec<Document> {
    db.collection::<Document>("system.profile")
        .find(doc! {"ns": format!("speedbox.{collection}")})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn profile_afresh(db: &mongodb::Database) {
    db.run_command(doc! {"profile": 0}).await.unwrap();
    db.collection::<Document>("system.profile")
        .drop()
        .await
        .unwrap();
    db.run_command(doc! {"profile": 2}).await.unwrap();
}

#[tokio::test]
async fn a_small_file_is_read_with_its_name_in_one_round_trip() {
    let c = Cluster::builder().nodes(1).start().await;
    let (db, node) = (c.db().await, c.node_url(0));
    const CHUNK: u64 = 255 * 1024;
    let small = data::bytes(1, 3 * CHUNK + 5); // 4 chunks
    let large = data::bytes(2, 9 * CHUNK); // 9 chunks: more than one reply may hold
    put(&c, &node, "small.bin", small.clone()).await;
    put(&c, &node, "large.bin", large.clone()).await;
    // A node first tries the name's document alone (files of up to 16 KiB carry their
    // content there); one GET of a file whose chunks it had to read teaches it to join them.
    assert!(fetch_bytes(&c, &node, "small.bin").await == small);

    profile_afresh(&db).await;
    assert!(fetch_bytes(&c, &node, "small.bin").await == small);
    let ranged = get_with(&c, &node, "small.bin", &[("range", "bytes=300000-600000")]).await;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.unwrap()[..] == small[300000..=600000]);
    let names = ops_on(&db, "fs.names").await;
    assert_eq!(names.len(), 2, "one lookup per GET: {names:?}");
    assert!(names.iter().all(|o| o
        .get_document("command")
        .is_ok_and(|c| c.contains_key("aggregate"))));
    assert_eq!(
        ops_on(&db, "fs.chunks").await.len(),
        0,
        "no chunk query of its own"
    );

    // A revalidation reads the name only: its answer is usually 304, without the bytes.
    let etag = get_with(&c, &node, "small.bin", &[]).await.headers()["etag"].clone();
    profile_afresh(&db).await;
    let etag = etag.to_str().unwrap();
    let revalidated = get_with(&c, &node, "small.bin", &[("if-none-match", etag)]).await;
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    let names = ops_on(&db, "fs.names").await;
    assert_eq!(names.len(), 1);
    assert!(
        names[0]
            .get_document("command")
            .is_ok_and(|c| c.contains_key("find")),
        "{names:?}"
    );

    profile_afresh(&db).await;
    assert!(fetch_bytes(&c, &node, "large.bin").await == large);
    assert_eq!(ops_on(&db, "fs.names").await.len(), 1);
    // The first byte waits for one chunk only (a player seeking into a large file), then
    // the rest comes in windows of `chunks_per_read` (8).
    let limits: Vec<i64> = ops_on(&db, "fs.chunks")
        .await
        .iter()
        .map(|o| {
            let limit = o.get_document("command").unwrap().get("limit");
            limit.and_then(|l| l.as_i64().or(l.as_i32().map(i64::from)))
        })
        .map(|l| l.expect("every window query has a limit"))
        .collect();
    assert_eq!(limits, [1, 8], "a first chunk, then a window");
    db.run_command(doc! {"profile": 0}).await.unwrap();

    // A small file missing a chunk is an error, never other bytes.
    let id = bson::oid::ObjectId::parse_str(
        put(&c, &node, "damaged.bin", small.clone()).await["id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    db.collection::<Document>("fs.chunks")
        .delete_one(doc! {"files_id": id, "n": 2})
        .await
        .unwrap();
    let resp = get_with(&c, &node, "damaged.bin", &[]).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
