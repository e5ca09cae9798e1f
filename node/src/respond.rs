//! Building responses: every answer the node makes goes through these helpers, so bodies,
//! JSON shapes and builder failures are handled in one place.

use bytes::Bytes;
use http::{response, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::error::{NodeError, Result};
use crate::store::FileInfo;
use crate::Body;

/// A body with no bytes.
pub fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `builder` finished with an empty body.
///
/// Errors: [`NodeError::Internal`] when a header value set on the builder was invalid (our
/// fault, so a 500).
pub fn empty(builder: response::Builder) -> Result<Response<Body>> {
    body(builder, empty_body())
}

/// `builder` finished with `body`; errors as [`empty`].
pub fn body(builder: response::Builder, body: Body) -> Result<Response<Body>> {
    builder
        .body(body)
        .map_err(|e| NodeError::Internal(format!("cannot build response: {e}")))
}

/// `204 No Content`.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// `value` as a JSON body with `status`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(speedbox_common::respond::json(status, value))
}

/// An error as the node's JSON error response (`{"error": …}`, see [`NodeError::status`]).
pub fn error(e: NodeError) -> Response<Body> {
    full(e.into_response())
}

/// `response` with its body boxed as the node's [`Body`].
pub fn full(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

/// The JSON shape of a stored file, as PUT answers and GET /files lists it:
/// `{id, name, length (bytes), content_type, md5, sha256 (hex), uploaded_at (RFC 3339)}`.
pub fn file_json(info: &FileInfo) -> serde_json::Value {
    json!({
        "id": info.file_id.to_hex(),
        "name": info.name,
        "length": info.length,
        "content_type": info.content_type,
        "md5": info.md5,
        "sha256": info.sha256,
        "uploaded_at": info.uploaded_at.try_to_rfc3339_string().unwrap_or_default(),
    })
}
