//! A retried, replayed, racing or late request never destroys data (issue: a PATCH to a
//! finished tus upload deleted chunks of the published file).
//!
//! Each test runs through the balancer and directly against a node, and ends by checking
//! that every published file is byte-identical to what was sent and that its chunks are
//! all there (the listing and HEAD alone looked fine while the bytes were gone). Uploads
//! stranded by a dead finisher, and expiry, are in `tus_recovery.rs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bson::doc;
use reqwest::StatusCode;
use speedbox_tests::client::{assert_intact, get};
use speedbox_tests::lossy::LossyRelay;
use speedbox_tests::tus::{offset_of, run_ok, tuspy, TusClient};
use speedbox_tests::{data, Cluster};

const CHUNK: u64 = 1024;

/// Small chunks, so a few KiB span several GridFS chunks and a partial last one.
fn cluster() -> speedbox_tests::ClusterBuilder {
    Cluster::builder()
        .nodes(2)
        .balancer(true)
        .storage_toml(&format!("chunk_size = {CHUNK}\nchunks_per_write = 2\n"))
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
        assert_intact(&c, &base, &name, &content, CHUNK).await;

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
        assert_intact(&c, &base, &name, &content, CHUNK).await;

        // Terminating a finished upload removes its state, never the file.
        assert_eq!(t.delete(&url).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(t.head(&url).await.status(), StatusCode::NOT_FOUND);
        let resp = t.patch(&url, len, Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_intact(&c, &base, &name, &content, CHUNK).await;
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
        let endpoint = format!("http://{}/uploads", relay.addr);
        run_ok(tuspy(&endpoint, &file, &name, 16 * CHUNK)).await;
        assert_eq!(
            relay.dropped.load(Ordering::SeqCst),
            1,
            "the final 204 was lost"
        );
        assert_intact(&c, &c.balancer_url(), &name, &content, CHUNK).await;
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
    assert_intact(&c, &c.balancer_url(), "killed.bin", &content, CHUNK).await;
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
        assert_intact(&c, &base, &name, &content, CHUNK).await;
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
        if patched.status() == StatusCode::NO_CONTENT {
            assert_intact(&c, &c.balancer_url(), &name, &content, CHUNK).await;
        } else {
            assert_eq!(
                get(&c, &c.balancer_url(), &name).await.status(),
                StatusCode::NOT_FOUND,
                "PATCH answered {}",
                patched.status()
            );
        }
    }
}
