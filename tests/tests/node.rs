//! The storage node's file API against a real SecantusDB: uploads, downloads, ranges,
//! conditional requests, listing, bad input, deletion and forms. What happens when uploads
//! break, nodes die or the database goes away is in `node_durability.rs`.

use bson::doc;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use speedbox_tests::client::{count, error_of, fetch, file_url, get, list, put};
use speedbox_tests::{data, Cluster};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn one_gib_round_trip_is_byte_identical() {
    let c = Cluster::builder().start().await;
    let node = c.node_url(0);
    let len = 1024 * MIB;
    let stored = put(&c, &node, "big/video.bin", data::body(1, len)).await;
    let expected = data::sha256(1, len);
    assert_eq!(stored["length"], len);
    assert_eq!(stored["sha256"], expected.as_str());

    let got = fetch(&c, &node, "big/video.bin").await;
    assert_eq!(got.headers["content-length"], len.to_string().as_str());
    assert_eq!((got.len, got.sha256), (len, expected));

    // A range across a chunk boundary deep inside the file.
    let cs = 255 * 1024;
    let (start, end) = (1000 * cs - 10, 1000 * cs + 9);
    let resp = c
        .http
        .get(file_url(&node, "big/video.bin"))
        .header("range", format!("bytes={start}-{end}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let got = resp.bytes().await.unwrap();
    // Regenerate only the megabyte around the range.
    let mb = start / MIB;
    let around = data::bytes(1, (mb + 2) * MIB);
    assert_eq!(&got[..], &around[start as usize..=end as usize]);
}

#[tokio::test]
async fn ranges_at_chunk_boundaries() {
    let c = Cluster::builder()
        .storage_toml("chunk_size = 1024\nchunks_per_read = 3\n")
        .start()
        .await;
    let node = c.node_url(0);
    let len = 10 * 1024 + 500;
    let content = data::bytes(2, len);
    put(&c, &node, "r.bin", content.clone()).await;
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-0", 0, 0),
        ("bytes=1023-1024", 1023, 1024),
        ("bytes=1024-2047", 1024, 2047),
        ("bytes=1000-2000", 1000, 2000),
        ("bytes=3000-", 3000, len as usize - 1),
        ("bytes=-1", len as usize - 1, len as usize - 1),
        ("bytes=-600", len as usize - 600, len as usize - 1),
        ("bytes=10240-99999", 10240, len as usize - 1),
        ("bytes=0-", 0, len as usize - 1),
    ];
    for &(range, start, end) in cases {
        let resp = c
            .http
            .get(file_url(&node, "r.bin"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{end}/{len}").as_str(),
            "{range}"
        );
        assert_eq!(
            resp.content_length(),
            Some((end - start + 1) as u64),
            "{range}"
        );
        assert_eq!(
            &resp.bytes().await.unwrap()[..],
            &content[start..=end],
            "{range}"
        );
    }
}

#[tokio::test]
async fn unsatisfiable_ranges_conditional_requests_and_head() {
    let c = Cluster::builder().start().await;
    let content = data::bytes(3, 5000);
    let stored = put(&c, &c.node_url(0), "c.txt", content.clone()).await;
    let url = file_url(&c.node_url(0), "c.txt");

    let resp = c
        .http
        .get(&url)
        .header("range", "bytes=5000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()["content-range"], "bytes */5000");
    let error = error_of(resp).await;
    assert!(error.contains("range not satisfiable"), "{error}");

    let resp = c.http.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-length"], "5000");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("last-modified"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", stored["sha256"].as_str().unwrap()));
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = c
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = c
        .http
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);

    // If-Range with a stale validator: the whole file, not the range.
    let resp = c
        .http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);
    let resp = c
        .http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..10]);

    // The compatibility route serves the same file.
    let resp = c
        .http
        .get(format!("{}/download?filename=c.txt", c.node_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], &content[..]);
}

