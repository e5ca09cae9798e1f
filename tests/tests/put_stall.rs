//! A protected PUT whose node stalls on its database goes on from another node, and the
//! stalled node's writes, once its database answers, change nothing: the node process
//! lives on (unlike a SIGSTOP or a kill), its request is fenced by the lease takeover.
//!
//! The stall here comes with about 5 MiB forwarded (the balancer's log), below the window
//! (8.0 MiB): it checks the path, not the window's bound. A full bench run once found the
//! old bound (6.0 MiB) 98,304 bytes short under five concurrent uploads (see
//! `IN_TRANSIT_BYTES` in the config).

use std::time::Duration;

use bson::doc;
use reqwest::StatusCode;
use serde_json::Value;
use speedbox_tests::client::{cluster_status, count, fetch, file_url};
use speedbox_tests::{data, Cluster};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_put_whose_node_stalls_on_its_database_goes_on_from_another_node() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    // Node 0's chunk writes wait 6 s on the database, all but its first insert (the
    // upload's state): its pipeline, its read buffer and both sockets fill up, nothing is
    // recorded, and after 2 s without taking a byte the balancer continues elsewhere.
    let app = format!("speedbox-node/{}", c.node_id(0));
    c.db()
        .await
        .client()
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": {"skip": 1, "times": 3},
            "data": {
                "failCommands": ["insert"], "blockConnection": true, "blockTimeMS": 6000,
                "appName": app,
            },
        })
        .await
        .expect("failCommand: SecantusDB runs with --enable-test-commands in the tests");

    // Three at once: the balancer spreads them over both nodes, so node 0 gets one.
    let len = 24 * MIB;
    let puts = (0..3u64).map(|i| {
        let request = c
            .http
            .put(file_url(&c.balancer_url(), &format!("stall/{i}.bin")))
            .header("content-length", len)
            .body(data::body(70 + i, len));
        async move {
            let resp = request.send().await.expect("an answer");
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let answers = futures::future::join_all(puts).await;
    for (i, (status, file)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "PUT {i}: {file}");
        assert_eq!(file["sha256"], data::sha256(70 + i as u64, len));
    }
    let uploads = &cluster_status(&c).await["uploads"];
    assert!(uploads["continued"].as_u64() >= Some(1), "{uploads}");
    assert_eq!(uploads["cut"], 0, "{uploads}");
    // Node 0's late writes, once its database answers, change nothing.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for i in 0..3u64 {
        let got = fetch(&c, &c.balancer_url(), &format!("stall/{i}.bin")).await;
        assert_eq!((got.len, got.sha256), (len, data::sha256(70 + i, len)));
    }
    assert_eq!(count(&c, "fs.tus", doc! {"done": false}).await, 0);
}
