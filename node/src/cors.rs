//! CORS for the file API and tus: browsers on other origins may call both, with the headers
//! tus clients send and read.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::error::Result;
use crate::respond;
use crate::Body;

/// Headers browsers may send and read across origins, for tus clients and the file API.
pub const CORS_ALLOW_HEADERS: &str = "authorization, content-type, content-md5, repr-digest, range, if-none-match, if-range, x-request-id, x-http-method-override, tus-resumable, upload-length, upload-offset, upload-metadata, upload-checksum, upload-defer-length, upload-concat";
pub const CORS_EXPOSE_HEADERS: &str = "location, upload-offset, upload-length, upload-metadata, upload-expires, tus-version, tus-resumable, tus-extension, tus-max-size, tus-checksum-algorithm, content-range, content-length, etag, x-request-id, x-speedbox-node, x-speedbox-error";
pub const CORS_ALLOW_METHODS: &str = "GET, HEAD, PUT, POST, PATCH, DELETE, OPTIONS";

/// Adds CORS headers to a response for a request that came with `Origin`.
pub fn add_cors(origin: Option<&HeaderValue>, response: &mut HeaderMap) {
    if origin.is_none() {
        return;
    }
    response.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
}

/// The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub fn preflight() -> Result<Response<Body>> {
    respond::empty(
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, CORS_ALLOW_METHODS)
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS)
            .header(header::ACCESS_CONTROL_MAX_AGE, "86400"),
    )
}
