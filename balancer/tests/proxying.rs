//! The proxy against fake nodes: spreading, headers, the status page, timeouts, reuse of
//! connections. (Large files streamed through it are tested end to end, into storage and
//! back, in the `tests` crate's `balancer.rs`.)

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn requests_spread_evenly_over_idle_nodes() {
    let nodes = [
        FakeNode::start("a").await,
        FakeNode::start("b").await,
        FakeNode::start("c").await,
    ];
    let balancer = Balancer::start(&[&nodes[0], &nodes[1], &nodes[2]], "").await;
    let client = client();
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let response = client
            .request(request("GET", &balancer.url("/echo"), empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let node = response.headers()["x-speedbox-node"]
            .to_str()
            .unwrap()
            .to_owned();
        *served.entry(node).or_default() += 1;
        let _ = json(response).await;
    }
    assert_eq!(
        served,
        HashMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );
}

#[tokio::test]
async fn weighted_round_robin_follows_weights() {
    let (a, b) = (FakeNode::start("a").await, FakeNode::start("b").await);
    let text = |listen| {
        config_text(listen, &[&a, &b], "algorithm = \"round-robin\"\n").replace(
            &format!("listen = \"{}\"\n", b.addr),
            &format!("listen = \"{}\"\nweight = 3\n", b.addr),
        )
    };
    let balancer = Balancer::start(&[&a, &b], "algorithm = \"round-robin\"\n").await;
    balancer.write_config(&text(balancer.addr));
    balancer
        .wait_status("weight 3", |s| s["nodes"][1]["weight"] == 3)
        .await;
    let client = client();
    let order = served_by(&client, &balancer.url("/echo"), 8).await;
    // smooth weighted order is b a b b, in some rotation
    assert_eq!(order.matches('a').count(), 2, "{order}");
    assert!(format!("{order}{order}").contains("babbbabb"), "{order}");
}

#[tokio::test]
async fn forwarding_headers_and_request_ids() {
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], "").await;
    let client = client();

    let mut req = request("GET", &balancer.url("/echo?x=1"), empty());
    req.headers_mut()
        .insert("x-request-id", "client-id-1".parse().unwrap());
    req.headers_mut()
        .insert("connection", "x-hop".parse().unwrap());
    req.headers_mut().insert("x-hop", "secret".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let response = client.request(req).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-id-1");
    let seen = json(response).await;
    let h = &seen["headers"];
    assert_eq!(seen["uri"], "/echo?x=1");
    assert_eq!(h["x-request-id"], "client-id-1");
    // 127.0.0.1 is not a trusted proxy here: its chain is replaced, not extended
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], balancer.addr.to_string());
    assert_eq!(
        h["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"{}\"", balancer.addr).as_str()
    );
    assert!(h.get("x-hop").is_none(), "{h}");

    let mut req = request("GET", &balancer.url("/echo"), empty());
    req.headers_mut()
        .insert("x-request-id", "no spaces allowed".parse().unwrap());
    let response = client.request(req).await.unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(json(response).await["headers"]["x-request-id"], id.as_str());
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_forwarding_headers() {
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], "trusted_proxies = [\"127.0.0.0/8\"]\n").await;
    let mut req = request("GET", &balancer.url("/echo"), empty());
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
        (
            "forwarded",
            "for=203.0.113.9;proto=https;host=public.example",
        ),
    ] {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    let seen = json(client().request(req).await.unwrap()).await;
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "public.example");
    assert_eq!(
        h["forwarded"],
        format!(
            "for=203.0.113.9;proto=https;host=public.example, for=127.0.0.1;proto=http;host=\"{}\"",
            balancer.addr
        )
        .as_str()
    );
}

#[tokio::test]
async fn status_page_reports_checked_nodes() {
    let (a, b) = (FakeNode::start("a").await, FakeNode::start("b").await);
    let balancer = Balancer::start(&[&a, &b], "").await;
    balancer
        .wait_status("first checks", |s| {
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["last_check_latency_ms"].is_u64())
        })
        .await;
    let status = balancer.status().await;
    assert_eq!(status["algorithm"], "least-outstanding");
    assert_eq!(
        status["config_path"],
        balancer.config_path.display().to_string()
    );
    assert_eq!(status["nodes"][0]["id"], "a");
    assert_eq!(status["nodes"][0]["address"], a.addr.to_string());
    assert_eq!(status["nodes"][0]["state"], "up");
    assert_eq!(status["nodes"][1]["in_flight"], 0);

    let response = client()
        .request(request("POST", &balancer.url("/_cluster"), empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["x-speedbox-error"], "balancer");
}

