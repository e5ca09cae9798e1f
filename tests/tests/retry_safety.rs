//! A retried, replayed, racing or late request never destroys data (issue: a PATCH to a
//! finished tus upload deleted chunks of the published file).
//!
//! Each test runs through the balancer and directly against a node, and ends by checking
//! that every published file is byte-identical to what was sent and that its chunks are
//! all there (the listing and HEAD alone looked fine while the bytes were gone).

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::lossy::LossyRelay;
use speedbox_tests::tus::{offset_of, TusClient};
use speedbox_tests::{data, eventually, workspace_root, Cluster};

const CHUNK: u64 = 1024;

/// Small chunks, so a few KiB span several GridFS chunks and a partial last one.
fn cluster() -> speedbox_tests::ClusterBuilder {
    Cluster::builder()
        .nodes(2)
        .balancer(true)
        .storage_toml(&format!("chunk_size = {CHUNK}\nchunks_per_write = 2\n"))
}

/// The file under `name` is exactly `want`: through GET (bytes and ETag), and its chunks in
/// the database are complete.
async fn assert_intact(c: &Cluster, base: &str, name: &str, want: &[u8]) {
    let resp = c
        .http
        .get(format!("{base}/files/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {name}");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let got = resp.bytes().await.expect("whole body");
    assert_eq!(got.len(), want.len(), "length of {name}");
    assert!(got[..] == want[..], "bytes of {name} differ");
    assert_eq!(
        etag,
        format!("\"{}\"", data::sha256_of(want)),
        "ETag of {name}"
    );
    let db = c.db().await;
    let names = db.collection::<bson::Document>("fs.names");
    let file_id = names
        .find_one(doc! {"_id": name})
        .await
        .unwrap()
        .expect("name")
        .get_object_id("file_id")
        .unwrap();
    let chunks = db
        .collection::<bson::Document>("fs.chunks")
        .count_documents(doc! {"files_id": file_id})
        .await
        .unwrap();
    assert_eq!(
        chunks,
        (want.len() as u64).div_ceil(CHUNK),
        "chunks of {name}"
    );
}

/// Every PATCH a client may send to a finished upload: 204 for an empty one at the end,
/// 409 for everything else, and the file never changes.
#[tokio::test]
async fn patches_to_a_finished_upload_change_nothing() {
    let c = cluster().start().await;
    for (i, base) in [c.balancer_url(), c.node_url(1)].into_iter().enumerate() {
        let t = TusClient {
            c: &c,
            base: base.clone(),
        };
        let content = data::bytes(100 + i as u64, 5 * CHUNK + 17);
        let len = content.len() as u64;
        let name = format!("done-{i}.bin");
        let url = t.create(len, &name).await;
        // Two PATCHes, the second finishing the upload.
        let resp = t.patch(&url, 0, content[..3000].to_vec()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let resp = t.patch(&url, 3000, content[3000..].to_vec()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(offset_of(&resp), len);
        assert_intact(&c, &base, &name, &content).await;

        // The retry after a lost 204: HEAD, then an empty PATCH at the reported offset.
        let resp = t.head(&url).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(offset_of(&resp), len);
        for _ in 0..2 {
            let resp = t.patch(&url, len, Vec::new()).await;
            assert_eq!(
                resp.status(),
                StatusCode::NO_CONTENT,
                "empty PATCH at the end"
            );
            assert_eq!(offset_of(&resp), len);
        }
        // Replays of both PATCHes, a stale offset, bytes past the end, a mid-chunk offset.
        for (offset, body) in [
            (0, content[..3000].to_vec()),
            (3000, content[3000..].to_vec()),
            (3000, Vec::new()),
            (0, Vec::new()),
            (len, b"more".to_vec()),
            (CHUNK * 5, content[(CHUNK * 5) as usize..].to_vec()),
        ] {
            let resp = t.patch(&url, offset, body).await;
            assert_eq!(resp.status(), StatusCode::CONFLICT, "PATCH at {offset}");
            assert_eq!(
                resp.headers()["content-type"],
                "application/json",
                "a JSON error"
            );
        }
        let resp = t.head(&url).await;
        assert_eq!(offset_of(&resp), len, "HEAD still reports the whole upload");
        assert_intact(&c, &base, &name, &content).await;

        // Terminating a finished upload removes its state, never the file.
        assert_eq!(t.delete(&url).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(t.head(&url).await.status(), StatusCode::NOT_FOUND);
        let resp = t.patch(&url, len, Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_intact(&c, &base, &name, &content).await;
    }
}

/// tuspy's own retry sequence after a lost final 204: a relay drops the response of the
/// PATCH that completes the upload; tuspy asks HEAD, then sends an empty PATCH.
#[tokio::test]
async fn tuspy_survives_a_lost_final_204() {
    let c = cluster().start().await;
    for (i, upstream) in [c.balancer_addr(), c.node_url(0).replace("http://", "")]
        .into_iter()
        .enumerate()
    {
        let len = 40 * CHUNK + 333;
        let content = data::bytes(200 + i as u64, len);
        let file = c.dir().join(format!("lost-{i}.bin"));
        std::fs::write(&file, &content).unwrap();
        let relay = LossyRelay::start(upstream.parse().unwrap(), 1, move |req| {
            let offset: u64 = req
                .header("upload-offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let body: u64 = req
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            req.method == "PATCH" && body > 0 && offset + body == len
        })
        .await;
        let name = format!("tuspy-lost-{i}.bin");
        let out = tokio::process::Command::new(workspace_root().join(".venv/bin/python"))
            .arg(workspace_root().join("tests/clients/tuspy_upload.py"))
            .arg(format!("http://{}/uploads", relay.addr))
            .arg(&file)
            .arg(&name)
            .arg((16 * CHUNK).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "tuspy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            relay.dropped.load(Ordering::SeqCst),
            1,
            "the final 204 was lost"
        );
        assert_intact(&c, &c.balancer_url(), &name, &content).await;
    }
}

/// The node that published an upload is SIGKILLed right after; the client's retries go
/// to the other node, which must neither refuse the upload nor touch its bytes.
#[tokio::test]
async fn retries_after_the_publishing_node_dies() {
    let mut c = cluster().start().await;
    let direct = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(300, 7 * CHUNK + 5);
    let len = content.len() as u64;
    let url = direct.create(len, "killed.bin").await;
    let resp = direct.patch(&url, 0, content.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    c.kill_node(0);
    let id = url.rsplit('/').next().unwrap().to_string();
    let via = format!("{}/uploads/{id}", c.balancer_url());
    let t = TusClient {
        c: &c,
        base: c.balancer_url(),
    };
    assert_eq!(offset_of(&t.head(&via).await), len);
    assert_eq!(
        t.patch(&via, len, Vec::new()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.patch(&via, 0, content.clone()).await.status(),
        StatusCode::CONFLICT
    );
    assert_intact(&c, &c.balancer_url(), "killed.bin", &content).await;
}

/// Puts the database into the state a finisher's crash right after the last offset
/// leaves: complete, unpublished (no files document, no name), lease released.
async fn strand(c: &Cluster, url: &str, name: &str) {
    let id = url.rsplit('/').next().unwrap().to_string();
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
            doc! {"_id": &id},
            doc! {"$set": {"done": false, "lease_until": null}},
        )
        .await
        .unwrap();
}

/// The same stranded upload with no client coming back: the sweep publishes it.
#[tokio::test]
async fn the_sweep_publishes_a_stranded_upload() {
    let c = Cluster::builder()
        .storage_toml(&format!("chunk_size = {CHUNK}\nsweep_interval_secs = 1\n"))
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(401, 5 * CHUNK + 7);
    let url = t.create(content.len() as u64, "swept-in.bin").await;
    assert_eq!(
        t.patch(&url, 0, content.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    strand(&c, &url, "swept-in.bin").await;
    let get = format!("{}/files/swept-in.bin", c.node_url(0));
    eventually(
        Duration::from_secs(15),
        "the sweep publishes it",
        || async { c.http.get(&get).send().await.unwrap().status() == StatusCode::OK },
    )
    .await;
    assert_intact(&c, &c.node_url(0), "swept-in.bin", &content).await;
}

/// A finisher that died between completing an upload and publishing it: the next HEAD
/// (or empty PATCH) publishes it, once, with the right digests.
#[tokio::test]
async fn a_complete_upload_whose_finisher_died_is_published_by_the_next_request() {
    let c = cluster().start().await;
    let t = TusClient {
        c: &c,
        base: c.balancer_url(),
    };
    let content = data::bytes(400, 9 * CHUNK + 1);
    let len = content.len() as u64;
    let url = t.create(len, "stranded.bin").await;
    assert_eq!(
        t.patch(&url, 0, content.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    strand(&c, &url, "stranded.bin").await;
    let missing = c
        .http
        .get(format!("{}/files/stranded.bin", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let resp = t.head(&url).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(offset_of(&resp), len);
    assert_intact(&c, &c.balancer_url(), "stranded.bin", &content).await;
    // Published once: a second request changes nothing.
    assert_eq!(
        t.patch(&url, len, Vec::new()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_intact(&c, &c.balancer_url(), "stranded.bin", &content).await;
}

/// Two tabs sharing one upload URL send the same bytes at once, over and over: at most
/// one PATCH writes, the others get 409 or 423, and the file comes out whole.
#[tokio::test]
async fn racing_patches_from_two_tabs() {
    let c = cluster().start().await;
    for (i, base) in [c.balancer_url(), c.node_url(0)].into_iter().enumerate() {
        let t = TusClient {
            c: &c,
            base: base.clone(),
        };
        let content = data::bytes(500 + i as u64, 30 * CHUNK + 99);
        let len = content.len() as u64;
        let name = format!("tabs-{i}.bin");
        let url = t.create(len, &name).await;
        let step = 7 * CHUNK + 3;
        let tab = |_: usize| {
            let (t, url, content) = (&t, &url, &content);
            async move {
                for _ in 0..200 {
                    let offset = offset_of(&t.head(url).await);
                    if offset == len {
                        // What a client does after its final 204 was lost.
                        let resp = t.patch(url, len, Vec::new()).await;
                        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
                        return;
                    }
                    let end = (offset + step).min(len);
                    let resp = t
                        .patch(url, offset, content[offset as usize..end as usize].to_vec())
                        .await;
                    let s = resp.status();
                    assert!(
                        s == StatusCode::NO_CONTENT
                            || s == StatusCode::CONFLICT
                            || s == StatusCode::LOCKED,
                        "PATCH at {offset}: {s}"
                    );
                }
                panic!("the upload never completed");
            }
        };
        futures::future::join(tab(0), tab(1)).await;
        assert_intact(&c, &base, &name, &content).await;
    }
}

/// An unfinished upload's termination and a PATCH racing it: either the PATCH loses (404,
/// 409 or 423 and nothing published) or it completed first and the file stays whole.
#[tokio::test]
async fn termination_racing_the_last_patch() {
    let c = cluster().start().await;
    let t = TusClient {
        c: &c,
        base: c.balancer_url(),
    };
    for round in 0..6u64 {
        let content = data::bytes(600 + round, 6 * CHUNK + 10);
        let len = content.len() as u64;
        let name = format!("terminate-race-{round}.bin");
        let url = t.create(len, &name).await;
        assert_eq!(
            t.patch(&url, 0, content[..2048].to_vec()).await.status(),
            StatusCode::NO_CONTENT
        );
        let (patched, terminated) =
            futures::future::join(t.patch(&url, 2048, content[2048..].to_vec()), async {
                tokio::time::sleep(Duration::from_millis(round * 3)).await;
                t.delete(&url).await
            })
            .await;
        assert_eq!(terminated.status(), StatusCode::NO_CONTENT);
        let get = c
            .http
            .get(format!("{}/files/{name}", c.balancer_url()))
            .send()
            .await
            .unwrap();
        if patched.status() == StatusCode::NO_CONTENT {
            assert_intact(&c, &c.balancer_url(), &name, &content).await;
        } else {
            assert_eq!(
                get.status(),
                StatusCode::NOT_FOUND,
                "PATCH answered {}",
                patched.status()
            );
        }
    }
}

/// Expiry of a finished upload's state never touches the published file; expiry of an
/// unfinished one removes its chunks.
#[tokio::test]
async fn expiry_removes_state_not_files() {
    let c = Cluster::builder()
        .storage_toml(&format!(
            "chunk_size = {CHUNK}\ntus_expiry_secs = 1\nsweep_interval_secs = 1\n"
        ))
        .start()
        .await;
    let t = TusClient {
        c: &c,
        base: c.node_url(0),
    };
    let content = data::bytes(700, 4 * CHUNK + 1);
    let len = content.len() as u64;
    let done = t.create(len, "expired-done.bin").await;
    assert_eq!(
        t.patch(&done, 0, content.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let open = t.create(len, "expired-open.bin").await;
    assert_eq!(
        t.patch(&open, 0, content[..2000].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    let db = c.db().await;
    let tus = db.collection::<bson::Document>("fs.tus");
    eventually(Duration::from_secs(15), "expired states swept", || async {
        tus.count_documents(doc! {}).await.unwrap() == 0
    })
    .await;
    assert_intact(&c, &c.node_url(0), "expired-done.bin", &content).await;
    let names = db.collection::<bson::Document>("fs.names");
    assert!(names
        .find_one(doc! {"_id": "expired-open.bin"})
        .await
        .unwrap()
        .is_none());
    // Only the finished file's chunks remain.
    let chunks = db
        .collection::<bson::Document>("fs.chunks")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(chunks, len.div_ceil(CHUNK));
}
