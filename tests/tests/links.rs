//! Signed links (issue 13), real processes: a link lets whoever holds it GET or PUT what it
//! covers until it expires, bound to method, path and expiry (never Host); 403 for a bad
//! signature or another path or method, 410 once expired; upload links cap the size and pin
//! the digest, and store nothing otherwise.

use reqwest::{StatusCode, Url};
use sha2::Digest;
use speedbox_common::auth::link::{self, LinkClaims};
use speedbox_common::auth::{now_secs, KeyRing};
use speedbox_tests::auth::{self, auth_toml, K1};
use speedbox_tests::client::{file_url, put_with};
use speedbox_tests::Cluster;

fn now() -> u64 {
    now_secs()
}

fn keys() -> KeyRing {
    auth::ring("k1", K1)
}

fn bearer(sub: &str, scope: &str, prefix: &str) -> String {
    auth::bearer(&auth::mint(&auth::claims(sub, scope, prefix)))
}

async fn start() -> Cluster {
    Cluster::builder()
        .nodes(1)
        .balancer(true)
        .file("secrets/k1.key", K1)
        .extra_toml(&auth_toml(&["k1"], ""))
        .start()
        .await
}

/// `POST /_auth/sign` as `who`: the status and the JSON answer.
async fn sign(c: &Cluster, who: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let resp = c
        .http
        .post(format!("{}/_auth/sign", c.balancer_url()))
        .header("authorization", who)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or_default())
}

/// PUTs each `(name, body)` through the balancer with `bearer`; each must be stored.
async fn store(c: &Cluster, bearer: &str, files: &[(&str, &str)]) {
    for &(name, body) in files {
        let auth = [("authorization", bearer)];
        let r = put_with(c, &c.balancer_url(), name, body.to_owned(), &auth).await;
        assert_eq!(r.status(), StatusCode::CREATED, "PUT {name}");
    }
}

