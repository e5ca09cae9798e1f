//! `POST /upload`: multipart/form-data from a browser form or `curl -F f=@file`.
//!
//! Each file part is streamed into storage under its part's filename as it arrives (multer
//! parses the stream; no part is held whole in memory). Parts without a filename (plain form
//! fields) are skipped.

use futures::TryStreamExt;
use http::HeaderMap;
use http_body_util::BodyDataStream;
use hyper::body::Incoming;

use crate::conditional::Preconditions;
use crate::digest::Expected;
use crate::error::{NodeError, Result};
use crate::routes::check_name;
use crate::store::{FileInfo, Guard, Store};
use crate::upload::{store_stream, Limits};

/// Stores every file part of the form; fails if there is none.
pub async fn store_form(
    store: &Store,
    headers: &HeaderMap,
    body: Incoming,
    limits: Limits,
) -> Result<Vec<FileInfo>> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        NodeError::BadRequest(
            "POST /upload needs Content-Type: multipart/form-data with a boundary".into(),
        )
    })?;
    // The request's preconditions apply to each part's name (`If-None-Match: *`: a form
    // that never overwrites).
    let preconditions = Preconditions::from_headers(headers);
    let guard = preconditions.write_guard();
    let stream = BodyDataStream::new(body);
    let mut form = multer::Multipart::new(stream, boundary);
    let mut stored = Vec::new();
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let Some(filename) = field.file_name().map(str::to_string) else {
            continue;
        };
        let name = check_name(filename)?;
        let part_type = field.content_type().map(|m| m.to_string());
        let data = field.map_err(form_error);
        let info = store_stream(
            store,
            &name,
            part_type
                .as_deref()
                .filter(|t| *t != "application/octet-stream"),
            &Expected::default(),
            data,
            limits,
            guard.as_ref().map(|g| g as Guard<'_>),
        )
        .await?;
        stored.push(info);
    }
    if stored.is_empty() {
        return Err(NodeError::BadRequest(
            "the form has no file part (a part with a filename)".into(),
        ));
    }
    Ok(stored)
}

fn form_error(e: multer::Error) -> NodeError {
    NodeError::Body(format!("multipart: {e}"))
}
