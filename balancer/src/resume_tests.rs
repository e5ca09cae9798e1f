use super::*;

fn head(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn whole(len: &str) -> HeaderMap {
    head(&[
        ("etag", "\"abc\""),
        ("content-length", len),
        ("accept-ranges", "bytes"),
    ])
}

#[test]
fn a_whole_file_is_planned_from_its_length() {
    let plan = plan(&Method::GET, StatusCode::OK, &whole("1000")).unwrap();
    assert_eq!(
        (plan.first, plan.last, plan.total, plan.len()),
        (0, 999, 1000, 1000)
    );
    assert_eq!(plan.range(0), "bytes=0-999");
    assert_eq!(plan.range(400), "bytes=400-999");
}

#[test]
fn a_range_is_planned_from_its_content_range() {
    let headers = head(&[
        ("etag", "\"abc\""),
        ("content-length", "100"),
        ("content-range", "bytes 500-599/1000"),
    ]);
    let plan = plan(&Method::GET, StatusCode::PARTIAL_CONTENT, &headers).unwrap();
    assert_eq!(
        (plan.first, plan.last, plan.total, plan.len()),
        (500, 599, 1000, 100)
    );
    assert_eq!(plan.range(1), "bytes=501-599");
}

#[test]
fn what_cannot_be_continued_is_not_planned() {
    let get = Method::GET;
    let cases: Vec<(&str, Method, StatusCode, HeaderMap)> = vec![
        (
            "HEAD has no body",
            Method::HEAD,
            StatusCode::OK,
            whole("10"),
        ),
        ("empty", get.clone(), StatusCode::OK, whole("0")),
        (
            "an error answer",
            get.clone(),
            StatusCode::NOT_FOUND,
            whole("10"),
        ),
        (
            "no etag",
            get.clone(),
            StatusCode::OK,
            head(&[("content-length", "10"), ("accept-ranges", "bytes")]),
        ),
        (
            "a weak etag",
            get.clone(),
            StatusCode::OK,
            head(&[
                ("etag", "W/\"abc\""),
                ("content-length", "10"),
                ("accept-ranges", "bytes"),
            ]),
        ),
        (
            "chunked (no length)",
            get.clone(),
            StatusCode::OK,
            head(&[("etag", "\"abc\""), ("accept-ranges", "bytes")]),
        ),
        (
            "no ranges offered",
            get.clone(),
            StatusCode::OK,
            head(&[("etag", "\"abc\""), ("content-length", "10")]),
        ),
        (
            "encoded",
            get.clone(),
            StatusCode::OK,
            head(&[
                ("etag", "\"abc\""),
                ("content-length", "10"),
                ("accept-ranges", "bytes"),
                ("content-encoding", "gzip"),
            ]),
        ),
        (
            "multipart ranges",
            get.clone(),
            StatusCode::PARTIAL_CONTENT,
            head(&[
                ("etag", "\"abc\""),
                ("content-length", "300"),
                ("content-type", "multipart/byteranges; boundary=x"),
            ]),
        ),
        (
            "a length that does not match the range",
            get,
            StatusCode::PARTIAL_CONTENT,
            head(&[
                ("etag", "\"abc\""),
                ("content-length", "99"),
                ("content-range", "bytes 500-599/1000"),
            ]),
        ),
    ];
    for (what, method, status, headers) in cases {
        assert_eq!(plan(&method, status, &headers), None, "{what}");
    }
}

#[test]
fn only_the_exact_rest_of_the_same_revision_is_spliced_on() {
    let plan = plan(&Method::GET, StatusCode::OK, &whole("1000")).unwrap();
    let rest = |etag: &str, range: &str| {
        head(&[
            ("etag", etag),
            ("content-range", range),
            ("content-length", "600"),
        ])
    };
    let ok = StatusCode::PARTIAL_CONTENT;
    assert_eq!(
        plan.check(ok, &rest("\"abc\"", "bytes 400-999/1000"), 400),
        Ok(())
    );
    assert_eq!(
        plan.check(StatusCode::PRECONDITION_FAILED, &HeaderMap::new(), 400),
        Err(Refusal::Changed)
    );
    assert_eq!(
        plan.check(ok, &rest("\"new\"", "bytes 400-999/1000"), 400),
        Err(Refusal::Changed)
    );
    for (status, headers) in [
        (StatusCode::OK, whole("1000")),
        (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new()),
        (ok, rest("\"abc\"", "bytes 401-999/1000")),
        (ok, rest("\"abc\"", "bytes 400-998/1000")),
        (ok, rest("\"abc\"", "bytes 400-999/2000")),
        (ok, rest("\"abc\"", "bytes */1000")),
    ] {
        assert!(
            matches!(plan.check(status, &headers, 400), Err(Refusal::Unusable(_))),
            "{status} {headers:?}"
        );
    }
}
