//! The browser upload page at `/`: one self-contained HTML file (no CDN, no build step
//! of its own) compiled into the binary. It talks to the same API as every client: tus at
//! `/uploads` for resumable uploads with progress, `/files` for the list, downloads and
//! deletes, `/media` for the state of video jobs.
//!
//! Its one library, hls.js (pinned in `static/vendor`), is served at [`HLS_PATH`] when the
//! build found it (`build.rs`); without it that path is a 404 and the page plays videos
//! progressively.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use speedbox_common::respond;

use crate::down_body::DownBody;
use crate::error::ProxyError;

/// The path the page is served at.
pub const PATH: &str = "/";
/// The path of hls.js. The page asks for it with `?v=<content hash>`, so it is cached
/// for a year: a new version comes with a new URL.
pub const HLS_PATH: &str = "/assets/hls.min.js";

/// The page, with the hls.js URL (or `null`) filled in by `build.rs`.
const INDEX: &str = include_str!(concat!(env!("OUT_DIR"), "/index.html"));
/// hls.js, empty when the build did not find it.
const HLS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

/// Whether `path` is the page's or one of its assets (the balancer answers it itself).
pub fn serves(path: &str) -> bool {
    path == PATH || path == HLS_PATH
}

/// GET or HEAD of the page or an asset; `path` is one that [`serves`] accepts.
pub fn respond(method: &Method, path: &str) -> Response<DownBody> {
    if method != Method::GET && method != Method::HEAD {
        return ProxyError::MethodNotAllowed(method.clone()).into_response();
    }
    let (content, content_type, cache) = if path == HLS_PATH {
        if HLS.is_empty() {
            let message = "hls.js is not built into this balancer (scripts/setup installs it)";
            return respond::error(StatusCode::NOT_FOUND, "balancer", message).map(DownBody::from);
        }
        (
            HLS,
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        )
    } else {
        (INDEX.as_bytes(), "text/html; charset=utf-8", "no-cache")
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(content)
    };
    let mut response = Response::new(DownBody::Full(Full::new(body)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content.len()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
