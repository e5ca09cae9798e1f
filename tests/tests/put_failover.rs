//! A plain PUT survives the death of the node writing it (issue 14, part 3): the balancer
//! continues it on another node from where the dead one durably stood, and the client
//! gets one 201 with the whole file, byte-identical, digests right. At the node, a
//! continuation gets 423 from a live writer's lease unless told to take it over, the old
//! writer is fenced once it is, and a replay of a finished continuation is answered with
//! the same file.

use std::time::{Duration, Instant};

use bson::doc;
use reqwest::StatusCode;
use serde_json::Value;
use speedbox_tests::client::{
    busy_node, cluster_status, count, fetch, file_url, get, put, strand, wait_state,
};
use speedbox_tests::{data, Cluster};

const MIB: u64 = 1 << 20;

/// PUTs `len` bytes of seed `seed` through the balancer (with Content-Length unless
/// `chunked`), SIGKILLs the node writing it once the client has sent `at` bytes, and
/// returns the PUT's answer; with `hang`, SIGSTOPs it instead (SIGCONT after the answer).
async fn put_faulting_at(
    c: &mut Cluster,
    name: &str,
    seed: u64,
    len: u64,
    at: u64,
    chunked: bool,
    hang: bool,
) -> (StatusCode, Value) {
    let (body, pause) = data::paused_body(seed, len, at);
    let mut request = c.http.put(file_url(&c.balancer_url(), name)).body(body);
    if !chunked {
        request = request.header("content-length", len);
    }
    let sent = tokio::spawn(async move {
        let resp = request.send().await.expect("the PUT gets an answer");
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    });
    pause.reached.await.expect("the body reaches the fault");
    // Let the bytes before the pause reach the node and its database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = busy_node(c).await;
    if hang {
        c.signal_node(victim, libc::SIGSTOP);
    } else {
        c.kill_node(victim);
    }
    let _ = pause.go.send(());
    let answer = sent.await.unwrap();
    if hang {
        c.signal_node(victim, libc::SIGCONT);
    } else {
        c.restart_node(victim).await;
    }
    let id = c.node_id(victim).to_owned();
    wait_state(c, &id, "up").await;
    answer
}

#[tokio::test]
async fn a_put_whose_node_is_killed_mid_body_ends_in_201_with_the_whole_file() {
    let mut c = Cluster::builder().nodes(3).balancer(true).start().await;
    let len = 64 * MIB;
    // Where the client is when the node dies: before the node's first durable offset,
    // the middle, the last block; with Content-Length and chunked.
    let cases = [
        (MIB / 2, false),
        (len / 2, false),
        (len - MIB / 2, false),
        (len / 3, true),
    ];
    for (n, (at, chunked)) in cases.into_iter().enumerate() {
        let name = format!("put-{n}.bin");
        let seed = 40 + n as u64;
        let continued = cluster_status(&c).await["uploads"]["continued"]
            .as_u64()
            .unwrap();
        let (status, file) = put_faulting_at(&mut c, &name, seed, len, at, chunked, false).await;
        let case = format!("killed at {at} (chunked: {chunked})");
        assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
        assert_eq!(file["length"], len, "{case}");
        assert_eq!(file["sha256"], data::sha256(seed, len), "{case}");
        let got = fetch(&c, &c.balancer_url(), &name).await;
        assert_eq!(
            (got.len, got.sha256.as_str()),
            (len, data::sha256(seed, len).as_str()),
            "{case}: stored byte-identical"
        );
        let uploads = &cluster_status(&c).await["uploads"];
        assert_eq!(
            uploads["continued"].as_u64().unwrap(),
            continued + 1,
            "{case}: the balancer had to continue it, or this case tested nothing: {uploads}"
        );
        assert_eq!(uploads["cut"], 0, "{case}");
    }
    // Nothing of the continued uploads is left in progress.
    let leftover = count(&c, "fs.tus", doc! {"done": false}).await;
    assert_eq!(leftover, 0, "unfinished upload state left behind");
    assert_eq!(
        cluster_status(&c).await["uploads"]["window_bytes_reserved"],
        0,
        "every window's budget was given back"
    );
}