#[tokio::test]
async fn response_timer_starts_after_a_slow_upload() {
    let a = FakeNode::start("a").await;
    let balancer =
        Balancer::start(&[&a], "response_timeout_ms = 300\nidle_timeout_ms = 1000\n").await;
    let client = client();

    // 1.5 s of upload, far beyond the response timeout, never idle for 1 s
    let body = pattern_body(10 * 1000, 1000, Duration::from_millis(150));
    let response = client
        .request(request("PUT", &balancer.url("/files/slow"), body))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(json(response).await["len"], 10_000);

    a.behaviour
        .head_delay_ms
        .store(2000, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let response = client
        .request(request("GET", &balancer.url("/echo"), empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-speedbox-error"], "balancer");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_stalled_upload_is_cut_by_the_idle_timeout() {
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], "idle_timeout_ms = 300\n").await;
    let stalled = futures::stream::unfold(0, |step| async move {
        match step {
            0 => Some((
                Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
                    b"start",
                ))),
                1,
            )),
            _ => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                None
            }
        }
    });
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stalled));
    let started = Instant::now();
    let response = client()
        .request(request("PUT", &balancer.url("/files/stalled"), body))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-speedbox-error"], "balancer");
    assert!(started.elapsed() < Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(3);
    while a
        .behaviour
        .broken_uploads
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the node never saw the upload break"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stalled_download_is_cut_by_the_idle_timeout() {
    let a = FakeNode::start("a").await;
    a.behaviour
        .chunk_delay_ms
        .store(3000, std::sync::atomic::Ordering::SeqCst);
    let balancer = Balancer::start(&[&a], "idle_timeout_ms = 300\n").await;
    let started = Instant::now();
    let response = client()
        .request(request(
            "GET",
            &balancer.url(&format!("/bytes/{MIB}")),
            empty(),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        digest(response).await.is_err(),
        "the body must end in an error"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_client_stalling_mid_headers_is_dropped() {
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], "header_timeout_ms = 300\n").await;
    let mut socket = tokio::net::TcpStream::connect(balancer.addr).await.unwrap();
    socket
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 3 s");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        a.behaviour
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut() {
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], "idle_timeout_ms = 300\n").await;
    let mut socket = tokio::net::TcpStream::connect(balancer.addr).await.unwrap();
    let len = 256 * MIB;
    socket
        .write_all(format!("GET /bytes/{len} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // never read: once the socket buffers fill, the balancer's writes stall
    balancer
        .wait_status("a transfer in flight", |s| s["nodes"][0]["in_flight"] == 1)
        .await;
    balancer
        .wait_status("the transfer cut", |s| s["nodes"][0]["in_flight"] == 0)
        .await;
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total < len, "all {total} bytes arrived");
}

#[tokio::test]
async fn connections_to_nodes_are_reused() {
    let a = FakeNode::start("a").await;
    let balancer = Balancer::start(&[&a], "health_interval_ms = 60000\n").await;
    let client = client();
    for method in ["GET", "HEAD", "GET", "PUT"] {
        for _ in 0..10 {
            let (body, path) = match method {
                "PUT" => (pattern_body(1000, 100, Duration::ZERO), "/files/x"),
                _ => (empty(), "/bytes/5000"),
            };
            let response = client
                .request(request(method, &balancer.url(path), body))
                .await
                .unwrap();
            match method {
                "PUT" => {
                    assert_eq!(response.status(), 201);
                    let got = json(response).await;
                    assert_eq!(got["len"], 1000);
                    assert_eq!(got["hash"], Digest::of_pattern(1000).hash);
                }
                "HEAD" => {
                    assert_eq!(response.status(), 200);
                    assert_eq!(response.headers()["content-length"], "5000");
                    assert_eq!(digest(response).await.unwrap(), Digest::default());
                }
                _ => {
                    assert_eq!(response.status(), 200);
                    assert_eq!(digest(response).await.unwrap(), Digest::of_pattern(5000));
                }
            }
        }
    }
    // one for the health check, one (rarely two) for the 40 requests
    let connections = a
        .behaviour
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(connections <= 3, "{connections} connections");
}

/// A node closes a keep-alive connection it finds idle (its header timeout): the
/// balancer's next request on that connection must find it closed before sending, and go
/// on another connection, neither failing nor taking the node down nor sending twice.
#[tokio::test]
async fn a_node_closing_idle_connections_costs_no_request() {
    let a = FakeNode::start("a").await;
    a.behaviour
        .conn_lifetime_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let balancer = Balancer::start(&[&a], "health_interval_ms = 60000\n").await;
    let client = client();
    let mut sent = 0;
    for round in 0..3 {
        for method in ["GET", "HEAD", "GET"] {
            let response = client
                .request(request(method, &balancer.url("/bytes/5000"), empty()))
                .await
                .unwrap();
            sent += 1;
            assert_eq!(response.status(), 200, "{method} in round {round}");
            let want = match method {
                "HEAD" => Digest::default(),
                _ => Digest::of_pattern(5000),
            };
            assert_eq!(digest(response).await.unwrap(), want);
        }
        // past the node's lifetime of every connection the balancer holds
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let requests = a
        .behaviour
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(requests, sent, "each request reached the node once");
    let connections = a
        .behaviour
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        connections >= 4,
        "the node closed them: {connections} connections"
    );
    let status = balancer.status().await;
    let node = &status["nodes"][0];
    assert_eq!(node["state"], "up", "{node}");
    assert_eq!(node["last_error"], serde_json::Value::Null, "{node}");
}
