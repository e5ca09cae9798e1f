//! The request path: route, handle, and turn every error into a JSON response once.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;
use speedbox_common::headers::{X_REQUEST_ID, X_SPEEDBOX_NODE};
use speedbox_common::respond;
use tracing::Instrument;

use crate::conditional::{self, Preconditions};
use crate::cors;
use crate::digest;
use crate::download;
use crate::error::{NodeError, Result};
use crate::multipart;
use crate::routes::{self, Route};
use crate::store::{FileInfo, Store};
use crate::tus;
use crate::upload::{self, Limits};
use crate::{empty_body, Body};

/// What every request handler shares.
pub struct AppState {
    pub store: Store,
    pub node_id: String,
    pub limits: Limits,
    pub chunks_per_read: u64,
    pub tus: tus::Tus,
}

/// hyper's service function: never fails, errors become responses.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Body>, Infallible> {
    let request_id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| bson::oid::ObjectId::new().to_hex());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let request_headers = req.headers().clone();
    let is_tus = req.uri().path().starts_with("/uploads");
    async move {
        let mut response = match dispatch(&state, req).await {
            Ok(response) => response,
            Err(e) => {
                let status = e.status();
                if status.is_server_error() {
                    tracing::warn!(%status, error = %e, "request failed");
                } else {
                    tracing::info!(%status, error = %e, "request refused");
                }
                full(e.into_response())
            }
        };
        let status = response.status();
        tracing::debug!(%status, "response");
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert(X_REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&state.node_id) {
            headers.insert(X_SPEEDBOX_NODE, v);
        }
        if is_tus {
            tus::add_headers(status, headers);
        }
        cors::add_cors(&request_headers, headers);
        Ok(response)
    }
    .instrument(span)
    .await
}

async fn dispatch(state: &AppState, mut req: Request<Incoming>) -> Result<Response<Body>> {
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return cors::preflight();
    }
    // Clients behind proxies that allow only GET/POST tunnel PATCH and DELETE this way.
    if req.method() == Method::POST {
        let wanted = req
            .headers()
            .get("x-http-method-override")
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        if let Some(method) = wanted {
            *req.method_mut() = method;
        }
    }
    let route = routes::parse(req.method(), req.uri().path(), req.uri().query())?;
    let store = &state.store;
    if matches!(
        route,
        Route::TusCreate | Route::TusHead(_) | Route::TusPatch(_) | Route::TusDelete(_)
    ) {
        tus::check_version(req.method(), req.headers())?;
    }
    match route {
        Route::TusOptions => tus::options(&state.tus.limits),
        Route::TusCreate => {
            let (parts, body) = req.into_parts();
            tus::create(store, &parts.headers, body, &state.tus).await
        }
        Route::TusHead(id) => tus::head(store, &id).await,
        Route::TusPatch(id) => {
            let (parts, body) = req.into_parts();
            tus::patch(store, &id, &parts.headers, body, &state.tus).await
        }
        Route::TusDelete(id) => tus::terminate(store, &id).await,
        Route::Health => health(state).await,
        Route::Get { name, head } => {
            let file = store
                .lookup(&name)
                .await?
                .ok_or(NodeError::NotFound(name))?;
            download::respond(store, file, req.headers(), head, state.chunks_per_read)
        }
        Route::Put(name) => {
            let (parts, body) = req.into_parts();
            upload::check_declared_length(&parts.headers, &state.limits)?;
            let expected = digest::expected(&parts.headers)?;
            let data = BodyDataStream::new(body).map_err(|e| NodeError::Body(e.to_string()));
            let preconditions = Preconditions::from_headers(&parts.headers);
            let info = upload::store_stream(
                store,
                &name,
                upload::content_type(&parts.headers),
                &expected,
                data,
                state.limits,
                preconditions.write_guard(),
            )
            .await?;
            tracing::info!(file = %info.name, length = info.length, "stored");
            let mut response = json(StatusCode::CREATED, &file_json(&info));
            if let Ok(v) = HeaderValue::from_str(&conditional::etag(&info)) {
                response.headers_mut().insert(header::ETAG, v);
            }
            Ok(response)
        }
        Route::Multipart => {
            let (parts, body) = req.into_parts();
            upload::check_declared_length(&parts.headers, &state.limits)?;
            let form = multipart::store_form(store, &parts.headers, body, state.limits).await?;
            let files: Vec<_> = form.stored.iter().map(file_json).collect();
            let skipped = &form.skipped;
            Ok(json(
                StatusCode::CREATED,
                &json!({ "files": files, "skipped": skipped }),
            ))
        }
        Route::Delete(name) => {
            let preconditions = Preconditions::from_headers(req.headers());
            if store.delete(&name, preconditions.write_guard()).await? {
                tracing::info!(file = %name, "deleted");
                let mut response = Response::new(empty_body());
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
            } else {
                Err(NodeError::NotFound(name))
            }
        }
        Route::List(query) => {
            let (page, more) = store.list(&query).await?;
            let next_after = more.then(|| page.last().map(|f| f.name.clone())).flatten();
            let files: Vec<_> = page.iter().map(file_json).collect();
            Ok(json(
                StatusCode::OK,
                &json!({ "files": files, "next_after": next_after }),
            ))
        }
    }
}

async fn health(state: &AppState) -> Result<Response<Body>> {
    match state.store.check().await {
        Ok(()) => Ok(json(
            StatusCode::OK,
            &json!({"status": "ok", "node": state.node_id}),
        )),
        Err(e) => Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "node": state.node_id, "error": e.to_string()}),
        )),
    }
}

/// The JSON shape of a stored file, as PUT answers and GET /files lists it.
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

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(respond::json(status, value))
}

fn full(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}
