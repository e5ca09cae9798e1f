use super::*;

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
