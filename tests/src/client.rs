//! The requests most tests make, each written once: store a file, read it back whole and
//! check it against the digest the node recorded, list files, read the balancer's view of
//! the cluster, and count what the nodes left in the database. `base` is a node's or the
//! balancer's URL; `name` is a file name as it goes in the path (percent-encoded where it
//! needs to be).

use std::time::Duration;

use bson::doc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Body, Response, StatusCode};
use serde_json::Value;

use crate::{data, eventually, Cluster};

/// `s` with every byte but RFC 3986's unreserved characters (§2.3) percent-encoded: a query
/// value, or one segment of a path.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `{base}/files/{name}`.
pub fn file_url(base: &str, name: &str) -> String {
    format!("{base}/files/{name}")
}

/// Request headers from `(name, value)` pairs; a name may repeat.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// `PUT` with `headers`, the response whatever it is (for preconditions and refusals).
pub async fn put_with(
    c: &Cluster,
    base: &str,
    name: &str,
    body: impl Into<Body>,
    h: &[(&str, &str)],
) -> Response {
    c.http
        .put(file_url(base, name))
        .headers(headers(h))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `PUT` that must store the file: asserts `201` and returns what the node answered
/// (`id`, `length`, `sha256`, …).
pub async fn put(c: &Cluster, base: &str, name: &str, body: impl Into<Body>) -> Value {
    let resp = put_with(c, base, name, body, &[]).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "PUT {name}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("PUT {name}: {e}: {text}"))
}

/// `GET` with `headers`, the response whatever it is.
pub async fn get_with(c: &Cluster, base: &str, name: &str, h: &[(&str, &str)]) -> Response {
    c.http
        .get(file_url(base, name))
        .headers(headers(h))
        .send()
        .await
        .unwrap()
}

/// `GET`, the response whatever it is.
pub async fn get(c: &Cluster, base: &str, name: &str) -> Response {
    get_with(c, base, name, &[]).await
}

/// The text of `GET url` (any route: `/metrics`, a listing), whatever its status.
pub async fn text(c: &Cluster, url: &str) -> String {
    c.http.get(url).send().await.unwrap().text().await.unwrap()
}

/// A whole-file `GET` that was checked: `200`, and the ETag the node recorded is the
/// SHA-256 of the bytes that arrived.
pub struct Fetched {
    pub headers: HeaderMap,
    pub len: u64,
    pub sha256: String,
}

/// GETs `name` to its end without keeping it (files of any size); see [`Fetched`].
pub async fn fetch(c: &Cluster, base: &str, name: &str) -> Fetched {
    let resp = get(c, base, name).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {name}");
    let headers = resp.headers().clone();
    let (len, sha256) = data::drain(resp).await.expect("the whole body");
    assert_eq!(
        headers["etag"],
        format!("\"{sha256}\"").as_str(),
        "the recorded digest of {name} is that of its bytes"
    );
    Fetched {
        headers,
        len,
        sha256,
    }
}

/// GETs `name` whole and returns its bytes (small files), with the same checks as [`fetch`].
pub async fn fetch_bytes(c: &Cluster, base: &str, name: &str) -> Vec<u8> {
    let resp = get(c, base, name).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {name}");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let bytes = resp.bytes().await.expect("the whole body").to_vec();
    assert_eq!(
        etag,
        format!("\"{}\"", data::sha256_of(&bytes)),
        "the recorded digest of {name} is that of its bytes"
    );
    bytes
}

/// `name` is exactly `want`: the bytes and ETag a GET serves, and every one of its chunks
/// (of `chunk_size` bytes) in the database. A listing and HEAD alone can look fine while
/// the bytes are gone.
pub async fn assert_intact(c: &Cluster, base: &str, name: &str, want: &[u8], chunk_size: u64) {
    let got = fetch_bytes(c, base, name).await;
    assert_eq!(got.len(), want.len(), "length of {name}");
    assert!(got[..] == want[..], "bytes of {name} differ");
    let file_id = c
        .db()
        .await
        .collection::<bson::Document>("fs.names")
        .find_one(bson::doc! {"_id": name})
        .await
        .unwrap()
        .expect("name")
        .get_object_id("file_id")
        .unwrap();
    let chunks = count(c, "fs.chunks", bson::doc! {"files_id": file_id}).await;
    assert_eq!(
        chunks,
        (want.len() as u64).div_ceil(chunk_size),
        "chunks of {name}"
    );
}

/// One page of `GET {base}/files?{query}`.
#[derive(Debug)]
pub struct Listing {
    pub names: Vec<String>,
    pub next_after: Option<String>,
}

/// Lists files (`query` such as `prefix=a%2F&limit=2`, or empty); asserts `200`.
pub async fn list(c: &Cluster, base: &str, query: &str) -> Listing {
    let resp = c
        .http
        .get(format!("{base}/files?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "list {query}");
    let v: Value = resp.json().await.unwrap();
    Listing {
        names: v["files"]
            .as_array()
            .unwrap_or_else(|| panic!("no files array: {v}"))
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect(),
        next_after: v["next_after"].as_str().map(str::to_string),
    }
}

/// The `error` of a JSON error response.
pub async fn error_of(resp: Response) -> String {
    let body: Value = resp.json().await.expect("JSON error body");
    body["error"].as_str().expect("error field").to_string()
}

/// The balancer's `/_cluster` document.
pub async fn cluster_status(c: &Cluster) -> Value {
    let resp = c
        .http
        .get(format!("{}/_cluster", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// The index of the node the balancer counts a request in flight on (a test's one
/// transfer), waiting up to 10 s for one.
pub async fn busy_node(c: &Cluster) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = cluster_status(c).await;
        let busy = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .position(|n| n["in_flight"] != 0);
        if let Some(i) = busy {
            return i;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node has a request in flight: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `up`, `down`, `removed-draining`, or `absent` when the balancer does not list node `id`.
pub async fn node_state(c: &Cluster, id: &str) -> String {
    let status = cluster_status(c).await;
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map_or("absent".into(), |n| n["state"].as_str().unwrap().to_owned())
}

/// Waits (up to 10 s) until the balancer reports node `id` in state `want`.
pub async fn wait_state(c: &Cluster, id: &str, want: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{id} {want}"),
        || async move { node_state(c, id).await == want },
    )
    .await;
}

/// How many documents of `collection` (`fs.chunks`, `fs.files`, …) match `filter`.
pub async fn count(c: &Cluster, collection: &str, filter: bson::Document) -> u64 {
    c.db()
        .await
        .collection::<bson::Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

/// Puts the database into the state a finisher's crash right after an upload's last offset
/// leaves: upload `id` complete, unpublished (no files document, no name `name`), lease
/// released. The upload must have been published first.
pub async fn strand(c: &Cluster, id: &str, name: &str) {
    let db = c.db().await;
    let file_id = db
        .collection::<bson::Document>("fs.names")
        .find_one_and_delete(doc! {"_id": name})
        .await
        .unwrap()
        .unwrap()
        .get_object_id("file_id")
        .unwrap();
    db.collection::<bson::Document>("fs.files")
        .delete_one(doc! {"_id": file_id})
        .await
        .unwrap();
    db.collection::<bson::Document>("fs.tus")
        .update_one(
            doc! {"_id": id},
            doc! {"$set": {"done": false, "lease_until": null}},
        )
        .await
        .unwrap();
}
