//! One rule for `X-Request-Id`, on the balancer and every node: a sane id from the client
//! (or the balancer in front) is kept, so one id follows a request through the cluster and
//! into every log line; anything else is replaced by a fresh random one.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::headers::X_REQUEST_ID;

/// The request's id: its `X-Request-Id` if [`is_sane`], else 32 random hex digits.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(X_REQUEST_ID) {
        Some(id) if is_sane(id.as_bytes()) => id.clone(),
        _ => {
            let id = format!("{:032x}", fastrand::u128(..));
            HeaderValue::from_maybe_shared(Bytes::from(id))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        }
    }
}

/// 1 to 128 bytes of `[A-Za-z0-9-_.:+/=]`: short, printable, and free of anything a log
/// line or a header could trip on.
pub fn is_sane(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        for good in ["abc", "0f3a-77", "trace:1.2/3+4=", &"x".repeat(128)] {
            assert!(is_sane(good.as_bytes()), "{good}");
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
            assert!(!is_sane(bad.as_bytes()), "{bad:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("bad id"));
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 32);
        assert!(is_sane(generated.as_bytes()));
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
