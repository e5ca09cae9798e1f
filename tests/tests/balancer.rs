//! The balancer in front of real nodes: streaming through it, spreading, a node killed and
//! restarted, live `cluster.toml` edits, no healthy node, a stalled client, and SIGTERM
//! during a download.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use speedbox_tests::{data, eventually, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

async fn status(c: &Cluster) -> Value {
    let resp = c
        .http
        .get(format!("{}/_cluster", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// `up`, `down`, `removed-draining`, or `absent` when the node is not listed.
async fn state(c: &Cluster, id: &str) -> String {
    let status = status(c).await;
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map_or("absent".into(), |n| n["state"].as_str().unwrap().to_owned())
}

async fn wait_state(c: &Cluster, id: &str, want: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{id} {want}"),
        || async move { state(c, id).await == want },
    )
    .await;
}

async fn upload(c: &Cluster, name: &str, seed: u64, len: u64) {
    let resp = c
        .http
        .put(format!("{}/files/{name}", c.balancer_url()))
        .body(data::body(seed, len))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["length"], len);
}

/// GETs `name` through the balancer; returns the serving node's id.
async fn get_ok(c: &Cluster, name: &str, expected: &str) -> Result<String, String> {
    let resp = c
        .http
        .get(format!("{}/files/{name}", c.balancer_url()))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let node = resp.headers()["x-speedbox-node"]
        .to_str()
        .unwrap()
        .to_owned();
    let (_, sha) = data::drain(resp).await.map_err(|e| e.to_string())?;
    if sha != expected {
        return Err("wrong content".into());
    }
    Ok(node)
}

#[tokio::test]
async fn a_large_file_and_a_range_round_trip_through_the_balancer() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    let len = 256 * MIB;
    upload(&c, "big.bin", 7, len).await;

    let resp = c
        .http
        .get(format!("{}/files/big.bin", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(len));
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(
        data::drain(resp).await.unwrap(),
        (len, data::sha256(7, len))
    );

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
async fn requests_spread_over_all_nodes() {
    let c = Cluster::builder().nodes(3).balancer(true).start().await;
    upload(&c, "s.txt", 1, 1000).await;
    let expected = data::sha256(1, 1000);
    let mut served = std::collections::HashMap::<String, usize>::new();
    for _ in 0..30 {
        *served
            .entry(get_ok(&c, "s.txt", &expected).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(served.values().all(|&n| n >= 5), "{served:?}");
}

#[tokio::test]
async fn a_killed_node_is_marked_down_then_rejoins() {
    let mut c = Cluster::builder()
        .nodes(3)
        .balancer(true)
        .balancer_toml("fall = 1\nrise = 2\n")
        .start()
        .await;
    upload(&c, "k.bin", 2, MIB).await;
    let expected = data::sha256(2, MIB);

    // a steady stream of GETs while node-2 dies
    let (http, url) = (c.http.clone(), format!("{}/files/k.bin", c.balancer_url()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = tokio::spawn({
        let (stop, expected) = (stop.clone(), expected.clone());
        async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sha = match http.get(&url).send().await {
                    Ok(resp) if resp.status() == StatusCode::OK => data::drain(resp).await.ok(),
                    _ => None,
                };
                match sha {
                    Some((_, sha)) if sha == expected => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill_node(1);
    wait_state(&c, "node-2", "down").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = stream.await.unwrap();
    // at most the one GET whose body was streaming at the moment of the kill
    assert!(ok > 10 && failed <= 1, "ok {ok}, failed {failed}");

    let status = status(&c).await;
    let node2 = &status["nodes"][1];
    assert!(
        node2["consecutive_failures"].as_u64().unwrap() >= 1,
        "{status:#}"
    );
    assert!(node2["last_error"].is_string(), "{status:#}");
    for _ in 0..12 {
        assert_ne!(get_ok(&c, "k.bin", &expected).await.unwrap(), "node-2");
    }

    c.restart_node(1).await;
    wait_state(&c, "node-2", "up").await;
    let mut back = false;
    for _ in 0..12 {
        back |= get_ok(&c, "k.bin", &expected).await.unwrap() == "node-2";
    }
    assert!(back, "node-2 serves again after its restart");
}

#[tokio::test]
async fn nodes_removed_from_and_readded_to_cluster_toml() {
    let c = Cluster::builder().nodes(3).balancer(true).start().await;
    upload(&c, "r.txt", 3, 5000).await;
    let expected = data::sha256(3, 5000);

    c.write_config(&[0, 2]);
    wait_state(&c, "node-2", "absent").await;
    for _ in 0..12 {
        assert_ne!(get_ok(&c, "r.txt", &expected).await.unwrap(), "node-2");
    }

    c.write_config(&[0, 1, 2]);
    wait_state(&c, "node-2", "up").await;
    let mut served = std::collections::HashSet::new();
    for _ in 0..12 {
        served.insert(get_ok(&c, "r.txt", &expected).await.unwrap());
    }
    assert!(served.contains("node-2"), "{served:?}");
}

#[tokio::test]
async fn a_broken_edit_is_refused_and_sighup_reloads() {
    let mut c = Cluster::builder().nodes(2).balancer(true).start().await;
    let before = status(&c).await;
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
    let after = status(&c).await;
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
async fn no_healthy_node_answers_503_json_at_once() {
    let mut c = Cluster::builder().nodes(1).balancer(true).start().await;
    c.kill_node(0);
    for _ in 0..3 {
        let started = Instant::now();
        let resp = c
            .http
            .get(format!("{}/files/any", c.balancer_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["x-speedbox-error"], "balancer");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    wait_state(&c, "node-1", "down").await;
}

#[tokio::test]
async fn a_client_stalling_mid_headers_is_dropped() {
    let c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .balancer_toml("header_timeout_ms = 500\n")
        .start()
        .await;
    let mut socket = tokio::net::TcpStream::connect(c.balancer_addr())
        .await
        .unwrap();
    socket
        .write_all(b"GET /files/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the stalled connection is still open after 5 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
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
