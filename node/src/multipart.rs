//! `POST /upload`: multipart/form-data from a browser form or `curl -F f=@file`.
//!
//! Each file part is streamed into storage under its part's filename as it arrives (multer
//! splits the stream; no part is held whole in memory). Which parts are files, and their
//! names, come from our own [`disposition`](crate::disposition) parser of the raw header.
//! Plain form fields are ignored. A file input left empty arrives as a part with
//! `filename=""` and no bytes (RFC 7578 §4.2, HTML's form encoding): it is skipped, reported
//! in the reply, and does not spoil the files beside it.

use futures::TryStreamExt;
use http::HeaderMap;
use http_body_util::BodyDataStream;
use serde::Serialize;
use speedbox_common::auth::{Principal, Scope};

use crate::conditional::Preconditions;
use crate::digest::Expected;
use crate::disposition;
use crate::error::{NodeError, Result};
use crate::name::check_name;
use crate::store::{FileInfo, Store};
use crate::upload::{store_stream, Limits};
use crate::ReqBody;

/// What a form upload did: the files stored, and the file parts passed over.
#[derive(Debug, Default)]
pub struct FormOutcome {
    pub stored: Vec<FileInfo>,
    pub skipped: Vec<Skipped>,
}

/// A file part that was not stored, as the reply lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The form field's name (`name=` of its Content-Disposition), or "" without one.
    pub field: String,
    pub reason: &'static str,
}

/// Why a part with `filename=""` is skipped: a file input with no file chosen.
pub const EMPTY_FILENAME: &str = "empty filename";

/// Stores every file part of the form; fails if none is stored, and at the first part
/// whose name `principal` may not write (403; the parts before it stay stored, as with a
/// part whose name is invalid).
pub async fn store_form(
    store: &Store,
    principal: &Principal,
    headers: &HeaderMap,
    body: ReqBody,
    limits: Limits,
) -> Result<FormOutcome> {
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
    let stream = BodyDataStream::new(body);
    let mut form = multer::Multipart::new(stream, boundary);
    let mut outcome = FormOutcome::default();
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let raw = field
            .headers()
            .get(http::header::CONTENT_DISPOSITION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let part = disposition::parse(raw).map_err(|e| {
            NodeError::BadRequest(format!("a form part's Content-Disposition: {e}"))
        })?;
        let Some(filename) = part.filename else {
            continue; // a plain form field
        };
        if filename.is_empty() {
            // Dropping the field lets multer skip its bytes (none, from a browser).
            outcome.skipped.push(Skipped {
                field: part.name.unwrap_or_default(),
                reason: EMPTY_FILENAME,
            });
            continue;
        }
        let name = check_name(filename)?;
        principal.may(Scope::Write, Some(&name))?;
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
            preconditions.write_guard(),
        )
        .await?;
        outcome.stored.push(info);
    }
    if outcome.stored.is_empty() {
        return Err(nothing_stored(&outcome.skipped));
    }
    Ok(outcome)
}

/// The 400 for a form that stored nothing, naming why.
fn nothing_stored(skipped: &[Skipped]) -> NodeError {
    if skipped.is_empty() {
        return NodeError::BadRequest("the form has no file part (a part with a filename)".into());
    }
    let fields: Vec<String> = skipped.iter().map(|s| format!("{:?}", s.field)).collect();
    NodeError::BadRequest(format!(
        "the form has no file to store: every file part had an empty filename (no file \
         chosen), in field {}",
        fields.join(", ")
    ))
}

fn form_error(e: multer::Error) -> NodeError {
    NodeError::Body(format!("multipart: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_form_says_why() {
        let none = nothing_stored(&[]).to_string();
        assert!(none.contains("no file part"), "{none}");
        let empty = nothing_stored(&[
            Skipped {
                field: "a".into(),
                reason: EMPTY_FILENAME,
            },
            Skipped {
                field: "b".into(),
                reason: EMPTY_FILENAME,
            },
        ]);
        assert_eq!(empty.status(), 400);
        let msg = empty.to_string();
        assert!(
            msg.contains("empty filename") && msg.contains("\"a\", \"b\""),
            "{msg}"
        );
    }
}
