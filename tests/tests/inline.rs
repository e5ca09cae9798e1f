//! Small files carry their content in their name's document (issue 17), real processes: a
//! file of at most 16 KiB, PUT to a node or through the balancer (a protected upload), has
//! it there as well as in its GridFS chunks, always the same bytes, through replacements
//! and racing writers; a GET of one is one `find` on the names; listings leave it out. A
//! small file stored before names carried content gets it from a GET, never stale.

use bson::{doc, Document};
use futures::future::join_all;
use futures::TryStreamExt;
use speedbox_common::config::DEFAULT_CHUNK_SIZE;
use speedbox_tests::client::{assert_intact, fetch_bytes, get_with, list, put, text};
use speedbox_tests::{data, Cluster};

/// `speedbox_node::store::INLINE_MAX_BYTES`.
const INLINE_MAX: u64 = 16 * 1024;

/// The name's inline content, if its document has one.
async fn inline_of(names: &mongodb::Collection<Document>, name: &str) -> Option<Vec<u8>> {
    let doc = names.find_one(doc! {"_id": name}).await.unwrap().unwrap();
    doc.get_binary_generic("inline").ok().cloned()
}

/// The bytes of the name's current revision as its GridFS chunks hold them.
async fn chunks_of(db: &mongodb::Database, name: &str) -> Vec<u8> {
    let names = db.collection::<Document>("fs.names");
    let doc = names.find_one(doc! {"_id": name}).await.unwrap().unwrap();
    let file_id = doc.get_object_id("file_id").unwrap();
    let chunks: Vec<Document> = db
        .collection::<Document>("fs.chunks")
        .find(doc! {"files_id": file_id})
        .sort(doc! {"n": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks
        .iter()
        .flat_map(|c| c.get_binary_generic("data").unwrap().clone())
        .collect()
}

#[tokio::test]
async fn small_files_carry_their_content_with_their_name() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    let db = c.db().await;
    let names = db.collection::<Document>("fs.names");
    let (node, balancer) = (c.node_url(0), c.balancer_url());
    let chunk = u64::from(DEFAULT_CHUNK_SIZE);
    for (seed, len) in [0, 1, 4096, INLINE_MAX, INLINE_MAX + 1, 300_000]
        .into_iter()
        .enumerate()
    {
        let body = data::bytes(seed as u64, len);
        // Through the balancer, a PUT with a body is protected: the node stores it as a
        // resumable upload whose last PATCH publishes it (its log says "upload complete").
        for (via, base) in [("node", &node), ("balancer", &balancer)] {
            let name = format!("{via}/{len}");
            put(&c, base, &name, body.clone()).await;
            match inline_of(&names, &name).await {
                Some(inline) => {
                    assert!(len <= INLINE_MAX, "{name} carries its content");
                    assert!(inline == body, "{name}: inline bytes differ");
                }
                None => assert!(len > INLINE_MAX, "{name} carries no content"),
            }
            assert!(chunks_of(&db, &name).await == body, "{name}: chunks differ");
            for base in [&balancer, &node, &c.node_url(1)] {
                assert_intact(&c, base, &name, &body, chunk).await;
            }
            if len > 4 {
                let part = get_with(&c, &balancer, &name, &[("range", "bytes=1-3")]).await;
                assert_eq!(part.status(), 206);
                assert_eq!(part.bytes().await.unwrap(), body[1..4]);
            }
        }
    }

    // A name goes from small to larger and back: its content follows, never stale.
    for (seed, len) in [(10, 100), (11, INLINE_MAX + 5), (12, 7), (13, 0)] {
        let body = data::bytes(seed, len);
        put(&c, &balancer, "moving", body.clone()).await;
        assert_eq!(
            inline_of(&names, "moving").await.is_some(),
            len <= INLINE_MAX
        );
        assert!(fetch_bytes(&c, &node, "moving").await == body);
    }

    // Racing writers of one name: whoever wins, its inline content is its chunks'.
    let racers = (0..8u64).map(|i| {
        let (c, base) = (&c, if i % 2 == 0 { &node } else { &balancer });
        async move { put(c, base, "raced", data::bytes(100 + i, 1000 + i)).await }
    });
    join_all(racers).await;
    let inline = inline_of(&names, "raced").await.expect("inline content");
    assert!(inline == chunks_of(&db, "raced").await);
    assert!(fetch_bytes(&c, &node, "raced").await == inline);

    // Listings and HEAD carry no content.
    let page = text(&c, &format!("{node}/files?prefix=node%2F")).await;
    assert!(!page.contains("inline"), "{page}");
    assert_eq!(list(&c, &node, "prefix=node%2F").await.names.len(), 6);
    let head = c
        .http
        .head(format!("{node}/files/node/4096"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-length"], "4096");

    // A GET of an inline file is one find on the names, once the node has seen a few (the
    // GETs above of larger small files taught it to join chunks first).
    for _ in 0..40 {
        fetch_bytes(&c, &node, "node/4096").await;
    }
    db.run_command(doc! {"profile": 2}).await.unwrap();
    let got = fetch_bytes(&c, &node, "node/4096").await;
    db.run_command(doc! {"profile": 0}).await.unwrap();
    assert!(got == data::bytes(2, 4096));
    // Health checks read the names too; this GET's are the ones about its name or chunks.
    let ops: Vec<Document> = db
        .collection::<Document>("system.profile")
        .find(doc! {"$or": [
            {"ns": "speedbox.fs.chunks"},
            {"ns": "speedbox.fs.names", "command.filter._id": "node/4096"},
            {"ns": "speedbox.fs.names", "command.pipeline": {"$exists": true}},
        ]})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let commands: Vec<String> = ops
        .iter()
        .filter_map(|op| op.get_document("command").ok())
        .filter_map(|cmd| cmd.keys().next().map(|k| k.to_string()))
        .collect();
    assert_eq!(commands, ["find"], "{ops:?}");
}

/// Turns the name's document into one written before names carried content: no `inline`,
/// `small` (the join key) set instead, as publishing set it then.
async fn make_old(names: &mongodb::Collection<Document>, name: &str) {
    let doc = names.find_one(doc! {"_id": name}).await.unwrap().unwrap();
    let file_id = doc.get_object_id("file_id").unwrap();
    names
        .update_one(
            doc! {"_id": name},
            doc! {"$unset": {"inline": ""}, "$set": {"small": file_id}},
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn small_files_stored_before_get_their_content_from_a_get_and_never_stale_content() {
    let c = Cluster::builder().nodes(1).start().await;
    let db = c.db().await;
    let names = db.collection::<Document>("fs.names");
    let node = c.node_url(0);
    let sizes = [0, 1, 4096, INLINE_MAX, INLINE_MAX + 1, 300_000];
    for (seed, len) in sizes.into_iter().enumerate() {
        put(
            &c,
            &node,
            &format!("old/{len}"),
            data::bytes(seed as u64, len),
        )
        .await;
        make_old(&names, &format!("old/{len}")).await;
    }
    // Each GET serves the chunks, and offers the eligible files their content.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut pending = 0;
        for (seed, len) in sizes.into_iter().enumerate() {
            let (name, body) = (format!("old/{len}"), data::bytes(seed as u64, len));
            assert!(fetch_bytes(&c, &node, &name).await == body, "{name}");
            let doc = names.find_one(doc! {"_id": &name}).await.unwrap().unwrap();
            match doc.get_binary_generic("inline").ok() {
                Some(inline) => {
                    assert!(len <= INLINE_MAX, "{name} got content");
                    assert!(*inline == body, "{name}: inline bytes differ");
                    assert!(!doc.contains_key("small"), "{name}: {doc:?}");
                }
                None if len <= INLINE_MAX => pending += 1,
                None => assert!(doc.contains_key("small"), "{name} keeps its join key"),
            }
        }
        if pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} never got content"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A GET of an old file racing its replacement: the GET starts later each round, so
    // that in some its backfill is written after the swap. It must miss the new revision
    // (whose own content the swap wrote) rather than lay the old bytes on it.
    for round in 0..60u64 {
        put(
            &c,
            &node,
            "old/raced",
            data::bytes(500 + round, 2000 + round),
        )
        .await;
        make_old(&names, "old/raced").await;
        let last = data::bytes(900 + round, 3000 + round);
        let late_get = async {
            tokio::time::sleep(std::time::Duration::from_micros(200 * round)).await;
            fetch_bytes(&c, &node, "old/raced").await
        };
        tokio::join!(late_get, put(&c, &node, "old/raced", last.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let inline = inline_of(&names, "old/raced")
            .await
            .expect("the new revision's content");
        assert!(inline == last, "round {round}: stale inline content");
        assert!(chunks_of(&db, "old/raced").await == last);
        assert!(fetch_bytes(&c, &node, "old/raced").await == last);
    }
}
