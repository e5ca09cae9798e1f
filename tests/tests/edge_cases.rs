//! HTTP edge cases that real clients send (issue 11), each through the balancer and straight
//! to a node: If-Range with a date, ranges on empty files, malformed percent-encoding and
//! base64, and browser or curl forms with empty file inputs and RFC 8187 filenames.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use speedbox_tests::client::{error_of, fetch_bytes, file_url, list, put};
use speedbox_tests::{data, Cluster};

async fn cluster() -> Cluster {
    Cluster::builder().nodes(1).balancer(true).start().await
}

/// Every case runs against both: `(label, base URL)`.
fn bases(c: &Cluster) -> [(&'static str, String); 2] {
    [("balancer", c.balancer_url()), ("node", c.node_url(0))]
}

async fn last_modified(c: &Cluster, url: &str) -> String {
    let resp = c.http.head(url).send().await.unwrap();
    resp.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn if_range_date_after_a_same_second_replacement_gets_the_whole_new_file() {
    let c = cluster().await;
    for (via, base) in bases(&c) {
        let name = format!("ir-{via}.bin");
        let url = file_url(&base, &name);
        let (old, new) = (data::bytes(1, 4000), data::bytes(2, 4000));
        // Revision A is fetched, then replaced within the same second (retried if the
        // second ticked over in between), so both carry the same Last-Modified.
        let date = loop {
            put(&c, &base, &name, old.clone()).await;
            let a = last_modified(&c, &url).await;
            put(&c, &base, &name, new.clone()).await;
            if last_modified(&c, &url).await == a {
                break a;
            }
        };
        let resp = c
            .http
            .get(&url)
            .header("range", "bytes=2000-")
            .header("if-range", &date)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{via}");
        assert_eq!(
            &resp.bytes().await.unwrap()[..],
            &new[..],
            "{via}: not spliced"
        );
    }
}

/// A date is weak however old (RFC 9110 §8.8.2.2: the node cannot know no other revision
/// shared its second), so it gets the whole file; the ETag resumes with 206.
#[tokio::test]
async fn if_range_with_an_old_date_gets_200_and_the_etag_gets_206() {
    let c = cluster().await;
    let content = data::bytes(3, 5000);
    put(&c, &c.node_url(0), "old.bin", content.clone()).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (via, base) in bases(&c) {
        let url = file_url(&base, "old.bin");
        let head = c.http.head(&url).send().await.unwrap();
        let etag = head.headers()["etag"].to_str().unwrap().to_string();
        let date = head.headers()["last-modified"]
            .to_str()
            .unwrap()
            .to_string();
        let ranged = |validator: String| {
            c.http
                .get(&url)
                .header("range", "bytes=1000-1999")
                .header("if-range", validator)
                .send()
        };
        let resp = ranged(date).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{via}: date");
        assert_eq!(&resp.bytes().await.unwrap()[..], &content[..], "{via}");
        let resp = ranged(etag).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{via}: etag");
        assert_eq!(resp.headers()["content-range"], "bytes 1000-1999/5000");
        assert_eq!(&resp.bytes().await.unwrap()[..], &content[1000..2000]);
    }
}

/// RFC 9110 §14.1.1: on a zero-length file only a non-zero suffix is satisfiable.
#[tokio::test]
async fn ranges_on_an_empty_file() {
    let c = cluster().await;
    put(&c, &c.node_url(0), "empty.bin", vec![]).await;
    for (via, base) in bases(&c) {
        let url = file_url(&base, "empty.bin");
        for (range, status) in [
            ("bytes=-1", StatusCode::OK),
            ("bytes=-100", StatusCode::OK),
            ("bytes=0-", StatusCode::RANGE_NOT_SATISFIABLE),
            ("bytes=0-0", StatusCode::RANGE_NOT_SATISFIABLE),
            ("bytes=-0", StatusCode::RANGE_NOT_SATISFIABLE),
        ] {
            let resp = c
                .http
                .get(&url)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), status, "{via} {range}");
            if status == StatusCode::OK {
                assert_eq!(resp.headers()["content-length"], "0", "{via} {range}");
                assert!(!resp.headers().contains_key("content-range"));
                assert!(resp.bytes().await.unwrap().is_empty());
            } else {
                assert_eq!(
                    resp.headers()["content-range"],
                    "bytes */0",
                    "{via} {range}"
                );
            }
        }
    }
}

