//! The node against the errors a MongoDB replica set produces, injected by SecantusDB's
//! `failCommand` fail point while uploads and downloads run (issue 15, part 4): a primary
//! stepping down, a write concern that fails on a write that committed, a dropped
//! connection. Every request either succeeds through the driver's retry or gets 503 with
//! `Retry-After`; every acknowledged file is whole, once (its chunks counted); a failed
//! upload leaves no name.

use bson::{doc, Document};
use futures::future::join_all;
use reqwest::StatusCode;
use speedbox_tests::client::{assert_intact, count, get, put, put_with};
use speedbox_tests::{data, Cluster};

const CHUNK: u64 = 255 * 1024;
const LEN: u64 = 3 * 1024 * 1024 + 17;

/// Arms `failCommand` for the next `times` of `commands` with `error` (the fail point's
/// `data` besides `failCommands`).
async fn arm(c: &Cluster, times: i32, commands: &[&str], error: Document) {
    let mut data = doc! {"failCommands": commands.to_vec()};
    data.extend(error);
    c.db()
        .await
        .client()
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand", "mode": {"times": times}, "data": data,
        })
        .await
        .expect("failCommand: SecantusDB runs with --enable-test-commands in the tests");
}

/// Four uploads at once, two straight to the node (plain PUT) and two through the
/// balancer (protected PUT, the tus machinery), and reads of a file stored before, while
/// the fail point fires; returns how many uploads were refused with 503.
async fn uploads_under(c: &Cluster, times: i32, commands: &[&str], error: Document) -> usize {
    let before = data::bytes(90, LEN);
    put(c, &c.node_url(0), "before.bin", before.clone()).await;
    arm(c, times, commands, error).await;
    let bases = [
        c.node_url(0),
        c.node_url(0),
        c.balancer_url(),
        c.balancer_url(),
    ];
    let uploads = bases.iter().enumerate().map(|(i, base)| async move {
        let name = format!("up-{i}.bin");
        let resp = put_with(c, base, &name, data::bytes(i as u64, LEN), &[]).await;
        (
            name,
            i,
            resp.status(),
            resp.headers().get("retry-after").cloned(),
        )
    });
    let reads = (0..4).map(|_| async {
        let resp = get(c, &c.balancer_url(), "before.bin").await;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        (status, body)
    });
    let (uploads, reads) = tokio::join!(join_all(uploads), join_all(reads));
    for (status, body) in reads {
        match status {
            StatusCode::OK => assert!(body[..] == before[..], "a read got other bytes"),
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("a read got {other}"),
        }
    }
    let mut refused = 0;
    for (name, seed, status, retry_after) in uploads {
        match status {
            StatusCode::CREATED => {
                assert_intact(
                    c,
                    &c.node_url(0),
                    &name,
                    &data::bytes(seed as u64, LEN),
                    CHUNK,
                )
                .await
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after.is_some(), "503 without Retry-After for {name}");
                assert_eq!(
                    count(c, "fs.names", doc! {"_id": &name}).await,
                    0,
                    "a refused upload left a name"
                );
                refused += 1;
            }
            other => panic!("PUT {name}: {other}"),
        }
    }
    assert_eq!(count(c, "fs.names", doc! {}).await as usize, 5 - refused);
    refused
}

/// Retryable writes on, as a node has them against a real deployment (the embedded
/// server's default is off: it has no failover).
fn cluster() -> speedbox_tests::ClusterBuilder {
    Cluster::builder()
        .nodes(1)
        .balancer(true)
        .uri_options("retryWrites=true")
}

/// A primary stepping down under a write: the driver finds the new one at its next
/// heartbeat (500 ms) and retries the write once, inside the 2 s server selection timeout.
/// With the driver's default 10 s heartbeat the upload got 503. (An election long enough
/// to fail the retry too is a 503 with Retry-After, as the other tests allow.)
#[tokio::test]
async fn a_primary_stepping_down_costs_a_retry_not_a_failure() {
    let c = cluster().start().await;
    let stepped_down = doc! {"errorCode": 10107, "errorLabels": ["RetryableWriteError"]};
    let refused = uploads_under(&c, 1, &["insert", "update"], stepped_down).await;
    assert_eq!(refused, 0, "every upload succeeds through the retry");
}

/// A write that committed but whose write concern failed: the driver's retry of the same
/// write (same transaction number) is not applied twice, so no chunk, file or name is
/// duplicated.
#[tokio::test]
async fn a_write_concern_error_on_a_committed_write_duplicates_nothing() {
    let c = cluster().start().await;
    let wc_failed = doc! {
        "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"},
        "errorLabels": ["RetryableWriteError"],
    };
    uploads_under(&c, 4, &["insert", "update", "delete"], wc_failed).await;
}

/// Connections dropped under a command: retried by the driver on a new connection, or 503.
#[tokio::test]
async fn a_dropped_database_connection_is_retried_or_refused_cleanly() {
    let c = cluster().start().await;
    let dropped = doc! {"closeConnection": true};
    uploads_under(&c, 3, &["insert", "find", "update"], dropped).await;
}

/// A download whose chunk reads fail mid-body (connections dropped, more often than the
/// driver's one retry covers): the node pauses and reads the window again, and the
/// client gets the whole file, straight from the node (no balancer to continue it).
#[tokio::test]
async fn a_download_rides_out_dropped_database_connections() {
    let c = cluster().start().await;
    let len = 16 * 1024 * 1024;
    let content = data::bytes(77, len);
    put(&c, &c.node_url(0), "long.bin", content.clone()).await;
    let resp = get(&c, &c.node_url(0), "long.bin").await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The head is out; the node reads the next windows as the client reads.
    arm(&c, 3, &["find"], doc! {"closeConnection": true}).await;
    let body = resp.bytes().await.expect("the whole body");
    assert!(body[..] == content[..], "the bytes of the file");
}
