//! The browser upload page at `/`: one self-contained HTML file (no CDN, no build step)
//! compiled into the binary. It talks to the same API as every client: tus at `/uploads`
//! for resumable uploads with progress, `/files` for the list, downloads and deletes.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::down_body::DownBody;
use crate::error::ProxyError;

/// The path the page is served at.
pub const PATH: &str = "/";

const INDEX: &str = include_str!("../static/index.html");

/// GET or HEAD of the page.
pub fn respond(method: &Method) -> Response<DownBody> {
    if method != Method::GET && method != Method::HEAD {
        return ProxyError::MethodNotAllowed(method.clone()).into_response();
    }
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(INDEX.as_bytes())
    };
    let mut response = Response::new(DownBody::Full(Full::new(body)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(INDEX.len()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