#[tokio::test]
async fn malformed_percent_encoding_is_400_on_every_route() {
    let c = cluster().await;
    for (via, base) in bases(&c) {
        for bad in ["%ZZbad", "bad%", "%4", "a%4Gb", "%"] {
            let mut requests = vec![];
            for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
                requests.push((method, format!("{base}/files/{bad}")));
            }
            for query in ["download?filename=", "files?prefix=", "files?after="] {
                requests.push((Method::GET, format!("{base}/{query}{bad}")));
            }
            for (method, url) in requests {
                let resp = c
                    .http
                    .request(method.clone(), &url)
                    .body("x")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    StatusCode::BAD_REQUEST,
                    "{via} {method} {url}"
                );
                if method != Method::HEAD {
                    let error = error_of(resp).await;
                    assert!(error.contains("percent-encoding"), "{via} {url}: {error}");
                }
            }
        }
        // Nothing was stored under a literal name by the PUTs.
        let names = list(&c, &base, "").await.names;
        assert!(names.is_empty(), "{via}: {names:?}");
    }
}

#[tokio::test]
async fn tus_metadata_with_bad_base64_is_400() {
    let c = cluster().await;
    for (via, base) in bases(&c) {
        for metadata in ["filename !!!", "filename dmlkZW8ubXA", "filename dmlk ZW8="] {
            let resp = c
                .http
                .post(format!("{base}/uploads"))
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "5")
                .header("upload-metadata", metadata)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{via} {metadata}");
            assert!(error_of(resp).await.contains("base64"), "{via} {metadata}");
        }
    }
}

const BOUNDARY: &str = "----speedbox-edge-boundary";

/// A multipart/form-data body with each part's Content-Disposition written out verbatim,
/// as browsers and curl send it (reqwest would normalise it).
fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (disposition, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: ").as_bytes());
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_form(c: &Cluster, base: &str, body: Vec<u8>) -> reqwest::Response {
    c.http
        .post(format!("{base}/upload"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_form_with_an_empty_file_input_stores_the_real_file() {
    let c = cluster().await;
    let content = data::bytes(4, 700_000);
    for (via, base) in bases(&c) {
        let real = format!(r#"form-data; name="doc"; filename="real-{via}.bin""#);
        let body = form(&[
            (r#"form-data; name="title""#, b"holiday"),
            (r#"form-data; name="photo"; filename="""#, b""),
            (&real, &content),
        ]);
        let resp = post_form(&c, &base, body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{via}");
        let reply: Value = resp.json().await.unwrap();
        assert_eq!(reply["files"][0]["name"], format!("real-{via}.bin"));
        assert_eq!(reply["files"].as_array().unwrap().len(), 1);
        assert_eq!(
            reply["skipped"],
            json!([{"field": "photo", "reason": "empty filename"}])
        );
        let got = fetch_bytes(&c, &base, &format!("real-{via}.bin")).await;
        assert_eq!(data::sha256_of(&got), data::sha256_of(&content), "{via}");

        // Only empty file inputs: nothing to store, and the 400 says why.
        let body = form(&[
            (r#"form-data; name="a"; filename="""#, b""),
            (r#"form-data; name="b"; filename="""#, b""),
        ]);
        let resp = post_form(&c, &base, body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{via}");
        let error = error_of(resp).await;
        assert!(error.contains("empty filename"), "{via}: {error}");
    }
}

/// RFC 6266 §4.3 / RFC 8187: `filename*` wins over `filename`; parameter names are
/// case-insensitive.
#[tokio::test]
async fn extended_and_mixed_case_filenames_in_forms() {
    let c = cluster().await;
    for (i, (via, base)) in bases(&c).into_iter().enumerate() {
        let content = data::bytes(5 + i as u64, 3000);
        let dir = format!("{via}/"); // a directory per route keeps the names apart
        let extended = format!(
            r#"form-data; name="f"; filename*=UTF-8''{via}%2Fna%C3%AFve.txt; filename="naive.txt""#
        );
        let resp = post_form(&c, &base, form(&[(&extended, &content)])).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{via}");
        let reply: Value = resp.json().await.unwrap();
        assert_eq!(reply["files"][0]["name"], format!("{via}/naïve.txt"));
        let got = fetch_bytes(&c, &base, &format!("{dir}na%C3%AFve.txt")).await;
        assert_eq!(got, content, "{via}");

        let mixed = format!(r#"form-data; Name="f"; FileName="{via}/Mixed.txt""#);
        let resp = post_form(&c, &base, form(&[(&mixed, &content)])).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{via}");
        let got = fetch_bytes(&c, &base, &format!("{dir}Mixed.txt")).await;
        assert_eq!(got, content, "{via}");
    }
}
