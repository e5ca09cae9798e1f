//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`, `If-Modified-Since`
//! and `If-Unmodified-Since`, evaluated as pure functions of the request's headers and the
//! current revision of a file.
//!
//! Reads (GET, HEAD) evaluate them once against the revision they serve. Writes (PUT, each
//! part of `POST /upload`, DELETE) evaluate them twice: early, so a doomed upload is refused
//! before its body is read, and again inside the compare-and-set that swaps the name, so two
//! clients racing with `If-None-Match: *` get one 201 and one 412, and an `If-Match` write
//! can never overwrite a revision it did not see.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap};

use crate::store::{FileInfo, Guard};

/// The validators of the revision a name currently points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validators<'a> {
    /// The strong entity tag, quotes included (`"<sha256 hex>"`).
    pub etag: &'a str,
    /// When the revision was stored, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// What the preconditions decide (RFC 9110 §13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the method.
    Proceed,
    /// 304: a GET or HEAD whose cached copy is still current.
    NotModified,
    /// 412: a precondition is false; nothing was changed.
    Failed,
}

/// The precondition headers of one request, parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
    /// Seconds since the Unix epoch; unparseable dates are ignored (§13.1.3, §13.1.4).
    if_modified_since: Option<u64>,
    if_unmodified_since: Option<u64>,
}

impl Preconditions {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: header::HeaderName| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
        };
        let list = |name| Some(text(name)).filter(|v| !v.trim().is_empty());
        let date = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
        };
        Self {
            if_match: list(header::IF_MATCH),
            if_none_match: list(header::IF_NONE_MATCH),
            if_modified_since: date(header::IF_MODIFIED_SINCE),
            if_unmodified_since: date(header::IF_UNMODIFIED_SINCE),
        }
    }

    /// True when the request carries no precondition a write must honour.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Evaluates the preconditions against `current` (None: the name points at nothing) in
    /// the order of RFC 9110 §13.2.2. `read` is true for GET and HEAD: only they get 304,
    /// use `If-Modified-Since`, and compare `If-None-Match` weakly (§13.1.2).
    pub fn evaluate(&self, current: Option<Validators<'_>>, read: bool) -> Decision {
        // Step 1/2: If-Match, else If-Unmodified-Since.
        if let Some(list) = &self.if_match {
            if !if_match(list, current) {
                return Decision::Failed;
            }
        } else if let (Some(since), Some(cur)) = (self.if_unmodified_since, current) {
            if last_modified_secs(cur) > since {
                return Decision::Failed;
            }
        }
        // Step 3/4: If-None-Match, else If-Modified-Since (GET/HEAD only).
        if let Some(list) = &self.if_none_match {
            if !if_none_match(list, current) {
                return if read {
                    Decision::NotModified
                } else {
                    Decision::Failed
                };
            }
        } else if let (true, Some(since), Some(cur)) = (read, self.if_modified_since, current) {
            if last_modified_secs(cur) <= since {
                return Decision::NotModified;
            }
        }
        Decision::Proceed
    }
}

impl Preconditions {
    /// [`Preconditions::evaluate`] against a stored revision.
    pub fn evaluate_file(&self, current: Option<&FileInfo>, read: bool) -> Decision {
        match current {
            None => self.evaluate(None, read),
            Some(file) => {
                let etag = etag(file);
                let current = Validators {
                    etag: &etag,
                    modified_ms: file.uploaded_at.timestamp_millis(),
                };
                self.evaluate(Some(current), read)
            }
        }
    }

    /// The guard a write hands to the store's compare-and-set: None without preconditions.
    pub fn write_guard(&self) -> Option<&dyn Guard> {
        (!self.is_empty()).then_some(self as &dyn Guard)
    }
}

impl Guard for Preconditions {
    fn allows(&self, current: Option<&FileInfo>) -> bool {
        self.evaluate_file(current, false) == Decision::Proceed
    }
}

/// A strong validator that any node derives alike: the content's SHA-256, quoted.
pub fn etag(file: &FileInfo) -> String {
    format!("\"{}\"", file.sha256)
}

/// `Last-Modified` has whole seconds; comparisons use what the client was sent.
fn last_modified_secs(v: Validators<'_>) -> u64 {
    (v.modified_ms.max(0) / 1000) as u64
}

/// The `Last-Modified` value of a revision stored at `modified_ms`.
pub fn http_date(modified_ms: i64) -> String {
    httpdate::fmt_http_date(
        SystemTime::UNIX_EPOCH + Duration::from_millis(modified_ms.max(0) as u64),
    )
}

/// The entity tags of a list header; `*` is returned as itself.
fn tags(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// `If-Match` (§13.1.1): true if `*` and a revision exists, or a listed tag matches the
/// current one by *strong* comparison (a weak tag never matches).
fn if_match(list: &str, current: Option<Validators<'_>>) -> bool {
    let Some(cur) = current else {
        return false;
    };
    tags(list).any(|t| t == "*" || (!t.starts_with("W/") && t == cur.etag))
}

/// `If-None-Match` (§13.1.2): false if `*` and a revision exists, or a listed tag matches
/// the current one by *weak* comparison.
fn if_none_match(list: &str, current: Option<Validators<'_>>) -> bool {
    let Some(cur) = current else {
        return true;
    };
    let ours = cur.etag.trim_start_matches("W/");
    !tags(list).any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

#[cfg(test)]
#[path = "conditional_tests.rs"]
mod tests;
