//! Listing over many names (issue 17), real processes: a node's listing fences cut a
//! listing into short ranges once it has them, and its pages are exact whatever the fences
//! say, stale ones included (names deleted across several fences, names added between
//! them).

use std::time::Duration;

use bson::{doc, Document};
use futures::TryStreamExt;
use speedbox_tests::client::{list, percent_encode, put, text};
use speedbox_tests::{eventually, Cluster};

/// How many fence rebuilds the node has finished, from its `/metrics`.
async fn rebuilds(c: &Cluster, node: &str) -> f64 {
    const SERIES: &str = r#"speedbox_store_operation_duration_seconds_count{operation="fences"}"#;
    text(c, &format!("{node}/metrics"))
        .await
        .lines()
        .find_map(|l| l.strip_prefix(SERIES))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Adds name documents shaped like `template` (a real PUT's), each pointing at a file of
/// its own (absent: listing reads names only), straight into `fs.names`.
async fn add_names(names: &mongodb::Collection<Document>, template: &Document, new: &[String]) {
    let docs: Vec<Document> = new
        .iter()
        .map(|n| {
            let mut d = template.clone();
            d.remove("small");
            d.remove("inline");
            d.insert("_id", n);
            d.insert("name", n);
            d.insert("file_id", bson::oid::ObjectId::new());
            d
        })
        .collect();
    names.insert_many(docs).await.unwrap();
}

/// Every name in the database, in byte order (MongoDB's for strings, and Rust's).
async fn stored(names: &mongodb::Collection<Document>) -> Vec<String> {
    let mut all: Vec<String> = names
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_string())
        .collect();
    all.sort();
    all
}

/// Every name of `GET /files?{query}`, page after page of `limit`.
async fn page_through(c: &Cluster, node: &str, query: &str, limit: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = format!("{query}&limit={limit}");
        if let Some(a) = &after {
            q.push_str(&format!("&after={}", percent_encode(a)));
        }
        let page = list(c, node, &q).await;
        assert!(page.names.len() <= limit as usize);
        all.extend(page.names);
        match page.next_after {
            Some(a) => after = Some(a),
            None => return all,
        }
    }
}

#[tokio::test]
async fn pages_are_exact_whatever_the_fences_say() {
    let c = Cluster::builder().nodes(1).start().await;
    let (db, node) = (c.db().await, c.node_url(0));
    put(&c, &node, "seed.txt", b"x".to_vec()).await;
    let names = db.collection::<Document>("fs.names");
    let template = names
        .find_one(doc! {"_id": "seed.txt"})
        .await
        .unwrap()
        .unwrap();
    let first: Vec<String> = (0..1500)
        .map(|i| format!("d{}/f{i:05}", i % 7))
        .chain((0..20).map(|i| format!("é/{i}")))
        .collect();
    add_names(&names, &template, &first).await;

    // No fences yet: the first page is one range to the end, and that asks for fences.
    assert_eq!(rebuilds(&c, &node).await, 0.0);
    let page = list(&c, &node, "limit=10").await;
    assert_eq!(page.names, stored(&names).await[..10]);
    eventually(
        Duration::from_secs(20),
        "the node's first fences",
        || async { rebuilds(&c, &node).await >= 1.0 },
    )
    .await;

    // With fences, a page's first range ends at a fence, not past every name (1028 bytes).
    db.run_command(doc! {"profile": 2}).await.unwrap();
    let page = list(&c, &node, "limit=10").await;
    db.run_command(doc! {"profile": 0}).await.unwrap();
    assert_eq!(page.names, stored(&names).await[..10]);
    let finds: Vec<Document> = db
        .collection::<Document>("system.profile")
        .find(doc! {"ns": "speedbox.fs.names", "command.find": {"$exists": true}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let upper = finds
        .iter()
        .find_map(|op| {
            let filter = op
                .get_document("command")
                .ok()?
                .get_document("filter")
                .ok()?;
            Some(
                filter
                    .get_document("name")
                    .ok()?
                    .get_str("$lt")
                    .ok()?
                    .to_string(),
            )
        })
        .expect("a listing's range query");
    assert!(
        upper.len() < 20,
        "the first range is not cut by a fence: {upper:?}"
    );

    // Stale fences: a block of names spanning several fences goes, and names come between
    // fences, more than a page between two of them. Every listing is still exact.
    names
        .delete_many(doc! {"name": {"$gte": "d2/", "$lt": "d4/"}})
        .await
        .unwrap();
    let between: Vec<String> = (0..700).map(|i| format!("d1/f00100-{i:03}")).collect();
    add_names(&names, &template, &between).await;
    let all = stored(&names).await;
    assert_eq!(page_through(&c, &node, "", 37).await, all);
    assert_eq!(page_through(&c, &node, "", 1000).await, all);
    let d1: Vec<String> = all
        .iter()
        .filter(|n| n.starts_with("d1/"))
        .cloned()
        .collect();
    assert_eq!(page_through(&c, &node, "prefix=d1%2F", 23).await, d1);
    // `after=` where the deleted block was, and past the last name.
    let after_gap = list(&c, &node, "after=d2%2Ff00000&limit=5").await;
    let expected: Vec<&String> = all
        .iter()
        .filter(|n| n.as_str() > "d2/f00000")
        .take(5)
        .collect();
    assert_eq!(after_gap.names.iter().collect::<Vec<_>>(), expected);
    let end = list(
        &c,
        &node,
        &format!("after={}&limit=5", percent_encode(&all[all.len() - 1])),
    )
    .await;
    assert!(end.names.is_empty() && end.next_after.is_none());
}
