use super::*;

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