#[tokio::test]
async fn a_put_whose_node_hangs_mid_body_goes_on_from_another_node() {
    let mut c = Cluster::builder().nodes(3).balancer(true).start().await;
    let (name, seed, len) = ("hung.bin", 60, 48 * MIB);
    let (status, file) = put_faulting_at(&mut c, name, seed, len, len / 2, false, true).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["sha256"], data::sha256(seed, len));
    let got = fetch(&c, &c.balancer_url(), name).await;
    assert_eq!(
        (got.len, got.sha256.as_str()),
        (len, data::sha256(seed, len).as_str())
    );
    let uploads = &cluster_status(&c).await["uploads"];
    assert_eq!(uploads["continued"], 1, "{uploads}");
    // Continued because the node stopped reading (the stall limit, 2 s), not because
    // idle_timeout (60 s) cut its connection at last.
    let log = c.log("balancer");
    assert!(log.contains("took none of the upload"), "{log}");
}

/// A PUT as the balancer tags it, sent straight to node `i`.
fn tagged(c: &Cluster, i: usize, name: &str, id: &str, from: u64) -> reqwest::RequestBuilder {
    c.http
        .put(file_url(&c.node_url(i), name))
        .header("speedbox-upload", id)
        .header("speedbox-upload-offset", from)
}

#[tokio::test]
async fn a_continuation_takes_over_a_live_writer_only_when_told_fences_it_and_a_replay_gets_the_same_file(
) {
    let mut c = Cluster::builder().nodes(2).start().await;
    let (name, id, seed, len) = ("raced.bin", "00112233445566778899aabbccddeeff", 7, 24 * MIB);
    let want = data::sha256(seed, len);

    // Node 0 takes the upload and stalls half-way, holding its lease.
    let (body, pause) = data::paused_body(seed, len, len / 2);
    let first = tagged(&c, 0, name, id, 0)
        .header("content-length", len)
        .body(body);
    let first = tokio::spawn(async move { first.send().await.map(|r| r.status()) });
    pause.reached.await.unwrap();
    let tus = c.db().await.collection::<bson::Document>("fs.tus");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tus
        .find_one(doc! {"_id": id, "offset": {"$gt": 0}})
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "node 0 never made any byte durable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Node 0 records what it has until its pipeline is empty: wait for a steady offset.
    let offset = || async {
        tus.find_one(doc! {"_id": id})
            .await
            .unwrap()
            .unwrap()
            .get_i64("offset")
            .unwrap()
    };
    let mut last = offset().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = offset().await;
        if now == last {
            break;
        }
        last = now;
    }
    // A continuation while node 0 lives: 423, and nothing changes.
    let before = tus.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    let early = tagged(&c, 1, name, id, 0)
        .header("content-length", len)
        .body(data::body(seed, len))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), StatusCode::LOCKED);
    let after = tus.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    assert_eq!(before.get_i64("offset"), after.get_i64("offset"));

    // Node 0 hangs with its lease live; the balancer's word that its request is over
    // (its connection died) lets node 1 take the lease over at once and finish.
    c.signal_node(0, libc::SIGSTOP);
    let taken = tagged(&c, 1, name, id, 0)
        .header("speedbox-upload-takeover", "1")
        .header("content-length", len)
        .body(data::body(seed, len))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), StatusCode::CREATED);
    let file: Value = taken.json().await.unwrap();
    assert_eq!(file["sha256"], want);

    // Node 0 wakes up and sends the rest of its body: fenced, it publishes nothing.
    c.signal_node(0, libc::SIGCONT);
    let _ = pause.go.send(());
    let late = first.await.unwrap();
    assert!(
        late.as_ref().map_or(true, |s| *s != StatusCode::CREATED),
        "the fenced writer must not succeed: {late:?}"
    );
    let got = fetch(&c, &c.node_url(0), name).await;
    assert_eq!((got.len, got.sha256.as_str()), (len, want.as_str()));
    let file_id = bson::oid::ObjectId::parse_str(file["id"].as_str().unwrap()).unwrap();
    let chunks = count(&c, "fs.chunks", doc! {"files_id": file_id}).await;
    assert_eq!(
        chunks,
        len.div_ceil(255 * 1024),
        "one chunk per n, none extra"
    );

    // The client's retry after a lost 201 (the balancer's too): the same file, unchanged.
    let again = tagged(&c, 0, name, id, 0)
        .header("content-length", len)
        .body(data::body(seed, len))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (&again["sha256"], &again["id"]),
        (&file["sha256"], &file["id"])
    );
}

