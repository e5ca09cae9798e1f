//! The file API's handlers, one per route: `GET`/`HEAD`/`PUT`/`DELETE /files/NAME`,
//! `GET /files` (listing) and `POST /upload` (a form). Each reads what its request says,
//! calls the module that does the work ([`download`], [`upload`], [`multipart`], the
//! [`Store`]), and shapes the answer with [`respond`].

use futures::TryStreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyDataStream;
use serde_json::json;
use speedbox_common::auth::Principal;

use crate::access;
use crate::conditional::{self, Preconditions};
use crate::digest;
use crate::download;
use crate::error::{NodeError, Result};
use crate::multipart;
use crate::put_resume;
use crate::respond::{self, file_json};
use crate::routes::ListQuery;
use crate::server::AppState;
use crate::store::FileInfo;
use crate::upload::{self, Limits};
use crate::{Body, ReqBody};

/// `GET`/`HEAD /files/NAME`: the file, whole or a range; 404 if the name is not current.
pub async fn get(
    state: &AppState,
    name: String,
    head: bool,
    req: &Request<ReqBody>,
) -> Result<Response<Body>> {
    // A GET of a small file reads it with its name, in one round trip. A HEAD, and a
    // revalidation (usually answered 304), read the name only.
    let revalidation = [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE]
        .iter()
        .any(|h| req.headers().contains_key(h));
    let found = if head || revalidation {
        state.store.lookup(&name).await?.map(|f| (f, None))
    } else {
        state.store.lookup_whole(&name).await?
    };
    let (file, whole) = found.ok_or(NodeError::NotFound(name))?;
    download::respond(
        &state.store,
        file,
        whole,
        req.headers(),
        head,
        state.chunks_per_read,
    )
}

/// `PUT /files/NAME`: stores the body as the name's new revision; 201 with the file's JSON
/// and its `ETag`.
pub async fn put(
    state: &AppState,
    principal: &Principal,
    name: String,
    req: Request<ReqBody>,
) -> Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let limits = limits_for(state, principal);
    upload::check_declared_length(&parts.headers, &limits)?;
    let mut expected = digest::expected(&parts.headers)?;
    if let Some(pinned) = &principal.sha256 {
        // A signed upload link's digest: the body must have it, whatever the headers say.
        expected.sha256 = Some(
            hex::decode(pinned)
                .map_err(|_| NodeError::BadRequest("the link's sha256 is not hex".into()))?,
        );
    }
    if put_resume::is_resumable(&parts.headers) {
        return put_resume::put(state, principal, name, parts, body, limits, expected).await;
    }
    let data = BodyDataStream::new(body).map_err(|e| NodeError::Body(e.to_string()));
    let preconditions = Preconditions::from_headers(&parts.headers);
    let info = upload::store_stream(
        &state.store,
        &name,
        upload::content_type(&parts.headers),
        &expected,
        data,
        limits,
        preconditions.write_guard(),
    )
    .await?;
    tracing::info!(file = %info.name, length = info.length, "stored");
    Ok(created(&info))
}

/// A PUT's answer: 201 with the file's JSON and its `ETag`.
pub fn created(info: &FileInfo) -> Response<Body> {
    let mut response = respond::json(StatusCode::CREATED, &file_json(info));
    if let Ok(v) = HeaderValue::from_str(&conditional::etag(info)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `DELETE /files/NAME`: 204, or 404 if the name is not current (whatever the
/// preconditions), or 412 if they fail.
pub async fn delete(
    state: &AppState,
    name: String,
    req: &Request<ReqBody>,
) -> Result<Response<Body>> {
    let preconditions = Preconditions::from_headers(req.headers());
    if state
        .store
        .delete(&name, preconditions.write_guard())
        .await?
    {
        tracing::info!(file = %name, "deleted");
        Ok(respond::no_content())
    } else {
        Err(NodeError::NotFound(name))
    }
}

/// `GET /files`: one page of the names `principal` may see, in order, `{files: [...],
/// next_after}`; `next_after` is the `after=` of the next page, or null on the last.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    mut query: ListQuery,
) -> Result<Response<Body>> {
    let (page, more) = if access::narrow_listing(&mut query, principal) {
        state.store.list(&query).await?
    } else {
        (Vec::new(), false)
    };
    let next_after = more.then(|| page.last().map(|f| f.name.clone())).flatten();
    let files: Vec<_> = page.iter().map(file_json).collect();
    Ok(respond::json(
        StatusCode::OK,
        &json!({ "files": files, "next_after": next_after }),
    ))
}

/// `POST /upload`: every file part of a `multipart/form-data` body; 201 with
/// `{files: [...], skipped: [{field, reason}]}`.
pub async fn post_form(
    state: &AppState,
    principal: &Principal,
    req: Request<ReqBody>,
) -> Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let limits = limits_for(state, principal);
    upload::check_declared_length(&parts.headers, &limits)?;
    let form = multipart::store_form(&state.store, principal, &parts.headers, body, limits).await?;
    let files: Vec<_> = form.stored.iter().map(file_json).collect();
    Ok(respond::json(
        StatusCode::CREATED,
        &json!({ "files": files, "skipped": form.skipped }),
    ))
}

/// The node's upload limits, with the size capped by the principal's `max_bytes`.
fn limits_for(state: &AppState, principal: &Principal) -> Limits {
    Limits {
        max_size: access::upload_limit(principal, state.limits.max_size),
        ..state.limits
    }
}
