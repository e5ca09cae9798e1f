//! Everything that can go wrong on the request path, and the one place it becomes HTTP.
//!
//! Responses made here carry `x-speedbox-error: balancer`, so a client (or a test) can
//! tell the balancer's own answer from a node's.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use speedbox_common::auth::AuthError;
use speedbox_common::respond;

use crate::limits::Refused;

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no healthy node")]
    NoHealthyNode,
    /// Every node tried failed before the request reached it, so it is safe to say
    /// "try again later" rather than "something broke".
    #[error("no node could take the request ({0})")]
    Unreachable(String),
    #[error("node {node} failed before answering: {reason}")]
    Upstream { node: String, reason: String },
    #[error("node {node} sent no response headers within {timeout:?}")]
    ResponseTimeout { node: String, timeout: Duration },
    #[error("{0} is not allowed here")]
    MethodNotAllowed(http::Method),
    /// The balancer's own endpoints: 401 without a valid token, 403 without `admin`.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `[limits]`: over the request rate or the transfers at once (429).
    #[error("too many requests: retry in {} s", .0.retry_secs())]
    Limited(Refused),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoHealthyNode | ProxyError::Unreachable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Auth(e) => e.status(),
            ProxyError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Logs it with the request's id and method (problems with nodes at warn; an empty
    /// cluster is already logged by the health flips). Explicit fields rather than a span
    /// per request: a span costs every request, this only the failed ones.
    pub fn log(&self, request_id: &str, method: &Method) {
        let status = self.status().as_u16();
        match self {
            ProxyError::NoHealthyNode
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::Auth(_)
            | ProxyError::Limited(_) => tracing::debug!(id = request_id, %method, status, "{self}"),
            _ => tracing::warn!(id = request_id, %method, status, "{self}"),
        }
    }

    /// The JSON error response, in whatever body type the caller sends
    /// ([`DownBody`](crate::down_body::DownBody) on the request path).
    pub fn into_response<B: From<Full<Bytes>>>(self) -> Response<B> {
        let status = self.status();
        let message = self.to_string();
        let mut response = respond::error(status, "balancer", &message);
        match &self {
            ProxyError::Auth(e) => {
                if let Some(challenge) = e.challenge() {
                    response.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static(challenge),
                    );
                }
            }
            ProxyError::Limited(refused) => refused.add_headers(response.headers_mut()),
            _ => {}
        }
        response.map(B::from)
    }
}

/// Why a connection to a node could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("handshake: {0}")]
    Handshake(#[source] hyper::Error),
}

impl ConnectError {
    /// Refused, reset or unanswered connects take a node down without waiting for the
    /// active check.
    pub fn marks_down(&self) -> bool {
        match self {
            ConnectError::Io(e) => is_dead_peer(e.kind()),
            ConnectError::Timeout(_) => true,
            ConnectError::Handshake(_) => false,
        }
    }
}

/// Why a body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("no byte moved for {0:?}")]
    Idle(Duration),
    /// The node answered an `Expect: 100-continue` request without asking for its body.
    #[error("the node answered before asking for the body")]
    Withdrawn,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// A download's node broke off and the file changed before another node could send
    /// the rest (its `If-Match` failed): the client's connection is cut.
    #[error("the file changed while it was being sent")]
    Changed,
    /// A download's node broke off and no other node could send the rest.
    #[error("the download could not be continued: {0}")]
    NotContinued(String),
    /// An upload's attempt on a node that died: its continuation on another node now
    /// takes the client's bytes.
    #[error("the upload goes on over another connection")]
    Superseded,
}

/// The peer process is gone or refuses connections, as opposed to a slow or confused one.
pub fn is_dead_peer(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// True when an I/O error somewhere under `err` says the peer is dead. Below a
/// [`BodyError`] (a body the balancer was sending failed: the client's upload broke off),
/// a reset is the client's, never the node's: a client that aborts its upload must not
/// take a healthy node down.
pub fn caused_by_dead_peer(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<BodyError>().is_some() {
            return false;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if is_dead_peer(io.kind()) {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_map_to_marked_json() {
        let cases = [
            (ProxyError::NoHealthyNode, 503),
            (ProxyError::Unreachable("node-1: refused".into()), 503),
            (
                ProxyError::ResponseTimeout {
                    node: "node-1".into(),
                    timeout: Duration::from_secs(1),
                },
                504,
            ),
            (ProxyError::MethodNotAllowed(http::Method::POST), 405),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let response: Response<Full<Bytes>> = err.into_response();
            assert_eq!(response.status().as_u16(), code);
            assert_eq!(response.headers()["x-speedbox-error"], "balancer");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"], message);
        }
    }

    #[test]
    fn dead_peer_is_found_through_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] io::Error);
        let reset = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(caused_by_dead_peer(&reset));
        let eof = Wrapper(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(!caused_by_dead_peer(&eof));
        assert!(ConnectError::Io(io::ErrorKind::ConnectionRefused.into()).marks_down());
        assert!(ConnectError::Timeout(Duration::from_secs(1)).marks_down());
    }
}
