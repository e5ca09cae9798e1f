//! Access control (issue 13), real processes: every node checks every request itself, the
//! same through the balancer and direct; tokens that prove nothing are 401, tokens that do
//! not cover the request 403, and nothing a refused request sent is stored.

use std::time::Duration;

use reqwest::StatusCode;
use speedbox_common::auth::{now_secs, Claims};
use speedbox_tests::auth::{auth_toml, bearer, claims, mint, mint_with, K1};
use speedbox_tests::client::{error_of, file_url, put_with};
use speedbox_tests::{eventually, tus, Cluster};

const K2: &str = "k2-fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765432";

async fn start(nodes: usize, anonymous: &str) -> Cluster {
    Cluster::builder()
        .nodes(nodes)
        .balancer(true)
        // A trailing newline, as editors leave it: not part of the key.
        .file("secrets/k1.key", format!("{K1}\n"))
        .file("secrets/k2.key", K2)
        .extra_toml(&auth_toml(&["k1"], anonymous))
        .start()
        .await
}

fn now() -> u64 {
    now_secs()
}

/// GETs of one file at every base a client may use: the balancer and each node directly.
struct Everywhere {
    http: reqwest::Client,
    urls: Vec<String>,
}

impl Everywhere {
    fn new(c: &Cluster, nodes: usize, name: &str) -> Self {
        let urls = bases(c, nodes).iter().map(|b| file_url(b, name)).collect();
        Everywhere {
            http: c.http.clone(),
            urls,
        }
    }

    /// Whether every base answers the GET with `authorization` by `want`.
    async fn all(&self, authorization: &str, want: StatusCode) -> bool {
        for url in &self.urls {
            let resp = self
                .http
                .get(url)
                .header("authorization", authorization)
                .send();
            if resp.await.unwrap().status() != want {
                return false;
            }
        }
        true
    }

    /// Until every base answers `want`; fails the test with `what` after `within`.
    async fn wait(&self, authorization: &str, want: StatusCode, within: Duration, what: &str) {
        eventually(within, what, || self.all(authorization, want)).await;
    }
}

