//! How a request's headers change on the way to a node: hop-by-hop headers out, the
//! forwarding headers (`X-Forwarded-*`, RFC 7239 `Forwarded`) in, origin-form URI,
//! HTTP/1.1, and an `Expect: 100-continue` passed on so the node decides (see
//! [`crate::expect`]).
//!
//! Forwarding headers are only believed from `[balancer] trusted_proxies`: from such a
//! peer (a TLS terminator) they are kept and extended, so the node can tell the client's
//! `https://public-host` address; from anyone else they are replaced, so a client cannot
//! make a node hand out URLs on another host or fake its own address.

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};
use speedbox_common::forwarded::{Element, TrustedProxies};
use speedbox_common::headers::{SPEEDBOX_UPLOAD, SPEEDBOX_UPLOAD_OFFSET, X_REQUEST_ID};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Rewrites a client's request for a node. Returns whether the client sent
/// `Expect: 100-continue` (RFC 9110 §10.1.1), which is then forwarded as is; any other
/// expectation is dropped.
pub fn prepare_request(
    parts: &mut http::request::Parts,
    client: IpAddr,
    request_id: &HeaderValue,
    trusted: &TrustedProxies,
) -> bool {
    let headers = &mut parts.headers;
    // HTTP/1.0 clients never wait for a 100 (RFC 9110 §10.1.1), and hyper sends none.
    let expect_continue = parts.version != Version::HTTP_10 && expects_continue(headers);
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    if expect_continue {
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
    }
    set_forwarding(headers, client, trusted.contains(client));
    headers.insert(X_REQUEST_ID, request_id.clone());
    // The balancer's own word to a node (see crate::protect), never a client's.
    headers.remove(SPEEDBOX_UPLOAD);
    headers.remove(SPEEDBOX_UPLOAD_OFFSET);
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    parts.version = Version::HTTP_11;
    expect_continue
}

/// `Expect: 100-continue`, compared case-insensitively (RFC 9110 §10.1.1).
fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get_all(header::EXPECT).iter().any(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    })
}

/// X-Forwarded-For gets `client` appended to a trusted chain or replaces an untrusted
/// one; X-Forwarded-Proto/-Host from a trusted peer are kept as given (absent stays
/// absent, so a node falls back to `Forwarded`), else set to `http` and `Host`.
/// `Forwarded` (RFC 7239 §4) gets this hop's element appended or replaces the header.
fn set_forwarding(headers: &mut HeaderMap, client: IpAddr, trusted: bool) {
    let host = headers.get(header::HOST).cloned();
    let element = Element {
        peer: client,
        proto: "http",
        host: host.as_ref().and_then(|h| h.to_str().ok()),
    }
    .to_string();
    let (for_chain, forwarded) = if trusted {
        (
            joined(headers, X_FORWARDED_FOR, &client.to_canonical().to_string()),
            joined(headers, header::FORWARDED, &element),
        )
    } else {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
        (
            header_value(client.to_canonical().to_string().into()),
            header_value(element.into()),
        )
    };
    headers.insert(X_FORWARDED_FOR, for_chain);
    headers.insert(header::FORWARDED, forwarded);
}

/// Every line of `name` joined into one comma-separated list, with `last` appended.
fn joined(headers: &HeaderMap, name: HeaderName, last: &str) -> HeaderValue {
    let mut list = BytesMut::new();
    for value in headers.get_all(&name) {
        let value = value.as_bytes().trim_ascii();
        if !value.is_empty() {
            list.put_slice(value);
            list.put_slice(b", ");
        }
    }
    list.put_slice(last.as_bytes());
    header_value(list.freeze())
}

fn header_value(bytes: Bytes) -> HeaderValue {
    // Built from header values and printable text: cannot fail, but never panic here.
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Removes the headers that describe one connection rather than the message (RFC 9110
/// 7.6.1): `Connection` and every header it names, plus the well-known ones.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