async fn get(c: &Cluster, url: &str) -> (StatusCode, String) {
    let resp = c.http.get(url).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn a_download_link_opens_one_file_to_anyone_and_nothing_else() {
    let c = start().await;
    let admin = bearer("root", "read write delete", "");
    store(&c, &admin, &[("v/a.txt", "hello"), ("v/b.txt", "other")]).await;
    let reader = bearer("reader", "read", "v/");
    let (status, v) = sign(&c, &reader, serde_json::json!({"name": "v/a.txt"})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let url = v["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("/files/v/a.txt?sig="), "{url}");
    let exp = v["exp"].as_u64().unwrap();
    assert!(
        (now() + 890..=now() + 900).contains(&exp),
        "default 15 minutes: {exp}"
    );
    // No token needed, through the balancer or straight to a node: never bound to Host.
    for base in [c.balancer_url(), c.node_url(0)] {
        assert_eq!(
            get(&c, &format!("{base}{url}")).await,
            (StatusCode::OK, "hello".into())
        );
        let head = c.http.head(format!("{base}{url}")).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }
    let base = c.balancer_url();
    let sig = url.split("sig=").nth(1).unwrap();
    // Another path, another method, a tampered signature: 403.
    let other = format!("{base}/files/v/b.txt?sig={sig}");
    assert_eq!(get(&c, &other).await.0, StatusCode::FORBIDDEN);
    let longer = format!("{base}/files/v/a.txt2?sig={sig}");
    assert_eq!(get(&c, &longer).await.0, StatusCode::FORBIDDEN);
    let put = c
        .http
        .put(format!("{base}{url}"))
        .body("overwritten")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    let del = c.http.delete(format!("{base}{url}")).send().await.unwrap();
    assert_eq!(del.status(), StatusCode::FORBIDDEN);
    let mut tampered = sig.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = get(&c, &format!("{base}/files/v/a.txt?sig={tampered}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("does not verify") && !body.contains(&tampered),
        "{body}"
    );
    assert_eq!(
        get(&c, &format!("{base}{url}")).await.1,
        "hello",
        "nothing was changed"
    );
    // Expired: 410.
    let expired = LinkClaims {
        m: "GET".into(),
        p: "v/a.txt".into(),
        exp: now() - 60,
        sub: "reader".into(),
        iat: None,
        jti: None,
        max_bytes: None,
        sha256: None,
    };
    let old = link::sign(&keys(), &expired).unwrap();
    let (status, body) = get(&c, &format!("{base}/files/v/a.txt?sig={old}")).await;
    assert_eq!(
        (status, body.contains("expired")),
        (StatusCode::GONE, true),
        "{body}"
    );
    // A token signs only what it covers.
    let (status, _) = sign(&c, &reader, serde_json::json!({"name": "w/x.txt"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = sign(
        &c,
        &reader,
        serde_json::json!({"name": "v/up.bin", "method": "PUT"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let unauthenticated = c
        .http
        .post(format!("{base}/_auth/sign"))
        .json(&serde_json::json!({"name": "v/a.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    for bad in [
        serde_json::json!({"name": "v/a.txt", "method": "DELETE"}),
        serde_json::json!({"name": "v/a.txt", "ttl_secs": 0}),
        serde_json::json!({"name": "v/a.txt", "max_bytes": 5}),
        serde_json::json!({"name": ""}),
        serde_json::json!({"file": "v/a.txt"}),
    ] {
        let (status, v) = sign(&c, &reader, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
}

#[tokio::test]
async fn a_prefix_link_in_the_path_form_carries_over_to_relative_urls() {
    let c = start().await;
    let admin = bearer("root", "write", "");
    let files = [
        ("v/a.media/master.m3u8", "720p/0.ts\n"),
        ("v/a.media/720p/0.ts", "segment zero"),
        ("v/secret.txt", "not in the link"),
    ];
    store(&c, &admin, &files).await;
    let reader = bearer("player", "read", "");
    let (status, v) = sign(
        &c,
        &reader,
        serde_json::json!({"name": "v/a.media/", "ttl_secs": 120}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let path_url = v["path_url"].as_str().unwrap();
    assert!(
        path_url.starts_with("/s/") && path_url.ends_with("/files/v/a.media/"),
        "{path_url}"
    );
    let playlist = Url::parse(&format!("{}{path_url}master.m3u8", c.balancer_url())).unwrap();
    let (status, text) = get(&c, playlist.as_str()).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "720p/0.ts\n"));
    // What a player does with a relative URL in the playlist.
    let segment = playlist.join(text.trim()).unwrap();
    assert_eq!(
        get(&c, segment.as_str()).await,
        (StatusCode::OK, "segment zero".into())
    );
    let outside = playlist.join("../secret.txt").unwrap();
    assert_eq!(get(&c, outside.as_str()).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_upload_link_caps_the_size_pins_the_digest_and_stores_nothing_else() {
    let c = start().await;
    let admin = bearer("root", "read", "");
    let writer = bearer("uploader", "write", "up/");
    let body = b"0123456789".to_vec();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let (status, v) = sign(
        &c,
        &writer,
        serde_json::json!({"name": "up/f.bin", "method": "put", "max_bytes": 10, "sha256": sha}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let url = format!("{}{}", c.balancer_url(), v["url"].as_str().unwrap());
    let put = |b: Vec<u8>| c.http.put(&url).body(b).send();
    let stored = || async {
        c.http
            .get(file_url(&c.balancer_url(), "up/f.bin"))
            .header("authorization", &admin)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        put(b"01234567890".to_vec()).await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(stored().await.status(), StatusCode::NOT_FOUND);
    let wrong = put(b"0123456780".to_vec()).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(stored().await.status(), StatusCode::NOT_FOUND);
    // A client's own digest header, right for other bytes, cannot unpin it.
    use base64::Engine;
    let other = b"9876543210".to_vec();
    let other_sha = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&other));
    let sneaky = c
        .http
        .put(&url)
        .header("repr-digest", format!("sha-256=:{other_sha}:"))
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(sneaky.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        put(body.clone()).await.unwrap().status(),
        StatusCode::CREATED
    );
    let got = stored().await;
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);
    // The upload link reads nothing.
    assert_eq!(get(&c, &url).await.0, StatusCode::FORBIDDEN);
}