#[tokio::test]
async fn a_protected_put_keeps_a_puts_checks() {
    let c = Cluster::builder().nodes(1).start().await;
    let id = "ffeeddccbbaa99887766554433221100";
    // A wrong digest: 400, nothing stored, no upload state left.
    let bad = tagged(&c, 0, "checked.bin", id, 0)
        .header("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .body(vec![1u8; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(count(&c, "fs.names", doc! {"_id": "checked.bin"}).await, 0);
    assert_eq!(count(&c, "fs.tus", doc! {"_id": id}).await, 0);
    // A failed precondition at the end: 412, and the bytes are gone too.
    let id = "ffeeddccbbaa99887766554433221101";
    let stored = tagged(&c, 0, "checked.bin", id, 0)
        .header("if-none-match", "*")
        .body(vec![2u8; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::CREATED);
    let id = "ffeeddccbbaa99887766554433221102";
    let again = tagged(&c, 0, "checked.bin", id, 0)
        .header("if-none-match", "*")
        .body(vec![3u8; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
    // A continuation whose body starts past what the node has: 409.
    let id = "ffeeddccbbaa99887766554433221103";
    let gap = tagged(&c, 0, "gap.bin", id, 5)
        .body(vec![4u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(gap.status(), StatusCode::NOT_FOUND, "no upload to continue");
    // An id that is not 32 hex digits: 400.
    let bad_id = tagged(&c, 0, "x.bin", "../etc", 0)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn two_continuations_racing_publish_the_file_once_and_whole() {
    let c = Cluster::builder().nodes(2).start().await;
    let (name, id, seed, len) = ("twice.bin", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 9, 16 * MIB);
    let want = data::sha256(seed, len);
    // The same continuation to both nodes at once, each told to take the lease over.
    let send = |i: usize| {
        tagged(&c, i, name, id, 0)
            .header("speedbox-upload-takeover", "1")
            .header("content-length", len)
            .body(data::body(seed, len))
            .send()
    };
    let (a, b) = tokio::join!(send(0), send(1));
    let answers = [a.unwrap(), b.unwrap()];
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    assert!(
        statuses.contains(&StatusCode::CREATED),
        "one of them finishes: {statuses:?}"
    );
    for (answer, status) in answers.into_iter().zip(&statuses) {
        // The loser was fenced (423: its lease was taken) or found the upload done (201).
        assert!(
            [StatusCode::CREATED, StatusCode::LOCKED].contains(status),
            "{status}"
        );
        if *status == StatusCode::CREATED {
            let file: Value = answer.json().await.unwrap();
            assert_eq!(file["sha256"], want);
        }
    }
    let got = fetch(&c, &c.node_url(1), name).await;
    assert_eq!((got.len, got.sha256.as_str()), (len, want.as_str()));
    assert_eq!(
        count(&c, "fs.files", doc! {"filename": name}).await,
        1,
        "published once"
    );
}

/// A PUT whose finisher died after its last byte is published by its continuation (which
/// brings its preconditions, and whose client still waits), never by the sweep: a PUT
/// whose request failed must not appear later, perhaps over a newer body its client sent
/// since.
#[tokio::test]
async fn the_sweep_never_publishes_a_stranded_put_its_continuation_does() {
    let c = Cluster::builder()
        .nodes(1)
        .storage_toml("sweep_interval_secs = 1\n")
        .start()
        .await;
    let len = STRANDED_LEN;
    let puts = [
        ("plain.bin", "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf", false),
        ("guarded.bin", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", true),
    ];
    for (name, id, guarded) in puts {
        put_stranded(&c, name, id, guarded).await;
    }
    let node = c.node_url(0);
    // Three sweeps: neither is published.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for (name, _, _) in puts {
        assert_eq!(
            get(&c, &node, name).await.status(),
            StatusCode::NOT_FOUND,
            "{name}"
        );
    }
    // Their continuations, with the preconditions, publish them.
    for (name, id, guarded) in puts {
        let mut resumed = tagged(&c, 0, name, id, 0).header("speedbox-upload-takeover", "1");
        if guarded {
            resumed = resumed.header("if-none-match", "*");
        }
        let resumed = resumed.body(data::bytes(11, len)).send().await.unwrap();
        assert_eq!(resumed.status(), StatusCode::CREATED, "{name}");
        let got = fetch(&c, &node, name).await;
        assert_eq!(
            (got.len, got.sha256),
            (len, data::sha256(11, len)),
            "{name}"
        );
    }
}

const STRANDED_LEN: u64 = 300 * 1024;

/// Stores `name` by a tagged PUT (with `If-None-Match: *` if `guarded`), then strands it as
/// a finisher's death after the last byte would.
async fn put_stranded(c: &Cluster, name: &str, id: &str, guarded: bool) {
    let mut put = tagged(c, 0, name, id, 0).body(data::bytes(11, STRANDED_LEN));
    if guarded {
        put = put.header("if-none-match", "*");
    }
    let answer = put.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED, "{name}");
    strand(c, id, name).await;
}

/// More protected PUTs at once than the node's database pool has connections (the driver's
/// default, 10) and far more than its chunk-write slots (4): every one ends in 201 with its
/// own bytes, and the node answers reads meanwhile and after. An offset record parked
/// unpolled while its request waited for a write slot held a pooled connection; enough of
/// them took the whole pool from the chunk writes those slots waited for.
#[tokio::test]
async fn more_protected_puts_at_once_than_database_connections_all_finish() {
    let c = Cluster::builder().nodes(1).balancer(true).start().await;
    let (uploads, len) = (16u64, 6 * MIB);
    put(&c, &c.balancer_url(), "before.bin", data::bytes(1, 1000)).await;
    let puts = (0..uploads).map(|i| {
        let request = c
            .http
            .put(file_url(&c.balancer_url(), &format!("many/{i}.bin")))
            .header("content-length", len)
            .body(data::body(100 + i, len));
        async move {
            let resp = request.send().await.expect("the PUT gets an answer");
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    // A deadlock detector, not a speed limit: the PUTs take a few seconds.
    let answers = tokio::time::timeout(Duration::from_secs(180), futures::future::join_all(puts))
        .await
        .expect("every PUT is answered");
    for (i, (status, file)) in answers.into_iter().enumerate() {
        let seed = 100 + i as u64;
        assert_eq!(status, StatusCode::CREATED, "PUT {i}: {file}");
        assert_eq!(file["sha256"], data::sha256(seed, len), "PUT {i}");
        let got = fetch(&c, &c.balancer_url(), &format!("many/{i}.bin")).await;
        assert_eq!(
            (got.len, got.sha256.as_str()),
            (len, data::sha256(seed, len).as_str())
        );
    }
    let before = fetch(&c, &c.node_url(0), "before.bin").await;
    assert_eq!(before.sha256, data::sha256(1, 1000));
}
