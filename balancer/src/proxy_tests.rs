use super::*;

fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = Request::builder().uri(uri).version(Version::HTTP_10);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn forwarding_headers_are_added() {
    let mut p = parts("/files/a.txt?x=1", &[("host", "speedbox.local:3000")]);
    let id = HeaderValue::from_static("req-1");
    prepare_request(&mut p, "10.1.2.3".parse().unwrap(), &id);
    let h = &p.headers;
    assert_eq!(values(h, "x-forwarded-for"), ["10.1.2.3"]);
    assert_eq!(values(h, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(h, "x-forwarded-host"), ["speedbox.local:3000"]);
    assert_eq!(values(h, "x-request-id"), ["req-1"]);
    assert_eq!(values(h, "host"), ["speedbox.local:3000"], "Host is kept");
    assert_eq!(p.uri, "/files/a.txt?x=1");
    assert_eq!(p.version, Version::HTTP_11);
}

#[test]
fn forwarded_for_chain_is_appended_to() {
    let mut p = parts(
        "/",
        &[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
            ("x-forwarded-host", "spoofed"),
            ("x-request-id", "client-id"),
        ],
    );
    prepare_request(
        &mut p,
        "::1".parse().unwrap(),
        &HeaderValue::from_static("ours"),
    );
    assert_eq!(
        values(&p.headers, "x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 3.3.3.3, ::1"]
    );
    assert!(
        p.headers.get("x-forwarded-host").is_none(),
        "no Host, no X-Forwarded-Host"
    );
    assert_eq!(values(&p.headers, "x-request-id"), ["ours"]);
}

#[test]
fn hop_by_hop_headers_are_stripped() {
    let mut p = parts(
        "/files/x",
        &[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "upgrade"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic xyz"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-digest"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("expect", "100-continue"),
            ("content-length", "10"),
            ("content-type", "text/plain"),
            ("range", "bytes=0-1"),
        ],
    );
    prepare_request(
        &mut p,
        "127.0.0.1".parse().unwrap(),
        &HeaderValue::from_static("id"),
    );
    let mut names: Vec<&str> = p.headers.keys().map(|n| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "content-length",
            "content-type",
            "range",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-request-id"
        ]
    );
}

#[test]
fn response_hop_by_hop_headers_are_stripped() {
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("close"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.insert("x-speedbox-node", HeaderValue::from_static("node-1"));
    headers.insert("etag", HeaderValue::from_static("\"abc\""));
    strip_hop_by_hop(&mut headers);
    let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["etag", "x-speedbox-node"]);
}

#[test]
fn absolute_form_becomes_origin_form() {
    let mut p = parts("http://example.com:8080/files/a?b=c", &[]);
    prepare_request(
        &mut p,
        "127.0.0.1".parse().unwrap(),
        &HeaderValue::from_static("id"),
    );
    assert_eq!(p.uri, "/files/a?b=c");
}

#[test]
fn sane_request_ids_are_kept_and_others_replaced() {
    for good in ["abc", "0f3a-77", "trace:1.2/3+4=", &"x".repeat(128)] {
        assert!(sane_request_id(good.as_bytes()), "{good}");
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_str(good).unwrap());
        assert_eq!(request_id(&headers), good);
    }
    for bad in [
        "",
        "has space",
        "quote\"",
        "semi;colon",
        "tab\t",
        &"x".repeat(129),
    ] {
        assert!(!sane_request_id(bad.as_bytes()), "{bad:?}");
    }
    let mut headers = HeaderMap::new();
    headers.insert(X_REQUEST_ID, HeaderValue::from_static("bad id"));
    let generated = request_id(&headers);
    assert_eq!(generated.len(), 32);
    assert!(sane_request_id(generated.as_bytes()));
    assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
}

#[test]
fn only_safe_methods_are_replayed() {
    for m in [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS] {
        assert!(is_idempotent(&m));
    }
    for m in [Method::PUT, Method::POST, Method::PATCH] {
        assert!(!is_idempotent(&m));
    }
}

#[test]
fn error_chains_name_the_cause() {
    #[derive(Debug, thiserror::Error)]
    #[error("error writing a body to connection")]
    struct Outer(#[source] std::io::Error);
    let error = Outer(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "broken pipe",
    ));
    assert_eq!(
        error_chain(&error),
        "error writing a body to connection: broken pipe"
    );
}