/// Every base a client may use: the balancer and each node directly.
fn bases(c: &Cluster, nodes: usize) -> Vec<String> {
    std::iter::once(c.balancer_url())
        .chain((0..nodes).map(|i| c.node_url(i)))
        .collect()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_everywhere() {
    let c = start(2, "").await;
    let admin = mint(&claims("root", "read write delete admin", ""));
    let r = put_with(
        &c,
        &c.balancer_url(),
        "a.txt",
        "hello",
        &[("authorization", &bearer(&admin))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let expired = mint(&Claims {
        exp: now() - 120,
        ..claims("a", "read", "")
    });
    let early = mint(&Claims {
        nbf: Some(now() + 600),
        ..claims("a", "read", "")
    });
    let other_key = mint_with("k1", K2, &claims("a", "read", ""));
    let unknown_kid = mint_with("k9", K1, &claims("a", "read", ""));
    // A narrow token's payload swapped for a wider one's, its signature kept.
    let narrow = mint(&claims("a", "read", "b/"));
    let wide = mint(&claims("a", "read", ""));
    let part = |t: &str, i: usize| t.split('.').nth(i).unwrap().to_string();
    let tampered = format!(
        "{}.{}.{}",
        part(&narrow, 0),
        part(&wide, 1),
        part(&narrow, 2)
    );
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token is required"),
        ("not a JWT", Some(bearer("abc.def.ghi")), "malformed"),
        ("basic auth", Some("Basic dXNlcjpwYXNz".into()), "Bearer"),
        ("expired", Some(bearer(&expired)), "expired"),
        ("not yet valid", Some(bearer(&early)), "not valid yet"),
        (
            "signed by another secret",
            Some(bearer(&other_key)),
            "signature",
        ),
        (
            "unknown key",
            Some(bearer(&unknown_kid)),
            "unknown or revoked key",
        ),
        ("tampered", Some(bearer(&tampered)), "invalid token"),
    ];
    for base in bases(&c, 2) {
        for (what, auth, says) in &cases {
            let mut req = c.http.get(file_url(&base, "a.txt"));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what} at {base}");
            let challenge = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(
                challenge.starts_with("Bearer realm=\"speedbox\""),
                "{challenge}"
            );
            let msg = error_of(resp).await;
            assert!(msg.contains(says), "{what} at {base}: {msg}");
            if let Some(auth) = auth {
                assert!(
                    !msg.contains(auth.trim_start_matches("Bearer ")),
                    "{what} echoes the token"
                );
            }
        }
        // Open routes stay open; a preflight allows Authorization.
        let health = c.http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{base}");
        let preflight = c
            .http
            .request(reqwest::Method::OPTIONS, file_url(&base, "a.txt"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), StatusCode::NO_CONTENT, "{base}");
        let allowed = preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap();
        assert!(allowed.contains("authorization"), "{allowed}");
        // The same valid token works everywhere, as a header or in the query.
        let resp = c
            .http
            .get(format!("{}?token={admin}", file_url(&base, "a.txt")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{base}");
        assert_eq!(resp.text().await.unwrap(), "hello");
    }
}

#[tokio::test]
async fn scope_and_prefix_decide_every_route_and_a_refusal_stores_nothing() {
    let c = start(1, "").await;
    let admin = bearer(&mint(&claims("root", "read write delete admin", "")));
    let alice = bearer(&mint(&claims("alice", "read write", "alice/")));
    for base in bases(&c, 1) {
        let put = |name: &'static str, who: &str, body: &'static str| {
            let who = who.to_string();
            let base = base.clone();
            let c = &c;
            async move {
                put_with(c, &base, name, body, &[("authorization", &who)])
                    .await
                    .status()
            }
        };
        assert_eq!(put("bob/b.txt", &admin, "bob's").await, StatusCode::CREATED);
        assert_eq!(
            put("alice/a.txt", &alice, "alice's").await,
            StatusCode::CREATED
        );
        // Outside the prefix: 403 and nothing stored or replaced.
        assert_eq!(
            put("bob/b.txt", &alice, "overwritten").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            put("bob/new.txt", &alice, "new").await,
            StatusCode::FORBIDDEN
        );
        let get = |name: &'static str, who: &str| {
            c.http
                .get(file_url(&base, name))
                .header("authorization", who.to_string())
                .send()
        };
        let resp = get("bob/b.txt", &admin).await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "bob's");
        assert_eq!(
            get("bob/new.txt", &admin).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("bob/b.txt", &alice).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        let download = c
            .http
            .get(format!("{base}/download?filename=bob%2Fb.txt"))
            .header("authorization", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(download.status(), StatusCode::FORBIDDEN);
        let msg = error_of(download).await;
        assert!(msg.contains("\"alice/\""), "{msg}");
        // No delete scope: 403, the file stays.
        let del = c
            .http
            .delete(file_url(&base, "alice/a.txt"))
            .header("authorization", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(del.status(), StatusCode::FORBIDDEN);
        assert!(error_of(del).await.contains("delete scope"));
        assert_eq!(
            get("alice/a.txt", &alice).await.unwrap().status(),
            StatusCode::OK
        );
        // A listing shows only what the token covers, whatever prefix it asks for.
        for query in ["", "prefix=b", "prefix=alice%2F"] {
            let resp = c
                .http
                .get(format!("{base}/files?{query}"))
                .header("authorization", &alice)
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = resp.json().await.unwrap();
            let names: Vec<&str> = v["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            let want: &[&str] = if query == "prefix=b" {
                &[]
            } else {
                &["alice/a.txt"]
            };
            assert_eq!(names, want, "{query}");
        }
        // A form with a part outside the prefix is refused at that part.
        let form = reqwest::multipart::Form::new().part(
            "f",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("bob/form.txt"),
        );
        let resp = c
            .http
            .post(format!("{base}/upload"))
            .header("authorization", &alice)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            get("bob/form.txt", &admin).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        // Clean up for the next base.
        for name in ["bob/b.txt", "alice/a.txt"] {
            let resp = c
                .http
                .delete(file_url(&base, name))
                .header("authorization", &admin)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        }
    }
}

#[tokio::test]
async fn max_bytes_caps_every_kind_of_upload() {
    let c = start(1, "").await;
    let admin = bearer(&mint(&claims("root", "read admin", "")));
    let small = bearer(&mint(&Claims {
        max_bytes: Some(1000),
        ..claims("s", "read write", "")
    }));
    let base = c.balancer_url();
    let over = vec![7u8; 1001];
    let resp = put_with(&c, &base, "big", over.clone(), &[("authorization", &small)]).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without Content-Length the limit holds while streaming.
    let chunks = futures::stream::iter(
        over.chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = c
        .http
        .put(file_url(&base, "big-chunked"))
        .header("authorization", &small)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for name in ["big", "big-chunked"] {
        let resp = c
            .http
            .get(file_url(&base, name))
            .header("authorization", &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{name} was stored");
    }
    let resp = put_with(
        &c,
        &base,
        "fits",
        vec![7u8; 1000],
        &[("authorization", &small)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tus = c
        .http
        .post(format!("{base}/uploads"))
        .header("authorization", &small)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "1001")
        .send()
        .await
        .unwrap();
    assert_eq!(tus.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_tus_upload_belongs_to_its_creator() {
    let c = start(1, "").await;
    let alice = bearer(&mint(&claims("alice", "read write", "")));
    let mallory = bearer(&mint(&claims("mallory", "read write delete", "")));
    let admin = bearer(&mint(&claims("root", "read write delete admin", "")));
    let base = c.balancer_url();
    let created = c
        .http
        .post(format!("{base}/uploads"))
        .header("authorization", &alice)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "6")
        .header("upload-metadata", "filename dHVzLnR4dA==")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let path = &location[location.find("/uploads/").unwrap()..];
    let url = format!("{base}{path}");
    // A tus request to the upload, as `who` (or with no token).
    let tus = |method: reqwest::Method, who: Option<&str>| {
        let req = c
            .http
            .request(method, &url)
            .header("tus-resumable", "1.0.0");
        match who {
            Some(who) => req.header("authorization", who),
            None => req,
        }
    };
    let patch = |who: String, offset: u64, body: &'static [u8]| {
        tus(reqwest::Method::PATCH, Some(&who))
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
            .body(body)
            .send()
    };
    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status() };
    // An upload URL alone is not a capability.
    let head = tus(reqwest::Method::HEAD, Some(&mallory));
    assert_eq!(status(head).await, StatusCode::FORBIDDEN);
    assert_eq!(
        patch(mallory.clone(), 0, b"evil!!").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let del = tus(reqwest::Method::DELETE, Some(&mallory));
    assert_eq!(status(del).await, StatusCode::FORBIDDEN);
    let no_token = tus(reqwest::Method::HEAD, None);
    assert_eq!(status(no_token).await, StatusCode::UNAUTHORIZED);
    // Its creator continues it; an admin may look.
    assert_eq!(
        patch(alice.clone(), 0, b"abc").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let head = tus(reqwest::Method::HEAD, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], "3");
    assert_eq!(
        patch(alice.clone(), 3, b"def").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let file = c
        .http
        .get(file_url(&base, "tus.txt"))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(file.text().await.unwrap(), "abcdef");
}

#[tokio::test]
async fn anonymous_scopes_open_reading_only() {
    let c = start(1, "\"read\"").await;
    let writer = bearer(&mint(&claims("w", "write", "")));
    let base = c.balancer_url();
    let resp = put_with(
        &c,
        &base,
        "public.txt",
        "for everyone",
        &[("authorization", &writer)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = c
        .http
        .get(file_url(&base, "public.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "for everyone");
    let resp = put_with(&c, &base, "public.txt", "defaced", &[]).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A bad token is refused even where no token would do: the client learns it is bad.
    let resp = c
        .http
        .get(file_url(&base, "public.txt"))
        .header("authorization", "Bearer x.y.z")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_rotate_and_a_removed_key_is_revoked_on_every_node_by_a_live_edit() {
    let mut c = start(2, "").await;
    let old = bearer(&mint(&claims("a", "read write", "")));
    let new = bearer(&mint_with("k2", K2, &claims("a", "read write", "")));
    let base = c.balancer_url();
    let resp = put_with(&c, &base, "r.txt", "rotating", &[("authorization", &old)]).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let everywhere = Everywhere::new(&c, 2, "r.txt");
    assert!(everywhere.all(&new, StatusCode::UNAUTHORIZED).await);
    // Rotation: k2 signs new tokens, k1's still work.
    c.set_extra_toml(&auth_toml(&["k2", "k1"], ""));
    everywhere
        .wait(
            &new,
            StatusCode::OK,
            Duration::from_secs(5),
            "k2 accepted everywhere",
        )
        .await;
    assert!(everywhere.all(&old, StatusCode::OK).await);
    // Removal: k1's tokens are revoked.
    c.set_extra_toml(&auth_toml(&["k2"], ""));
    everywhere
        .wait(
            &old,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(5),
            "k1 refused everywhere",
        )
        .await;
    assert!(everywhere.all(&new, StatusCode::OK).await);
    // A replaced key file counts as a new secret: k2's old tokens die with it.
    c.write_file("secrets/k2.key", K1.as_bytes());
    everywhere
        .wait(
            &new,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(5),
            "old k2 secret refused everywhere",
        )
        .await;
    // A key listed before its file exists is taken as soon as the file appears.
    const K3: &str = "k3-00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    c.set_extra_toml(&auth_toml(&["k3", "k2"], ""));
    let third = bearer(&mint_with("k3", K3, &claims("a", "read", "")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(everywhere.all(&third, StatusCode::UNAUTHORIZED).await);
    c.write_file("secrets/k3.key", K3.as_bytes());
    everywhere
        .wait(
            &third,
            StatusCode::OK,
            Duration::from_secs(5),
            "k3 accepted everywhere once its file exists",
        )
        .await;
    // A broken edit keeps the running keys.
    c.write_file("secrets/k2.key", b"short");
    let fresh = bearer(&mint_with("k2", K1, &claims("a", "read", "")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(everywhere.all(&fresh, StatusCode::OK).await);
}

#[tokio::test]
async fn revoked_tokens_and_principals_are_refused_on_every_node_within_a_second() {
    let c = start(2, "").await;
    let admin = bearer(&mint(&claims("root", "admin", "")));
    let writer = bearer(&mint(&claims("w", "write", "")));
    let with_jti = |sub: &str, jti: &str| {
        bearer(&mint(&Claims {
            jti: Some(jti.into()),
            ..claims(sub, "read write", "")
        }))
    };
    let (a1, a2) = (with_jti("alice", "a-1"), with_jti("alice", "a-2"));
    let bob = with_jti("bob", "b-1");
    let base = c.balancer_url();
    assert_eq!(
        put_with(&c, &base, "rev.txt", "x", &[("authorization", &writer)])
            .await
            .status(),
        StatusCode::CREATED
    );
    let everywhere = Everywhere::new(&c, 2, "rev.txt");
    let post = |who: &str, body: &str| {
        c.http
            .post(format!("{}/_auth/revoke", c.node_url(0)))
            .header("authorization", who.to_string())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // Only an admin revokes; a malformed request is 400 and revokes nothing.
    assert_eq!(
        post(&a1, r#"{"jti": "a-2"}"#).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    for bad in [
        "",
        "{}",
        r#"{"jti": "x", "sub": "y"}"#,
        r#"{"who": "x"}"#,
        r#"{"jti": ""}"#,
    ] {
        assert_eq!(
            post(&admin, bad).await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    assert!(everywhere.all(&a2, StatusCode::OK).await);
    // One token by its jti, taken by node 1: refused everywhere, its sub's other token not.
    let resp = post(&admin, r#"{"jti": "a-1"}"#).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (v["revoked"]["jti"].as_str(), v["revoked"]["by"].as_str()),
        (Some("a-1"), Some("root"))
    );
    everywhere
        .wait(
            &a1,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(3),
            "a-1 refused on every node",
        )
        .await;
    let refused = c
        .http
        .get(file_url(&c.node_url(1), "rev.txt"))
        .header("authorization", &a1)
        .send()
        .await
        .unwrap();
    assert!(error_of(refused).await.contains("revoked"));
    assert!(everywhere.all(&a2, StatusCode::OK).await);
    // A whole principal: every token it holds now; a token minted afterwards works.
    let resp = c
        .http
        .post(format!("{base}/_auth/revoke"))
        .header("authorization", &admin)
        .body(r#"{"sub": "bob"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    everywhere
        .wait(
            &bob,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(3),
            "bob refused on every node",
        )
        .await;
    assert!(everywhere.all(&a2, StatusCode::OK).await);
    tokio::time::sleep(Duration::from_millis(1100)).await; // iat has whole seconds
    let bob_again = bearer(&mint(&claims("bob", "read", "")));
    assert!(everywhere.all(&bob_again, StatusCode::OK).await);
    // The list, for an admin only.
    let listed = c
        .http
        .get(format!("{base}/_auth/revoked"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = listed.json().await.unwrap();
    let mut got: Vec<String> = v["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}{}",
                r["jti"].as_str().unwrap_or(""),
                r["sub"].as_str().unwrap_or("")
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, ["a-1", "bob"]);
    let denied = c
        .http
        .get(format!("{base}/_auth/revoked"))
        .header("authorization", &a2)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    // A retried revocation keeps one document; one that arrives after a newer revocation
    // of the same sub (its answer was lost, the client sent it again much later) never moves
    // the revocation's time back.
    let revoked = c.db().await.collection::<bson::Document>("fs.revoked");
    let later = now() as i64 + 3600;
    let newer = bson::doc! {"_id": "sub:carol", "sub": "carol", "revoked_at": later, "by": "root"};
    revoked.insert_one(newer).await.unwrap();
    for body in [
        r#"{"sub": "carol"}"#,
        r#"{"sub": "carol"}"#,
        r#"{"jti": "a-1"}"#,
    ] {
        assert_eq!(post(&admin, body).await.unwrap().status(), StatusCode::OK);
    }
    let carol = revoked
        .find_one(bson::doc! {"_id": "sub:carol"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol.get_i64("revoked_at").unwrap(), later);
    assert_eq!(revoked.count_documents(bson::doc! {}).await.unwrap(), 3);
}

#[tokio::test]
async fn an_application_backend_mints_tokens_over_http() {
    let c = start(1, "").await;
    let admin = bearer(&mint(&claims("backend", "admin", "")));
    let writer = bearer(&mint(&claims("w", "write", "")));
    let base = c.balancer_url();
    let mint_over_http = |who: String, body: &'static str| {
        c.http
            .post(format!("{base}/_auth/tokens"))
            .header("authorization", who)
            .body(body)
            .send()
    };
    let body = r#"{"sub": "app-user", "scope": "read,write", "prefix": "u/", "max_bytes": 10, "ttl_secs": 60}"#;
    assert_eq!(
        mint_over_http(writer.clone(), body).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    for bad in [
        r#"{"sub": "x"}"#,
        r#"{"sub": "x", "scope": "read root"}"#,
        r#"{"sub": "x", "scope": ""}"#,
        r#"{"sub": "x", "scope": "read", "ttl_secs": 0}"#,
        r#"{"sub": "x", "scope": "read", "ttl_secs": 99999999}"#,
        r#"{"sub": "x", "scope": "read", "role": "god"}"#,
        "not json",
    ] {
        let resp = mint_over_http(admin.clone(), bad).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let resp = mint_over_http(admin.clone(), body).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: serde_json::Value = resp.json().await.unwrap();
    let user = bearer(v["token"].as_str().unwrap());
    let jti = v["jti"].as_str().unwrap().to_string();
    let exp = v["exp"].as_u64().unwrap();
    assert!((now() + 55..=now() + 60).contains(&exp), "{exp}");
    let put = |name: &'static str, body: &'static str| {
        c.http
            .put(file_url(&base, name))
            .header("authorization", user.clone())
            .body(body)
            .send()
    };
    let status = |r: reqwest::Result<reqwest::Response>| r.unwrap().status();
    assert_eq!(status(put("u/a.txt", "12345").await), StatusCode::CREATED);
    assert_eq!(status(put("v/a.txt", "12345").await), StatusCode::FORBIDDEN);
    let big = put("u/big.txt", "12345678901").await;
    assert_eq!(status(big), StatusCode::PAYLOAD_TOO_LARGE);
    // Its jti revokes it.
    let resp = c
        .http
        .post(format!("{base}/_auth/revoke"))
        .header("authorization", &admin)
        .body(format!(r#"{{"jti": "{jti}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    eventually(
        Duration::from_secs(3),
        "the minted token refused",
        || async { status(put("u/b.txt", "1").await) == StatusCode::UNAUTHORIZED },
    )
    .await;
}

/// tuspy and tus-js-client work with the token as a header; without one they are refused.
#[tokio::test]
async fn tus_clients_upload_with_a_token_header() {
    let c = start(1, "").await;
    let uploader = bearer(&mint(&claims("uploader", "read write", "")));
    let file = c.dir().join("tus-client.bin");
    let content = speedbox_tests::data::bytes(41, 3 << 20);
    std::fs::write(&file, &content).unwrap();
    let endpoint = format!("{}/uploads", c.balancer_url());
    for (client, name) in [("tuspy", "tuspy.bin"), ("tus-js-client", "tus-js.bin")] {
        let command = || match client {
            "tuspy" => tus::tuspy(&endpoint, &file, name, 1 << 20),
            _ => tus::tus_js(&endpoint, &file, name, 1 << 20),
        };
        let mut with_token = command();
        with_token.env("TUS_AUTHORIZATION", &uploader);
        tus::run_ok(with_token).await;
        let got = c
            .http
            .get(file_url(&c.balancer_url(), name))
            .header("authorization", &uploader)
            .send()
            .await
            .unwrap();
        assert_eq!(got.bytes().await.unwrap().to_vec(), content, "{client}");
        let mut without = command();
        without.env_remove("TUS_AUTHORIZATION");
        let out = without.output().await.unwrap();
        assert!(!out.status.success(), "{client} uploaded without a token");
    }
}

/// With `Expect: 100-continue`, a refused upload is refused before its body is sent.
#[tokio::test]
async fn a_refused_upload_is_refused_before_its_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = start(1, "").await;
    let reader = bearer(&mint(&claims("r", "read", "")));
    for (who, want) in [(None, "401"), (Some(reader.as_str()), "403")] {
        let mut conn = tokio::net::TcpStream::connect(c.balancer_addr())
            .await
            .unwrap();
        let auth = who.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
        let head = format!(
            "PUT /files/big.bin HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000000\r\n\
             Expect: 100-continue\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        // Not a byte of the body: the answer must come without it.
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer before the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with(&format!("HTTP/1.1 {want}")), "{answer}");
    }
}
