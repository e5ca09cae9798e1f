//! The proxy when nodes fail, change or go away: retries, passive and active health,
//! live reload with draining, graceful shutdown.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

/// Round robin and one check round only, so a test decides which node comes first.
const STEADY: &str = "algorithm = \"round-robin\"\nhealth_interval_ms = 60000\n";

async fn first_checks_done(balancer: &Balancer) {
    balancer
        .wait_status("first checks", |s| {
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["last_check_latency_ms"].is_u64())
        })
        .await;
}

#[tokio::test]
async fn a_refused_upload_goes_to_another_node_intact() {
    let (mut a, b) = (FakeNode::start("a").await, FakeNode::start("b").await);
    let balancer = Balancer::start(&[&a, &b], STEADY).await;
    first_checks_done(&balancer).await;
    a.stop_listening();

    let len = 4 * 1024 * 1024;
    let body = pattern_body(len, 65_536, Duration::ZERO);
    let response = client()
        .request(request("PUT", &balancer.url("/files/x"), body))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-speedbox-node"], "b");
    let got = json(response).await;
    assert_eq!(got["len"], len);
    assert_eq!(got["hash"], Digest::of_pattern(len).hash);

    let status = balancer.status().await;
    assert_eq!(
        node_state(&status, "a"),
        "down",
        "passive health: {status:#}"
    );
    let error = status["nodes"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert_eq!(node_state(&status, "b"), "up");
}

#[tokio::test]
async fn a_get_is_replayed_when_the_node_dies_before_answering() {
    let (a, b) = (FakeNode::start("a").await, FakeNode::start("b").await);
    let balancer = Balancer::start(&[&a, &b], STEADY).await;
    first_checks_done(&balancer).await;
    a.behaviour.die.store(true, Ordering::SeqCst);
    let client = client();

    let response = client
        .request(request("GET", &balancer.url("/echo"), empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-speedbox-node"], "b");
    assert_eq!(
        a.behaviour.requests.load(Ordering::SeqCst),
        1,
        "a was tried first"
    );

    // the next pick is a again; an upload already sent is not replayed (a form upload:
    // a PUT of a file would be continued, see tests/tests/put_failover.rs)
    let body = pattern_body(100_000, 10_000, Duration::ZERO);
    let response = client
        .request(request("POST", &balancer.url("/upload"), body))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-speedbox-error"], "balancer");
    let error = json(response).await;
    assert!(
        error["error"].as_str().unwrap().contains("node a"),
        "{error}"
    );
    assert_eq!(
        b.behaviour.requests.load(Ordering::SeqCst),
        1,
        "no replay on b"
    );
}

/// A hung node gets a hedge; when it then dies (a reset) before the hedge answers, it is
/// marked down at once, as it would be without the hedge, not left up until its health
/// checks fail.
#[tokio::test]
async fn a_node_that_dies_while_its_hedge_runs_is_marked_down() {
    let (a, b) = (FakeNode::start("a").await, FakeNode::start("b").await);
    let balancer =
        Balancer::start(&[&a, &b], &format!("{STEADY}first_byte_timeout_ms = 200\n")).await;
    first_checks_done(&balancer).await;
    a.behaviour.reset_after_ms.store(600, Ordering::SeqCst);
    b.behaviour.head_delay_ms.store(1500, Ordering::SeqCst);
    let response = client()
        .request(request("GET", &balancer.url("/echo"), empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-speedbox-node"], "b");
    let status = balancer.status().await;
    assert_eq!(node_state(&status, "a"), "down", "{status:#}");
}

#[tokio::test]
async fn a_client_that_resets_its_upload_takes_no_node_down() {
    use tokio::io::AsyncWriteExt;
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], STEADY).await;
    first_checks_done(&balancer).await;
    for path in ["/files/x", "/upload"] {
        let mut client = tokio::net::TcpStream::connect(balancer.addr).await.unwrap();
        let head = format!("PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n");
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(&vec![7u8; 1 << 20]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // An abortive close: the balancer reads a reset from the client, not from the node.
        client.set_zero_linger().unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = balancer.status().await;
        assert_eq!(node_state(&status, "a"), "up", "{path}: {status:#}");
    }
}

#[tokio::test]
async fn no_healthy_node_answers_503_at_once() {
    let mut a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], STEADY).await;
    first_checks_done(&balancer).await;
    a.stop_listening();
    let client = client();
    for expected in ["no node could take the request", "no healthy node"] {
        let started = Instant::now();
        let response = client
            .request(request("GET", &balancer.url("/files/x"), empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["x-speedbox-error"], "balancer");
        assert!(response.headers().contains_key("x-request-id"));
        let error = json(response).await;
        assert!(
            error["error"].as_str().unwrap().contains(expected),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}

#[tokio::test]
async fn active_checks_take_a_node_out_and_bring_it_back() {
    let (a, b) = (FakeNode::start("a").await, FakeNode::start("b").await);
    let balancer =
        Balancer::start(&[&a, &b], "fall = 2\nrise = 2\nhealth_interval_ms = 50\n").await;
    a.behaviour.unhealthy.store(true, Ordering::SeqCst);
    balancer
        .wait_status("a down", |s| node_state(s, "a") == "down")
        .await;
    let status = balancer.status().await;
    assert!(status["nodes"][0]["consecutive_failures"].as_u64().unwrap() >= 2);
    assert!(status["nodes"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("503"));

    let client = client();
    let before = a.behaviour.requests.load(Ordering::SeqCst);
    for _ in 0..6 {
        let response = client
            .request(request("GET", &balancer.url("/echo"), empty()))
            .await
            .unwrap();
        assert_eq!(response.headers()["x-speedbox-node"], "b");
        let _ = json(response).await;
    }
    assert_eq!(a.behaviour.requests.load(Ordering::SeqCst), before);

    a.behaviour.unhealthy.store(false, Ordering::SeqCst);
    balancer
        .wait_status("a up", |s| node_state(s, "a") == "up")
        .await;
    let nodes = served_by(&client, &balancer.url("/echo"), 4).await;
    assert_eq!(nodes.matches('a').count(), 2, "{nodes}");
}

#[tokio::test]
async fn reload_adds_drains_and_refuses_bad_edits() {
    let (a, b, c) = (
        FakeNode::start("a").await,
        FakeNode::start("b").await,
        FakeNode::start("c").await,
    );
    a.behaviour.chunk_delay_ms.store(150, Ordering::SeqCst);
    let balancer = Balancer::start(&[&a, &b], STEADY).await;
    first_checks_done(&balancer).await;

    // a slow download from a (first in turn): 8 chunks, 150 ms apart
    let len = 2 * 1024 * 1024;
    let response = client()
        .request(request(
            "GET",
            &balancer.url(&format!("/bytes/{len}")),
            empty(),
        ))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-speedbox-node"], "a");
    let download = tokio::spawn(digest(response));

    balancer.write_config(&config_text(balancer.addr, &[&b, &c], STEADY));
    balancer
        .wait_status("a draining, c added", |s| {
            node_state(s, "a") == "removed-draining" && node_state(s, "c") == "up"
        })
        .await;
    let client = client();
    for _ in 0..4 {
        let response = client
            .request(request("GET", &balancer.url("/echo"), empty()))
            .await
            .unwrap();
        assert_ne!(response.headers()["x-speedbox-node"], "a");
        let _ = json(response).await;
    }
    assert_eq!(download.await.unwrap().unwrap(), Digest::of_pattern(len));
    balancer
        .wait_status("a gone", |s| node_state(s, "a") == "absent")
        .await;

    // a broken edit is refused and the running config stays
    let broken = config_text(balancer.addr, &[&b], STEADY).replace("id = \"b\"", "id = \"b b\"");
    balancer.write_config(&broken);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = balancer.status().await;
    assert_eq!(node_state(&status, "b"), "up");
    assert_eq!(node_state(&status, "c"), "up");

    // b survives the next edit with its state, not re-added: a download it is serving
    // stays counted on it (a fresh b would count none and leave the old one draining)
    b.behaviour.chunk_delay_ms.store(150, Ordering::SeqCst);
    let len = 4 * 1024 * 1024;
    let response = loop {
        let url = balancer.url(&format!("/bytes/{len}"));
        let response = client.request(request("GET", &url, empty())).await.unwrap();
        if response.headers()["x-speedbox-node"] == "b" {
            break response;
        }
        assert_eq!(digest(response).await.unwrap(), Digest::of_pattern(len));
    };
    let download = tokio::spawn(digest(response));
    let loaded_at = |s: &serde_json::Value| s["config_loaded_at"].as_u64().expect("loaded at");
    let before = loaded_at(&balancer.status().await);
    balancer.write_config(&config_text(balancer.addr, &[&a, &b], STEADY));
    balancer
        .wait_status("a back, c gone", |s| {
            node_state(s, "a") == "up" && node_state(s, "c") == "absent"
        })
        .await;
    let status = balancer.status().await;
    assert!(loaded_at(&status) >= before, "{status:#}");
    let listed: Vec<_> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["id"] == "b")
        .collect();
    assert_eq!(listed.len(), 1, "{status:#}");
    assert_eq!(listed[0]["state"], "up", "{status:#}");
    assert_eq!(listed[0]["in_flight"], 1, "{status:#}");
    assert_eq!(download.await.unwrap().unwrap(), Digest::of_pattern(len));

    // the re-added a takes its turns again
    let nodes = served_by(&client, &balancer.url("/echo"), 4).await;
    assert_eq!(nodes.matches('a').count(), 2, "{nodes}");
}

#[tokio::test]
async fn shutdown_lets_a_download_finish_and_stops_accepting() {
    let a = FakeNode::start("a").await;
    a.behaviour.chunk_delay_ms.store(100, Ordering::SeqCst);
    let mut balancer = Balancer::start(&[&a], "").await;
    let len = 2 * 1024 * 1024;
    let response = client()
        .request(request(
            "GET",
            &balancer.url(&format!("/bytes/{len}")),
            empty(),
        ))
        .await
        .unwrap();
    let download = tokio::spawn(digest(response));
    tokio::time::sleep(Duration::from_millis(150)).await;
    balancer.shutdown();
    assert_eq!(download.await.unwrap().unwrap(), Digest::of_pattern(len));
    let done = tokio::time::timeout(Duration::from_secs(5), &mut balancer.done).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    assert!(tokio::net::TcpStream::connect(balancer.addr).await.is_err());
}

#[tokio::test]
async fn the_drain_deadline_cuts_what_is_left() {
    let a = FakeNode::start("a").await;
    a.behaviour.chunk_delay_ms.store(1000, Ordering::SeqCst);
    let mut balancer = Balancer::start(&[&a], "drain_timeout_ms = 300\n").await;
    let response = client()
        .request(request("GET", &balancer.url("/bytes/10000000"), empty()))
        .await
        .unwrap();
    let download = tokio::spawn(digest(response));
    balancer.shutdown();
    let started = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(5), &mut balancer.done).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        download.await.unwrap().is_err(),
        "the cut download must fail"
    );
}