#[tokio::test]
async fn listing_is_sorted_paginated_and_filtered_by_prefix() {
    let c = Cluster::builder().start().await;
    let node = c.node_url(0);
    for name in ["a/3", "a/1", "b/1", "a/2", "a/5", "a0", "a/4"] {
        put(&c, &node, name, name.as_bytes().to_vec()).await;
    }
    let page = list(&c, &node, "prefix=a%2F&limit=2").await;
    assert_eq!(page.names, ["a/1", "a/2"]);
    let after = page.next_after.unwrap();
    let page = list(&c, &node, &format!("prefix=a%2F&limit=2&after={after}")).await;
    assert_eq!(page.names, ["a/3", "a/4"]);
    let after = page.next_after.unwrap();
    let page = list(&c, &node, &format!("prefix=a%2F&limit=2&after={after}")).await;
    assert_eq!(
        (page.names, page.next_after),
        (vec!["a/5".to_string()], None)
    );
    let all = list(&c, &node, "").await;
    assert_eq!(all.names, ["a/1", "a/2", "a/3", "a/4", "a/5", "a0", "b/1"]);
    assert_eq!(all.next_after, None);
    let resp = c
        .http
        .get(format!("{node}/files?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_names_and_routes_get_json_errors() {
    let c = Cluster::builder().start().await;
    let node = c.node_url(0);
    let long = "x".repeat(1025);
    for (path, why) in [
        ("/files/a%0Ab", "control character"),
        ("/files/%FF%FE", "not valid UTF-8"),
        (&format!("/files/{long}"), "the limit is 1024"),
    ] {
        let resp = c
            .http
            .put(format!("{node}{path}"))
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(resp.headers()["x-speedbox-error"], "node");
        let error = error_of(resp).await;
        assert!(error.contains(why), "{path}: {error}");
    }
    let resp = c.http.get(format!("{node}/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let error = error_of(resp).await;
    assert!(error.contains("no route for /nowhere"), "{error}");
    let resp = c.http.post(file_url(&node, "x")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, PUT, DELETE");
    let resp = get(&c, &node, "missing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(error_of(resp).await.contains("missing"));
    assert_eq!(count(&c, "fs.chunks", doc! {}).await, 0);
}

#[tokio::test]
async fn delete_multipart_and_gridfs_compatibility() {
    let c = Cluster::builder().start().await;
    let node = c.node_url(0);
    let content = data::bytes(9, 700_000);
    let form = reqwest::multipart::Form::new()
        .text("note", "not a file")
        .part(
            "file",
            reqwest::multipart::Part::bytes(content.clone()).file_name("clip.mp4"),
        );
    let resp = c
        .http
        .post(format!("{node}/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["files"][0]["name"], "clip.mp4");
    assert_eq!(stored["files"][0]["content_type"], "video/mp4");
    let got = fetch(&c, &node, "clip.mp4").await;
    assert_eq!(got.headers["content-type"], "video/mp4");
    assert_eq!(got.sha256, data::sha256_of(&content));

    // What the node wrote is plain GridFS: the driver's own bucket reads it back.
    let bucket = c.db().await.gridfs_bucket(None);
    let mut stream = bucket
        .open_download_stream_by_name("clip.mp4")
        .await
        .unwrap();
    let mut via_driver = Vec::new();
    futures::AsyncReadExt::read_to_end(&mut stream, &mut via_driver)
        .await
        .unwrap();
    assert_eq!(via_driver, content);

    let url = file_url(&node, "clip.mp4");
    let resp = c.http.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&c, &node, "clip.mp4").await.status(),
        StatusCode::NOT_FOUND
    );
    let resp = c.http.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let resp = c
        .http
        .post(format!("{node}/upload"))
        .multipart(reqwest::multipart::Form::new().text("note", "no file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let error = error_of(resp).await;
    assert!(error.contains("no file part"), "{error}");
}

#[tokio::test]
async fn empty_file_round_trip() {
    let c = Cluster::builder().start().await;
    let node = c.node_url(0);
    let stored = put(&c, &node, "empty", Vec::new()).await;
    assert_eq!(stored["length"], 0);
    let got = fetch(&c, &node, "empty").await;
    assert_eq!(got.headers["content-length"], "0");
    assert_eq!((got.len, got.sha256), (0, data::sha256_of(b"")));
    let resp = c
        .http
        .get(file_url(&node, "empty"))
        .header("range", "bytes=0-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let mut stream = get(&c, &node, "empty").await.bytes_stream();
    assert!(stream.next().await.is_none());
}
