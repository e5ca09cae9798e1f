//! What the nodes send the embedded database. Writes carry no `txnNumber` (retryable
//! writes off): `secantusd-py` keeps the reply of every retryable write for 30 minutes and
//! scans (past 10,000, sorts) them all on each write, which made small PUTs slower with
//! every write since the server started (issue 17). One server has no failover for the
//! retry to ride out; against a replica set they stay on (`tests/tests/replica_set.rs`).

use std::time::Duration;

use bson::{doc, Document};
use futures::TryStreamExt;
use reqwest::StatusCode;
use speedbox_tests::client::put;
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
