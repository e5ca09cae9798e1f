//! JSON responses, the shape of every answer speedbox makes itself.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// A response with `value` serialised as its JSON body.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": message}` with `status`, marked with `x-speedbox-error: <component>`.
pub fn error(status: StatusCode, component: &'static str, message: &str) -> Response<Full<Bytes>> {
    let mut response = json(status, &serde_json::json!({ "error": message }));
    response.headers_mut().insert(
        crate::headers::X_SPEEDBOX_ERROR,
        HeaderValue::from_static(component),
    );
    response
}
