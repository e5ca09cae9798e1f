//! `[limits]` (issue 15, part 2), real processes: a burst over the request rate gets 429
//! with a sane `Retry-After` and the draft's RateLimit fields, a limit applies to its
//! principal only (another address, another token), transfers at once are capped, limits
//! follow live edits, and bandwidth limits slow transfers without failing them.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use speedbox_tests::auth::{auth_toml, bearer, claims, mint, K1};
use speedbox_tests::client::{file_url, put};
use speedbox_tests::{data, eventually, Cluster};

const MIB: u64 = 1 << 20;

/// A client whose connections come from `addr` (a loopback address of its own).
fn client_from(addr: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(addr))
        .no_proxy()
        .build()
        .unwrap()
}

/// Statuses of `n` GETs of `url` sent one after another, as fast as they go.
async fn burst(http: &reqwest::Client, url: &str, n: usize) -> Vec<reqwest::Response> {
    let mut answers = Vec::new();
    for _ in 0..n {
        answers.push(http.get(url).send().await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_burst_gets_429_with_retry_after_and_other_clients_do_not() {
    let limits = "[limits]\nrequests_per_second = 2\nburst = 4\n";
    let mut c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .extra_toml(limits)
        .start()
        .await;
    put(&c, &c.node_url(0), "a.txt", "hello").await;
    let url = file_url(&c.balancer_url(), "a.txt");

    let answers = burst(&client_from([127, 0, 0, 2]), &url, 8).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&statuses[..4], &[200; 4], "{statuses:?}");
    let refused: Vec<_> = answers
        .into_iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(refused.len() >= 3, "{statuses:?}");
    for r in &refused {
        let h = r.headers();
        assert_eq!(
            h["retry-after"], "1",
            "2 per second: the next in at most half a second"
        );
        assert_eq!(h["ratelimit-policy"], "\"requests\";q=4;w=2");
        assert_eq!(h["ratelimit"], "\"requests\";r=0;t=1");
    }
    let body: serde_json::Value = refused.into_iter().next().unwrap().json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("too many requests"));

    // Another address has its own bucket.
    let other = burst(&client_from([127, 0, 0, 3]), &url, 4).await;
    assert!(other.iter().all(|r| r.status() == StatusCode::OK));

    // Retry-After is honest: after it, the client is served again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = client_from([127, 0, 0, 2]).get(&url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);

    // A live edit lifts the limit.
    c.set_extra_toml("");
    let unlimited = client_from([127, 0, 0, 2]);
    eventually(Duration::from_secs(5), "the limit lifted", || async {
        let answers = burst(&unlimited, &url, 12).await;
        answers.iter().all(|r| r.status() == StatusCode::OK)
    })
    .await;

    let metrics = c.http.get(format!("{}/metrics", c.balancer_url()));
    let text = metrics.send().await.unwrap().text().await.unwrap();
    let refused_line = text
        .lines()
        .find(|l| l.starts_with("speedbox_balancer_limited_total{limit=\"requests_per_second\"}"))
        .unwrap_or_default();
    let count: f64 = refused_line
        .rsplit(' ')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap();
    assert!(count >= 3.0, "{refused_line}");
}

async fn with_auth(limits: &str) -> Cluster {
    Cluster::builder()
        .nodes(2)
        .balancer(true)
        .file("secrets/k1.key", K1)
        .extra_toml(&format!("{}{limits}", auth_toml(&["k1"], "")))
        .start()
        .await
}

/// PUTs `len` bytes as `name` with `token`; returns the seconds it took.
async fn timed_put(c: &Cluster, token: &str, name: &str, seed: u64, len: u64) -> f64 {
    let start = Instant::now();
    let r = c
        .http
        .put(file_url(&c.balancer_url(), name))
        .header("authorization", bearer(token))
        .body(data::body(seed, len))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{name}");
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored["sha256"], data::sha256(seed, len));
    start.elapsed().as_secs_f64()
}

