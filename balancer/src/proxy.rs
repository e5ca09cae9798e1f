//! THE request path: pick a node, stream the request to it, stream its response back.
//!
//! Retries follow one rule: a request is replayed on another node only when it cannot
//! have been acted on twice. A request that never left (connect refused, or a keep-alive
//! connection that closed before the request was written) goes to another node whatever
//! its method, with an upload body still untouched. A body-less GET/HEAD/DELETE/OPTIONS
//! is also replayed when the node dies before its response head. An upload whose body
//! has started is never replayed: the client gets a 502.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use speedbox_common::headers::X_REQUEST_ID;

use crate::body::{ProxyBody, RequestStream, ResponseStream, UpBody};
use crate::conn::{self, SendError};
use crate::error::{caused_by_dead_peer, ProxyError};
use crate::idle::IdleTimer;
use crate::pool::{InFlight, Pool};
use crate::{page, status};

/// Nodes one request may be offered to before the client gets an error.
const MAX_ATTEMPTS: usize = 4;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The hyper service: every request of every client connection comes through here.
pub async fn handle(
    pool: Arc<Pool>,
    client: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = request_id(request.headers());
    let mut response = if request.uri().path() == status::PATH {
        status::respond(&pool, request.method())
    } else if request.uri().path() == page::PATH {
        page::respond(request.method())
    } else {
        let method = request.method().clone();
        forward(&pool, client, request, &request_id)
            .await
            .unwrap_or_else(|error| {
                error.log(request_id.to_str().unwrap_or_default(), &method);
                error.into_response()
            })
    };
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    Ok(response)
}

async fn forward(
    pool: &Pool,
    client: SocketAddr,
    request: Request<Incoming>,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError> {
    let snapshot = pool.snapshot();
    let cfg = &snapshot.config.balancer;
    let (mut parts, body) = request.into_parts();
    prepare_request(&mut parts, client.ip(), request_id);

    let (body, mut body_done) = if body.is_end_stream() {
        (UpBody::Empty, None)
    } else {
        let (stream, done) = RequestStream::new(body, IdleTimer::new(cfg.idle_timeout()));
        (UpBody::Stream(stream), Some(done))
    };
    // A body-less idempotent request can be rebuilt after the node took it and died.
    let replay = (body_done.is_none() && is_idempotent(&parts.method)).then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let mut request = Request::from_parts(parts, body);

    let mut failed: Vec<usize> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut sent_error: Option<ProxyError> = None;
    while failed.len() < MAX_ATTEMPTS {
        let accept =
            |i: usize, node: &crate::pool::Node| node.state.is_up() && !failed.contains(&i);
        let Some(i) = snapshot.pick(pool.next_cursor(), accept) else {
            break;
        };
        let node = &snapshot.nodes[i];
        let in_flight = node.state.begin();
        let (unsent, reason, dead) = match conn::send(node, request, &mut body_done, cfg).await {
            Ok((response, lease)) => return Ok(prepare_response(response, in_flight, lease, cfg)),
            Err(SendError::Timeout(timeout)) => {
                return Err(ProxyError::ResponseTimeout {
                    node: node.id.clone(),
                    timeout,
                })
            }
            Err(SendError::Connect { request, error }) => {
                (Some(request), error_chain(&error), error.marks_down())
            }
            Err(SendError::Unsent { request, error }) => {
                let dead = caused_by_dead_peer(&error);
                (Some(request), error_chain(&error), dead)
            }
            Err(SendError::Sent(error)) => (None, error_chain(&error), caused_by_dead_peer(&error)),
        };
        if dead {
            node.force_down(reason.clone());
        }
        let upstream = || ProxyError::Upstream {
            node: node.id.clone(),
            reason: reason.clone(),
        };
        request = match (unsent, &replay) {
            (Some(request), _) => *request,
            (None, Some((method, uri, headers))) => {
                sent_error = Some(upstream());
                let mut request = Request::new(UpBody::Empty);
                *request.method_mut() = method.clone();
                *request.uri_mut() = uri.clone();
                *request.headers_mut() = headers.clone();
                request
            }
            (None, None) => return Err(upstream()),
        };
        tracing::info!(
            id = request_id.to_str().unwrap_or_default(),
            method = %request.method(),
            node = %node.id,
            "trying another node: {reason}"
        );
        reasons.push(format!("{}: {reason}", node.id));
        failed.push(i);
    }
    Err(match sent_error {
        Some(error) => error,
        None if reasons.is_empty() => ProxyError::NoHealthyNode,
        None => ProxyError::Unreachable(reasons.join("; ")),
    })
}

/// An error with its causes: hyper's own messages ("error writing a body to connection")
/// leave out the part that says what happened.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    )
}

fn prepare_response(
    response: Response<Incoming>,
    in_flight: InFlight,
    lease: conn::Lease,
    cfg: &speedbox_common::config::BalancerConfig,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let idle = IdleTimer::new(cfg.idle_timeout());
    let body = ResponseStream::new(body, idle, in_flight, lease);
    Response::from_parts(parts, ProxyBody::Upstream(body))
}

/// Rewrites a client's request for a node: hop-by-hop headers out, `X-Forwarded-*` and
/// `X-Request-Id` in, origin-form URI, HTTP/1.1.
pub fn prepare_request(parts: &mut http::request::Parts, client: IpAddr, request_id: &HeaderValue) {
    let headers = &mut parts.headers;
    let host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(headers);
    // hyper's server already answered any 100-continue when we started reading the body
    headers.remove(header::EXPECT);
    let forwarded_for = forwarded_for(headers, client);
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
    headers.insert(X_REQUEST_ID, request_id.clone());
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    parts.version = Version::HTTP_11;
}

/// The existing `X-Forwarded-For` chain (all its lines) with `client` appended.
fn forwarded_for(headers: &HeaderMap, client: IpAddr) -> HeaderValue {
    let mut chain = String::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        if let Ok(value) = value.to_str() {
            let value = value.trim();
            if !value.is_empty() {
                chain.push_str(value);
                chain.push_str(", ");
            }
        }
    }
    chain.push_str(&client.to_string());
    HeaderValue::from_maybe_shared(Bytes::from(chain))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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

/// The client's `X-Request-Id` if it is sane, else a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(X_REQUEST_ID) {
        Some(id) if sane_request_id(id.as_bytes()) => id.clone(),
        _ => {
            let id = format!("{:032x}", fastrand::u128(..));
            HeaderValue::from_maybe_shared(Bytes::from(id))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        }
    }
}

/// Short, printable, and free of anything a log line or a header could trip on.
pub fn sane_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
