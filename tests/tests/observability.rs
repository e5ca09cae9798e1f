//! Metrics and access logs (issue 15, parts 1 and 3), real processes: `/metrics` on the
//! balancer and every node counts exactly the requests a client sent, the store's families
//! count what was written, `/metrics` needs `admin` when access control is on, and every
//! request leaves one access-log line with its credentials redacted.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use speedbox_tests::auth::{auth_toml, bearer, claims, mint, K1};
use speedbox_tests::client::file_url;
use speedbox_tests::{eventually, Cluster};

/// One scrape: `name{labels}` → value (comments dropped).
type Scrape = HashMap<String, f64>;

async fn scrape(c: &Cluster, base: &str, authorization: Option<&str>) -> Scrape {
    let mut request = c.http.get(format!("{base}/metrics"));
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics:\n{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The sum of `series` over scrapes (0 where absent).
fn sum(scrapes: &[Scrape], series: &str) -> f64 {
    scrapes.iter().filter_map(|s| s.get(series)).sum()
}

async fn scrape_nodes(c: &Cluster, nodes: usize) -> Vec<Scrape> {
    let mut all = Vec::new();
    for i in 0..nodes {
        all.push(scrape(c, &c.node_url(i), None).await);
    }
    all
}

const PUT_2XX: &str = r#"speedbox_http_requests_total{route="file",method="PUT",status="2xx"}"#;
const GET_2XX: &str = r#"speedbox_http_requests_total{route="file",method="GET",status="2xx"}"#;
const GET_4XX: &str = r#"speedbox_http_requests_total{route="file",method="GET",status="4xx"}"#;
const RECEIVED: &str = r#"speedbox_http_received_bytes_total{route="file"}"#;
const SENT: &str = r#"speedbox_http_sent_bytes_total{route="file"}"#;
const WRITTEN: &str = r#"speedbox_store_chunk_bytes_total{direction="written"}"#;

#[tokio::test]
async fn metrics_count_every_request_exactly_on_the_balancer_and_the_nodes() {
    let nodes = 2;
    let c = Cluster::builder()
        .nodes(nodes)
        .balancer(true)
        .storage_toml("sweep_interval_secs = 1\nsize_interval_secs = 1\n")
        .start()
        .await;
    let base = c.balancer_url();
    let before = [scrape(&c, &base, None).await];
    let nodes_before = scrape_nodes(&c, nodes).await;

    let sizes = [1000usize, 300_000, 3];
    let mut sent_back = 0usize;
    for (i, size) in sizes.iter().enumerate() {
        let url = file_url(&base, &format!("m{i}.bin"));
        let put = c
            .http
            .put(&url)
            .body(vec![b'x'; *size])
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        sent_back += put.bytes().await.unwrap().len();
        for _ in 0..2 {
            let get = c.http.get(&url).send().await.unwrap();
            assert_eq!(get.status(), StatusCode::OK);
            sent_back += get.bytes().await.unwrap().len();
        }
    }
    let missing = c.http.get(file_url(&base, "none")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    sent_back += missing.bytes().await.unwrap().len();
    let uploaded: usize = sizes.iter().sum();

    let want = [
        (PUT_2XX, 3.0),
        (GET_2XX, 6.0),
        (GET_4XX, 1.0),
        (RECEIVED, uploaded as f64),
        (SENT, sent_back as f64),
    ];
    // A request is counted when its answer's body is dropped, a moment after the client
    // has read it: poll until the counts are exact.
    let delta =
        |now: &[Scrape], then: &[Scrape], series: &str| sum(now, series) - sum(then, series);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let balancer = [scrape(&c, &base, None).await];
        let on_nodes = scrape_nodes(&c, nodes).await;
        let mut wrong = Vec::new();
        for (series, n) in want {
            for (who, now, then) in [
                ("balancer", &balancer[..], &before[..]),
                ("nodes", &on_nodes[..], &nodes_before[..]),
            ] {
                let got = delta(now, then, series);
                if got != n {
                    wrong.push(format!("{who} {series}: {got}, want {n}"));
                }
            }
        }
        let written = delta(&on_nodes, &nodes_before, WRITTEN);
        if written != uploaded as f64 {
            wrong.push(format!("{WRITTEN}: {written}, want {uploaded}"));
        }
        if wrong.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", wrong.join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let balancer = scrape(&c, &base, None).await;
    for i in 0..nodes {
        let up = format!(r#"speedbox_balancer_node_up{{node="{}"}}"#, c.node_id(i));
        assert_eq!(balancer.get(&up), Some(&1.0), "{up}");
    }
    let on_nodes = scrape_nodes(&c, nodes).await;
    for scrape in on_nodes.iter().chain([&balancer]) {
        assert!(scrape["process_resident_memory_bytes"] > 1e6);
        assert!(scrape["process_open_fds"] > 0.0);
        assert_eq!(scrape["speedbox_log_lines_dropped_total"], 0.0);
        assert_eq!(
            scrape[r#"speedbox_http_requests_in_flight{route="file"}"#],
            0.0
        );
    }
    let put_writes = r#"speedbox_store_operation_duration_seconds_count{operation="publish"}"#;
    assert_eq!(
        sum(&on_nodes, put_writes) - sum(&nodes_before, put_writes),
        3.0
    );
    let uploading = r#"speedbox_uploads_in_progress{kind="put"}"#;
    assert_eq!(sum(&on_nodes, uploading), 0.0);
    // The database's own figure, measured every second here.
    eventually(Duration::from_secs(5), "chunks_size measured", || async {
        let node = scrape(&c, &c.node_url(0), None).await;
        node.get("speedbox_store_chunks_size_bytes")
            .copied()
            .unwrap_or(0.0)
            >= uploaded as f64
    })
    .await;
}

#[tokio::test]
async fn metrics_need_admin_and_access_logs_name_the_principal_but_no_credential() {
    let c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .file("secrets/k1.key", K1)
        .extra_toml(&auth_toml(&["k1"], ""))
        .start()
        .await;
    let admin = mint(&claims("root", "read write admin", ""));
    let reader = mint(&claims("alice", "read write", ""));
    for base in [c.balancer_url(), c.node_url(0)] {
        let url = format!("{base}/metrics");
        let none = c.http.get(&url).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{url}");
        let not_admin = c.http.get(&url).header("authorization", bearer(&reader));
        assert_eq!(
            not_admin.send().await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        scrape(&c, &base, Some(&bearer(&admin))).await;
    }

    // A token in the query string, as clients that cannot set headers send it.
    let url = format!(
        "{}?token={reader}",
        file_url(&c.balancer_url(), "log me.txt")
    );
    let put = c.http.put(&url).body("hello").send().await.unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let id = put.headers()["x-request-id"].to_str().unwrap().to_owned();

    let line = |log: String| {
        log.lines()
            .find(|l| l.contains(&id) && l.contains("access"))
            .map(str::to_owned)
    };
    let mut found = (None, None);
    eventually(Duration::from_secs(5), "access-log lines", || {
        found = (line(c.log("balancer")), line(c.log(c.node_id(0))));
        std::future::ready(found.0.is_some() && found.1.is_some())
    })
    .await;
    let (balancer, node) = (found.0.unwrap(), found.1.unwrap());
    for line in [&balancer, &node] {
        for field in [
            "method=PUT",
            "path=/files/log%20me.txt?token=REDACTED",
            "status=201",
            "principal=\"alice\"",
            "bytes_in=5",
        ] {
            assert!(line.contains(field), "no {field} in {line}");
        }
    }
    assert!(
        balancer.contains(&format!("node=\"{}\"", c.node_id(0))),
        "{balancer}"
    );
    for name in ["balancer", c.node_id(0)] {
        let log = c.log(name);
        assert!(!log.contains(&reader), "a token reached the log of {name}");
        // Health checks (every 200 ms here) and scrapes succeed quietly (debug).
        let routine = |l: &&str| l.contains(" access ") && l.contains("path=/healthz ");
        assert_eq!(log.lines().filter(routine).count(), 0, "{name}");
    }
}