#[tokio::test]
async fn shaped_uploads_and_downloads_finish_at_their_principals_rate() {
    // Well under what a debug build on the embedded database takes on a loaded 2-core
    // machine (about 28 MiB/s for two uploads at once, measured), so that the limit and
    // nothing else sets the pace.
    let rate = 12 * MIB;
    let c = with_auth(&format!(
        "[limits]\nupload_bytes_per_second = {rate}\ndownload_bytes_per_second = {rate}\n"
    ))
    .await;
    let alice = mint(&claims("alice", "read write", ""));
    let bob = mint(&claims("bob", "read write", ""));
    let (a_len, b_len) = (200 * MIB, 24 * MIB);
    let nominal = |len: u64| len as f64 / rate as f64;
    // Bob starts while alice's upload runs: with a bucket of his own he takes his own
    // nominal time; sharing hers, he would take twice that or more.
    let (a, b) = tokio::join!(timed_put(&c, &alice, "alice.bin", 1, a_len), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        timed_put(&c, &bob, "bob.bin", 2, b_len).await
    });
    eprintln!("alice {a:.2} s, bob {b:.2} s");
    let want = nominal(a_len);
    assert!(
        (a - want).abs() <= want * 0.1,
        "alice: {a_len} bytes at {rate} B/s took {a:.2} s, want {want:.2} s ± 10%"
    );
    let want = nominal(b_len);
    assert!(
        b >= want * 0.9 && b < want * 1.5,
        "bob: {b_len} bytes took {b:.2} s, want {want:.2} s (his own bucket)"
    );

    let start = Instant::now();
    let r = c
        .http
        .get(file_url(&c.balancer_url(), "bob.bin"))
        .header("authorization", bearer(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len() as u64, b_len);
    let took = start.elapsed().as_secs_f64();
    let want = nominal(b_len);
    assert!(
        (took - want).abs() <= want * 0.1,
        "download took {took:.2} s, want {want:.2} s"
    );
    let text = c.http.get(format!("{}/metrics", c.balancer_url()));
    let text = text.header("authorization", bearer(&mint(&claims("root", "admin", ""))));
    let text = text.send().await.unwrap().text().await.unwrap();
    for direction in ["upload", "download"] {
        let series = format!("speedbox_balancer_shaped_bytes_total{{direction=\"{direction}\"}} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&series))
            .unwrap_or_default();
        let n: f64 = line
            .rsplit(' ')
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        assert!(n > 0.0, "{series}: {line}");
    }
}

#[tokio::test]
async fn transfers_at_once_are_capped_per_principal() {
    let c = with_auth(&format!(
        "[limits]\nconcurrent_transfers = 1\ndownload_bytes_per_second = {}\n",
        16 * MIB
    ))
    .await;
    let alice = mint(&claims("alice", "read write", ""));
    let bob = mint(&claims("bob", "read write", ""));
    timed_put(&c, &alice, "big.bin", 3, 32 * MIB).await;
    let url = file_url(&c.balancer_url(), "big.bin");
    let get = |token: &str| {
        c.http
            .get(&url)
            .header("authorization", bearer(token))
            .send()
    };

    // A 2 s download holds alice's one transfer.
    let first = get(&alice).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = get(&alice).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(
        second.headers()["ratelimit-policy"],
        "\"transfers\";q=1;qu=\"concurrent-requests\""
    );
    // Bob is not alice.
    let bobs = get(&bob).await.unwrap();
    assert_eq!(bobs.status(), StatusCode::OK);
    drop(bobs);
    // A HEAD moves no bytes: not a transfer.
    let head = c.http.head(&url).header("authorization", bearer(&alice));
    assert_eq!(head.send().await.unwrap().status(), StatusCode::OK);

    assert_eq!(first.bytes().await.unwrap().len() as u64, 32 * MIB);
    // The transfer ended with its body: alice may start another.
    eventually(Duration::from_secs(2), "alice's slot freed", || async {
        get(&alice).await.unwrap().status() == StatusCode::OK
    })
    .await;
}
