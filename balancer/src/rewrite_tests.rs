use super::*;
use http::Request;

fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = Request::builder().uri(uri).version(Version::HTTP_11);
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

fn trusted(nets: &[&str]) -> TrustedProxies {
    TrustedProxies::parse(nets).unwrap()
}

fn prepare(p: &mut http::request::Parts, client: &str, nets: &[&str]) -> bool {
    let id = HeaderValue::from_static("req-1");
    prepare_request(p, client.parse().unwrap(), &id, &trusted(nets))
}

#[test]
fn forwarding_headers_are_added() {
    let mut p = parts("/files/a.txt?x=1", &[("host", "speedbox.local:3000")]);
    p.version = Version::HTTP_10;
    assert!(!prepare(&mut p, "10.1.2.3", &[]));
    let h = &p.headers;
    assert_eq!(values(h, "x-forwarded-for"), ["10.1.2.3"]);
    assert_eq!(values(h, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(h, "x-forwarded-host"), ["speedbox.local:3000"]);
    assert_eq!(
        values(h, "forwarded"),
        ["for=10.1.2.3;proto=http;host=\"speedbox.local:3000\""]
    );
    assert_eq!(values(h, "x-request-id"), ["req-1"]);
    assert_eq!(values(h, "host"), ["speedbox.local:3000"], "Host is kept");
    assert_eq!(p.uri, "/files/a.txt?x=1");
    assert_eq!(p.version, Version::HTTP_11);
}

const SPOOFED: &[(&str, &str)] = &[
    ("host", "10.0.0.2:3000"),
    ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
    ("x-forwarded-for", "3.3.3.3"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "public.example"),
    ("forwarded", "for=1.1.1.1;proto=https;host=public.example"),
    ("forwarded", "for=2.2.2.2"),
];

#[test]
fn an_untrusted_peer_gets_its_forwarding_headers_replaced() {
    let mut p = parts("/", SPOOFED);
    prepare(&mut p, "::1", &["10.0.0.0/8"]);
    let h = &p.headers;
    assert_eq!(values(h, "x-forwarded-for"), ["::1"]);
    assert_eq!(values(h, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(h, "x-forwarded-host"), ["10.0.0.2:3000"]);
    assert_eq!(
        values(h, "forwarded"),
        ["for=\"[::1]\";proto=http;host=\"10.0.0.2:3000\""]
    );
    let mut p = parts("/", &[("x-forwarded-host", "spoofed")]);
    prepare(&mut p, "127.0.0.1", &[]);
    assert!(
        p.headers.get("x-forwarded-host").is_none(),
        "no Host, no X-Forwarded-Host"
    );
    assert_eq!(
        values(&p.headers, "forwarded"),
        ["for=127.0.0.1;proto=http"]
    );
}

#[test]
fn a_trusted_peer_gets_its_forwarding_headers_kept_and_extended() {
    let mut p = parts("/", SPOOFED);
    prepare(&mut p, "10.0.0.1", &["10.0.0.0/8", "::1/128"]);
    let h = &p.headers;
    assert_eq!(
        values(h, "x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"]
    );
    assert_eq!(values(h, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(h, "x-forwarded-host"), ["public.example"]);
    assert_eq!(
        values(h, "forwarded"),
        ["for=1.1.1.1;proto=https;host=public.example, for=2.2.2.2, \
          for=10.0.0.1;proto=http;host=\"10.0.0.2:3000\""]
    );
    // only Forwarded: X-Forwarded-Proto/-Host stay absent so the node reads Forwarded
    let mut p = parts(
        "/",
        &[
            ("host", "10.0.0.2"),
            (
                "forwarded",
                "for=\"[2001:db8::7]\";proto=https;host=up.example",
            ),
        ],
    );
    prepare(&mut p, "::ffff:10.0.0.1", &["10.0.0.0/8"]);
    let h = &p.headers;
    assert_eq!(values(h, "x-forwarded-for"), ["10.0.0.1"]);
    assert!(h.get("x-forwarded-proto").is_none() && h.get("x-forwarded-host").is_none());
    assert_eq!(
        values(h, "forwarded"),
        ["for=\"[2001:db8::7]\";proto=https;host=up.example, for=10.0.0.1;proto=http;host=10.0.0.2"]
    );
}

#[test]
fn hop_by_hop_headers_are_stripped_and_100_continue_is_kept() {
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
            ("expect", "100-Continue"),
            ("content-length", "10"),
            ("content-type", "text/plain"),
            ("range", "bytes=0-1"),
        ],
    );
    assert!(prepare(&mut p, "127.0.0.1", &[]));
    let mut names: Vec<&str> = p.headers.keys().map(|n| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "content-length",
            "content-type",
            "expect",
            "forwarded",
            "range",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-request-id"
        ]
    );
    assert_eq!(values(&p.headers, "expect"), ["100-continue"]);
}

#[test]
fn other_expectations_and_http10_expect_are_dropped() {
    let mut p = parts("/", &[("expect", "something-else")]);
    assert!(!prepare(&mut p, "127.0.0.1", &[]));
    assert!(p.headers.get("expect").is_none());
    let mut p = parts("/", &[("expect", "100-continue")]);
    p.version = Version::HTTP_10;
    assert!(!prepare(&mut p, "127.0.0.1", &[]));
    assert!(p.headers.get("expect").is_none());
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
    prepare(&mut p, "127.0.0.1", &[]);
    assert_eq!(p.uri, "/files/a?b=c");
}
