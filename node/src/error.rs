//! `NodeError`: everything a request can fail with, and the one place it becomes HTTP.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use speedbox_common::auth::AuthError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no file named {0:?}")]
    NotFound(String),
    #[error("no route for {0}")]
    NoRoute(String),
    /// `GET /media/NAME` of a name that is not a video (or not there).
    #[error("no video named {0:?}")]
    NotAVideo(String),
    #[error("method {method} not allowed; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("range not satisfiable")]
    RangeNotSatisfiable { length: u64 },
    #[error("file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{header} does not match the body: expected {expected}, got {actual}")]
    DigestMismatch {
        header: &'static str,
        expected: String,
        actual: String,
    },
    #[error("request body: {0}")]
    Body(String),
    #[error("the client sent nothing for {0} s")]
    BodyIdle(u64),
    #[error("database unavailable: {0}")]
    Database(#[from] mongodb::error::Error),
    #[error("stored file is damaged: {0}")]
    Corrupt(String),
    /// A bug or a runtime shutting down (a background task that panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("Tus-Resumable: 1.0.0 is required")]
    TusVersion,
    #[error("{0} is being written by another request; retry shortly")]
    Locked(String),
    #[error("{0}")]
    Gone(String),
    #[error("Upload-Offset {got} does not match the upload's offset {expected}")]
    OffsetMismatch { expected: i64, got: i64 },
    #[error("Upload-Checksum does not match the bytes received; they were discarded")]
    ChecksumMismatch,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// RFC 9110 §13: a conditional write or read whose precondition is false.
    #[error("precondition failed for {0:?}: it was not changed")]
    PreconditionFailed(String),
    /// 401 (no valid token) or 403 (the token does not cover the request).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// tus 1.0's "460 Checksum Mismatch".
pub const CHECKSUM_MISMATCH: u16 = 460;

impl NodeError {
    pub fn status(&self) -> StatusCode {
        use NodeError::*;
        match self {
            BadRequest(_) | DigestMismatch { .. } | Body(_) => StatusCode::BAD_REQUEST,
            NotFound(_) | NoRoute(_) | NotAVideo(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyIdle(_) => StatusCode::REQUEST_TIMEOUT,
            Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            Corrupt(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            TusVersion => StatusCode::PRECONDITION_FAILED,
            Locked(_) => StatusCode::LOCKED,
            Gone(_) => StatusCode::GONE,
            OffsetMismatch { .. } => StatusCode::CONFLICT,
            ChecksumMismatch => {
                StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST)
            }
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Auth(e) => e.status(),
        }
    }

    /// The JSON error response, with the headers some statuses require.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let mut response = speedbox_common::respond::error(status, "node", &self.to_string());
        let headers = response.headers_mut();
        match &self {
            NodeError::RangeNotSatisfiable { length } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{length}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            NodeError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            NodeError::Database(_) | NodeError::Locked(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            NodeError::Auth(e) => {
                if let Some(challenge) = e.challenge() {
                    headers.insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                }
            }
            _ => {}
        }
        response
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::NodeError::*;
    use super::*;

    /// Clients retry 5xx and give up on 4xx: our own faults must never be 4xx.
    #[test]
    fn status_classes() {
        let client = [
            BadRequest("x".into()),
            NotFound("x".into()),
            NoRoute("x".into()),
            RangeNotSatisfiable { length: 1 },
            TooLarge { limit: 1 },
            Body("client went away".into()),
            BodyIdle(1),
            TusVersion,
            Locked("x".into()),
            Gone("x".into()),
            OffsetMismatch {
                expected: 1,
                got: 2,
            },
            ChecksumMismatch,
            UnsupportedMediaType("x".into()),
            PreconditionFailed("x".into()),
            Auth(AuthError::Missing),
            Auth(AuthError::Expired),
            Auth(AuthError::Forbidden("x".into())),
        ];
        for e in client {
            assert!(e.status().is_client_error(), "{e:?}");
        }
        for e in [Corrupt("x".into()), Internal("x".into())] {
            assert!(e.status().is_server_error(), "{e:?}");
        }
        assert_eq!(Locked("x".into()).status(), StatusCode::LOCKED);
        assert_eq!(ChecksumMismatch.status().as_u16(), 460);
        assert_eq!(PreconditionFailed("x".into()).status(), 412);
        assert_eq!(Auth(AuthError::Revoked).status(), 401);
        assert_eq!(Auth(AuthError::Forbidden("x".into())).status(), 403);
        let challenge = Auth(AuthError::Missing).into_response();
        assert_eq!(
            challenge.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"speedbox\""
        );
    }
}
