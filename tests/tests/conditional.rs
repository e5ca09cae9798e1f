//! Conditional requests (RFC 9110 §13) on the file API, through the balancer and directly:
//! create-only uploads, optimistic concurrency with `If-Match`, conditional DELETE and
//! GET, and the races where the check must be atomic with the name swap.

use reqwest::StatusCode;
use speedbox_tests::client::{fetch_bytes, file_url, get, get_with, headers, put, put_with};
use speedbox_tests::{data, Cluster};

fn etag(resp: &reqwest::Response) -> String {
    resp.headers()["etag"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn create_only_and_compare_and_swap_writes() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    for (i, base) in [c.balancer_url(), c.node_url(1)].into_iter().enumerate() {
        let name = format!("cond-{i}.txt");
        let url = file_url(&base, &name);
        // If-None-Match: * creates once, then refuses with 412 and changes nothing.
        let first = put_with(&c, &base, &name, "first", &[("if-none-match", "*")]).await;
        assert_eq!(first.status(), StatusCode::CREATED);
        let first_tag = etag(&first);
        let again = put_with(&c, &base, &name, "second", &[("if-none-match", "*")]).await;
        assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(again.headers()["content-type"], "application/json");
        assert_eq!(fetch_bytes(&c, &base, &name).await, b"first");

        // If-Match with a stale tag refuses; with the current one replaces.
        let stale = format!("\"{}\"", data::sha256_of(b"nope"));
        let resp = put_with(&c, &base, &name, "second", &[("if-match", &stale)]).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(fetch_bytes(&c, &base, &name).await, b"first");
        let resp = put_with(&c, &base, &name, "second", &[("if-match", &first_tag)]).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let second_tag = etag(&resp);
        // The old tag is stale now, and a weak tag never matches If-Match.
        let resp = put_with(&c, &base, &name, "third", &[("if-match", &first_tag)]).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        let weak = format!("W/{second_tag}");
        let resp = put_with(&c, &base, &name, "third", &[("if-match", &weak)]).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        // A list containing the current tag matches.
        let list = format!("{stale}, {second_tag}");
        let resp = put_with(&c, &base, &name, "third", &[("if-match", &list)]).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(fetch_bytes(&c, &base, &name).await, b"third");
        // If-Match on a name that does not exist: 412, nothing created.
        let ghost = format!("ghost-{i}.txt");
        let resp = put_with(&c, &base, &ghost, "x", &[("if-match", "*")]).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(get(&c, &base, &ghost).await.status(), StatusCode::NOT_FOUND);

        // If-Unmodified-Since: a date before the upload refuses, one after allows.
        let resp = put_with(
            &c,
            &base,
            &name,
            "fourth",
            &[("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT")],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        let resp = put_with(
            &c,
            &base,
            &name,
            "fourth",
            &[("if-unmodified-since", "Fri, 01 Jan 2100 00:00:00 GMT")],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let tag = etag(&resp);

        // DELETE: a stale If-Match refuses, the current one deletes.
        let resp = c
            .http
            .delete(&url)
            .headers(headers(&[("if-match", &first_tag)]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(fetch_bytes(&c, &base, &name).await, b"fourth");
        let resp = c
            .http
            .delete(&url)
            .headers(headers(&[("if-match", &tag)]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(get(&c, &base, &name).await.status(), StatusCode::NOT_FOUND);
    }
}

/// A conditional GET of `name` whose preconditions hold: `200` and the whole file.
async fn served_whole(c: &Cluster, base: &str, name: &str, h: &[(&str, &str)], want: &[u8]) {
    let resp = get_with(c, base, name, h).await;
    assert_eq!(resp.status(), StatusCode::OK, "{base} {h:?}");
    assert!(
        resp.bytes().await.unwrap() == want,
        "{base} {h:?}: the body"
    );
}

#[tokio::test]
async fn conditional_reads() {
    let c = Cluster::builder().nodes(1).balancer(true).start().await;
    let content = b"0123456789";
    let resp = put_with(&c, &c.balancer_url(), "read.txt", &content[..], &[]).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tag = etag(&resp);
    for base in [c.balancer_url(), c.node_url(0)] {
        let name = "read.txt";
        let stale = "\"0000\"";
        assert_eq!(
            get_with(&c, &base, name, &[("if-match", stale)])
                .await
                .status(),
            StatusCode::PRECONDITION_FAILED
        );
        served_whole(&c, &base, name, &[("if-match", &tag)], content).await;
        let resp = get_with(&c, &base, name, &[("if-none-match", &tag)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(etag(&resp), tag);
        assert!(resp.bytes().await.unwrap().is_empty());
        let weak = format!("W/{tag}");
        assert_eq!(
            get_with(&c, &base, name, &[("if-none-match", &weak)])
                .await
                .status(),
            StatusCode::NOT_MODIFIED
        );
        served_whole(&c, &base, name, &[("if-none-match", stale)], content).await;
        let resp = get(&c, &base, name).await;
        let modified = resp.headers()["last-modified"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            get_with(&c, &base, name, &[("if-modified-since", &modified)])
                .await
                .status(),
            StatusCode::NOT_MODIFIED
        );
        let old = "Sat, 01 Jan 2000 00:00:00 GMT";
        served_whole(&c, &base, name, &[("if-modified-since", old)], content).await;
        assert_eq!(
            get_with(&c, &base, name, &[("if-unmodified-since", old)])
                .await
                .status(),
            StatusCode::PRECONDITION_FAILED
        );
        // If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2).
        let both = [("if-none-match", stale), ("if-modified-since", &modified)];
        served_whole(&c, &base, name, &both, content).await;
        // A missing file is 404 whatever the preconditions (§13.2.1).
        assert_eq!(
            get_with(&c, &base, "missing.txt", &[("if-match", "*")])
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
        let resp = c
            .http
            .delete(file_url(&base, "missing.txt"))
            .headers(headers(&[("if-match", "*")]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}

/// Many clients race to create one name with `If-None-Match: *`: exactly one wins, and
/// the stored bytes are the winner's.
#[tokio::test]
async fn racing_create_only_uploads_get_one_201() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    for round in 0..4 {
        let bases = [c.balancer_url(), c.node_url(0), c.node_url(1)];
        let name = format!("race-{round}.bin");
        let attempts = (0..8u64).map(|k| {
            let body = data::bytes(round * 100 + k, 3000 + k);
            let (c, base, name) = (&c, &bases[k as usize % 3], &name);
            async move {
                let resp = put_with(c, base, name, body.clone(), &[("if-none-match", "*")]).await;
                (resp.status(), body)
            }
        });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<_> = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        for (status, _) in &results {
            assert!(*status == StatusCode::CREATED || *status == StatusCode::PRECONDITION_FAILED);
        }
        assert!(fetch_bytes(&c, &c.balancer_url(), &name).await == winners[0].1);
    }
}

/// Read-modify-write with `If-Match` from several clients at once never loses an update:
/// each client adds its increments to a counter file, retrying on 412.
#[tokio::test]
async fn compare_and_swap_never_loses_an_update() {
    let c = Cluster::builder().nodes(2).balancer(true).start().await;
    let name = "counter.txt";
    put(&c, &c.balancer_url(), name, "0").await;
    let (clients, increments) = (4, 6);
    let worker = |k: usize| {
        let c = &c;
        let base = if k % 2 == 0 {
            c.balancer_url()
        } else {
            c.node_url(k % 2)
        };
        async move {
            let mut done = 0;
            let mut conflicts = 0;
            while done < increments {
                let resp = get(c, &base, name).await;
                assert_eq!(resp.status(), StatusCode::OK);
                let tag = etag(&resp);
                let n: u64 = String::from_utf8(resp.bytes().await.unwrap().to_vec())
                    .unwrap()
                    .parse()
                    .unwrap();
                let next = (n + 1).to_string();
                match put_with(c, &base, name, next, &[("if-match", &tag)])
                    .await
                    .status()
                {
                    StatusCode::CREATED => done += 1,
                    StatusCode::PRECONDITION_FAILED => conflicts += 1,
                    other => panic!("PUT answered {other}"),
                }
                assert!(conflicts < 500, "no progress");
            }
        }
    };
    futures::future::join_all((0..clients).map(worker)).await;
    let total = String::from_utf8(fetch_bytes(&c, &c.balancer_url(), name).await).unwrap();
    assert_eq!(total, (clients * increments).to_string());
}

/// A multipart form with `If-None-Match: *` never overwrites: a part whose name exists is
/// refused with 412, and the existing file is untouched.
#[tokio::test]
async fn create_only_forms() {
    let c = Cluster::builder().nodes(1).balancer(true).start().await;
    for (i, base) in [c.balancer_url(), c.node_url(0)].into_iter().enumerate() {
        let name = format!("form-{i}.txt");
        let form = || {
            reqwest::multipart::Form::new().part(
                "f",
                reqwest::multipart::Part::bytes(b"from the form".to_vec()).file_name(name.clone()),
            )
        };
        let send = |form| {
            c.http
                .post(format!("{base}/upload"))
                .header("if-none-match", "*")
                .multipart(form)
                .send()
        };
        assert_eq!(send(form()).await.unwrap().status(), StatusCode::CREATED);
        put(&c, &base, &name, "replaced").await;
        assert_eq!(
            send(form()).await.unwrap().status(),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(fetch_bytes(&c, &base, &name).await, b"replaced");
    }
}
