//! The balancer in front of real nodes, where the rig's fake nodes cannot stand in: a large
//! file and a range streamed through it into storage and back, a broken `cluster.toml` edit
//! refused (as its log says) and SIGHUP reloading, and SIGTERM during a download.
//!
//! Selection, failover, health and reload against nodes that misbehave on cue are tested
//! in-process in `balancer/tests` (the fake-node rig).

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use speedbox_tests::client::{cluster_status, fetch, put, wait_state};
use speedbox_tests::{data, eventually, Cluster};

const MIB: u64 = 1 << 20;

/// PUTs `len` bytes of the stream for `seed` through the balancer.
async fn upload(c: &Cluster, name: &str, seed: u64, len: u64) {
    let stored = put(c, &c.balancer_url(), name, data::body(seed, len)).await;
    assert_eq!(stored["length"], len);
    assert_eq!(stored["sha256"], data::sha256(seed, len));
}

#[tokio::test]
async fn a_large_file_and_a_range_round_trip_through_the_balancer() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    let len = 256 * MIB;
    upload(&c, "big.bin", 7, len).await;

    let got = fetch(&c, &c.balancer_url(), "big.bin").await;
    assert_eq!(got.headers["content-length"], len.to_string().as_str());
    assert!(got.headers.contains_key("x-request-id"));
    assert_eq!((got.len, got.sha256), (len, data::sha256(7, len)));

    let resp = c
        .http
        .get(format!("{}/files/big.bin", c.balancer_url()))
        .header("range", "bytes=1048570-1048589")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1048570-1048589/{len}").as_str()
    );
    let got = resp.bytes().await.unwrap();
    let around = data::bytes(7, 2 * MIB);
    assert_eq!(&got[..], &around[1_048_570..=1_048_589]);
}

#[tokio::test]
async fn a_broken_edit_is_refused_and_sighup_reloads() {
    let mut c = Cluster::builder().nodes(2).balancer(true).start().await;
    let before = cluster_status(&c).await;
    let good = std::fs::read_to_string(c.config_path()).unwrap();
    let broken = good.replace("[balancer]\n", "[balancer]\nfall = 0\n");
    c.write_raw_config(&broken.replace("id = \"node-2\"", "id = \"node 2\""));
    let cluster = &c;
    eventually(
        Duration::from_secs(10),
        "the refusal in the log",
        || async move { cluster.log("balancer").contains("config reload refused") },
    )
    .await;
    let log = c.log("balancer");
    assert!(log.contains("balancer.fall must be at least 1"), "{log}");
    assert!(log.contains("nodes[1].id = \"node 2\""), "{log}");
    let ids = |s: &Value| -> Vec<(String, String)> {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].to_string(), n["address"].to_string()))
            .collect()
    };
    let after = cluster_status(&c).await;
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(after["config_loaded_at"], before["config_loaded_at"]);
    upload(&c, "still.txt", 4, 100).await;

    // a good file again, picked up by SIGHUP as well as by the watch
    c.write_config(&[0]);
    c.signal_balancer(libc::SIGHUP);
    wait_state(&c, "node-2", "absent").await;
    let cluster = &c;
    eventually(
        Duration::from_secs(10),
        "SIGHUP in the log",
        || async move { cluster.log("balancer").contains("SIGHUP received") },
    )
    .await;
}

#[tokio::test]
async fn sigterm_lets_a_download_finish() {
    let mut c = Cluster::builder().nodes(1).balancer(true).start().await;
    let len = 64 * MIB;
    upload(&c, "d.bin", 5, len).await;
    let resp = c
        .http
        .get(format!("{}/files/d.bin", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let (mut hash, mut read) = (Sha256::new(), 0u64);
    let started = Instant::now();
    let mut signalled = false;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("the download must not be cut");
        read += chunk.len() as u64;
        hash.update(&chunk);
        if !signalled {
            c.signal_balancer(libc::SIGTERM);
            signalled = true;
            // new connections are refused while this download goes on
            let addr = &c.balancer_addr();
            eventually(
                Duration::from_secs(5),
                "the listener closed",
                || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
            )
            .await;
        }
        // read at about 32 MiB/s so the transfer outlasts the signal
        let due = Duration::from_secs_f64(read as f64 / (32.0 * MIB as f64));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let sha: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!((read, sha), (len, data::sha256(5, len)));
    assert_eq!(c.wait_balancer_exit(Duration::from_secs(10)), Some(0));
}
