//! Resumable uploads, tus 1.0 (<https://tus.io/protocols/resumable-upload>) at `/uploads`:
//! core, creation, creation-with-upload, termination, checksum and expiration.
//!
//! State lives in MongoDB ([`crate::store::TusUpload`]), so a PATCH can go to any node:
//! it takes the upload's lease, writes whole chunks straight into the GridFS chunks of the
//! file id reserved at creation, and moves the durable offset after each journaled batch,
//! so the offset HEAD reports never counts a byte that a crash could lose. With
//! `Upload-Checksum` the offset only moves once the whole PATCH is verified. Expiry slides
//! forward with every PATCH, so slow uploads do not die of old age.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, Request, Response, StatusCode};
use speedbox_common::auth::{AuthError, Principal, Scope};

use crate::access::upload_limit;
use crate::error::{NodeError, Result};
use crate::name::check_name;
use crate::respond;
use crate::routes::TusRoute;
use crate::store::{
    Acquired, Created, NewUpload, Recoverer, Store, Terminated, TusUpload, LEASE_TTL,
};
use crate::{Body, ReqBody};

mod advancing;
mod checksum;
mod complete;
mod headers;
mod lease;
mod patch;

pub(crate) use complete::ensure_published;
use complete::patch_complete;
use headers::{bad, header_str, header_u64};
pub use headers::{check_version, location, parse_checksum, parse_metadata};
pub(crate) use lease::LeaseGuard;
pub(crate) use patch::{write_patch, PutTerms};

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,termination,checksum,expiration";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,md5,sha256";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The tus endpoint. (Nothing of an upload lives in a node between PATCHes: offset, lease
/// and running digests are all in its state document.)
#[derive(Default)]
pub struct Tus {
    pub limits: TusLimits,
}

/// Settings of the tus endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct TusLimits {
    pub max_size: u64,
    pub chunks_per_write: usize,
    pub chunks_per_read: u64,
    pub idle: Duration,
    /// Without activity, an unfinished upload expires this long after its last byte.
    pub expires_after: Duration,
}

fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| NodeError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

fn response(status: StatusCode) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("tus-resumable", VERSION)
        .header(header::CACHE_CONTROL, "no-store")
}

fn expires_header(upload: &TusUpload) -> String {
    let millis = upload.expires_at.timestamp_millis().max(0) as u64;
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
}

/// What every response of the tus endpoint carries (tus 1.0 core): `Tus-Resumable`, and
/// `Tus-Version` with a 412 (a request without a version this server speaks).
pub fn add_headers(status: StatusCode, headers: &mut HeaderMap) {
    headers.insert("tus-resumable", http::HeaderValue::from_static(VERSION));
    if status == StatusCode::PRECONDITION_FAILED {
        headers.insert("tus-version", http::HeaderValue::from_static(VERSION));
    }
}

/// Answers one request to the tus endpoint: every request but `OPTIONS` must speak our
/// version (tus 1.0 core, `Tus-Resumable`; else 412), then the route's handler runs.
pub async fn handle(
    store: &Store,
    tus: &Tus,
    principal: &Principal,
    route: TusRoute,
    req: Request<ReqBody>,
) -> Result<Response<Body>> {
    if route != TusRoute::Options {
        check_version(req.headers())?;
    }
    if let TusRoute::Head(id) | TusRoute::Patch(id) | TusRoute::Delete(id) = &route {
        check_owner(store, principal, id).await?;
    }
    let (parts, body) = req.into_parts();
    match route {
        TusRoute::Options => options(&tus.limits),
        TusRoute::Create => create(store, principal, &parts.headers, body, tus).await,
        TusRoute::Head(id) => head(store, &id).await,
        TusRoute::Patch(id) => patch(store, &id, &parts.headers, body, tus).await,
        TusRoute::Delete(id) => terminate(store, &id).await,
    }
}

/// A request body as the stream of its data frames.
pub(crate) fn data_stream(body: ReqBody) -> impl futures::Stream<Item = Result<bytes::Bytes>> {
    use futures::TryStreamExt;
    http_body_util::BodyDataStream::new(body).map_err(|e| NodeError::Body(e.to_string()))
}

/// `OPTIONS /uploads`: what this server supports.
fn options(limits: &TusLimits) -> Result<Response<Body>> {
    respond::empty(
        response(StatusCode::NO_CONTENT)
            .header("tus-version", VERSION)
            .header("tus-extension", EXTENSIONS)
            .header("tus-max-size", limits.max_size)
            .header("tus-checksum-algorithm", CHECKSUM_ALGORITHMS),
    )
}

/// `POST /uploads`: creation, optionally with the first bytes.
/// An upload URL alone is not a capability: only the principal that created the upload,
/// or an admin, may inspect, continue or terminate it (403 otherwise). With access control
/// off every request is an admin, and this costs no read.
async fn check_owner(store: &Store, principal: &Principal, id: &str) -> Result<()> {
    if principal.is_admin() {
        return Ok(());
    }
    let upload = store
        .tus_get(id)
        .await?
        .ok_or_else(|| NodeError::NotFound(format!("upload {id}")))?;
    check_owned(&upload, principal)
}

/// 403 unless `principal` created `upload` or is an admin.
pub(crate) fn check_owned(upload: &TusUpload, principal: &Principal) -> Result<()> {
    if principal.is_admin() || upload.owner == principal.sub {
        Ok(())
    } else {
        let id = &upload.id;
        Err(AuthError::Forbidden(format!("upload {id} belongs to another principal")).into())
    }
}

async fn create(
    store: &Store,
    principal: &Principal,
    headers: &HeaderMap,
    body: ReqBody,
    tus: &Tus,
) -> Result<Response<Body>> {
    let limits = &tus.limits;
    if header_str(headers, "upload-defer-length").is_some() {
        return Err(bad(
            "Upload-Defer-Length is not supported; send Upload-Length",
        ));
    }
    let length =
        header_u64(headers, "upload-length")?.ok_or_else(|| bad("Upload-Length is required"))?;
    let max_size = upload_limit(principal, limits.max_size);
    if length > max_size {
        return Err(NodeError::TooLarge { limit: max_size });
    }
    let raw_metadata = header_str(headers, "upload-metadata")
        .unwrap_or("")
        .to_string();
    let metadata = parse_metadata(&raw_metadata)?;
    let text = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8(v.clone()))
            .transpose()
            .map_err(|_| bad(&format!("Upload-Metadata {key} is not UTF-8")))
    };
    let id = new_id()?;
    let name = match text("filename")? {
        Some(name) => check_name(name)?,
        None => format!("uploads/{id}"),
    };
    principal.may(Scope::Write, Some(&name))?;
    let content_type = text("filetype")?.filter(|t| !t.is_empty());
    let with_data = header_str(headers, header::CONTENT_TYPE.as_str()) == Some(OFFSET_OCTET_STREAM);
    let Created { upload, token } = store
        .tus_create(NewUpload {
            id,
            name,
            content_type,
            metadata: raw_metadata,
            length: length as i64,
            expires_in: limits.expires_after,
            owner: principal.sub.clone(),
            put: false,
            leased: with_data,
        })
        .await?;
    tracing::info!(upload = %upload.id, file = %upload.name, length, "tus upload created");
    let offset = match token {
        // Created leased to us, with the body's first bytes to write.
        Some(token) => {
            let lease = LeaseGuard::new(store, &upload.id, token);
            let data = data_stream(body);
            let written = write_patch(store, upload.clone(), token, None, data, tus, None).await;
            lease.end(&written).await;
            written?.0
        }
        // Complete from birth: published like any complete upload.
        None if length == 0 => {
            ensure_published(store, &upload.id, Recoverer::Anyone).await?;
            0
        }
        None => 0,
    };
    let current = store.tus_get(&upload.id).await?.unwrap_or(upload);
    respond::empty(
        response(StatusCode::CREATED)
            .header(header::LOCATION, location(headers, &current.id))
            .header("upload-offset", offset)
            .header("upload-expires", expires_header(&current)),
    )
}

/// `HEAD /uploads/{id}`: how much is durably stored.
async fn head(store: &Store, id: &str) -> Result<Response<Body>> {
    let mut upload = live(store, id).await?;
    if upload.complete && !upload.done {
        // The client stops once HEAD reports every byte: the file must be there by then.
        upload = ensure_published(store, id, Recoverer::Anyone).await?;
    }
    let mut builder = response(StatusCode::OK)
        .header("upload-offset", upload.offset)
        .header("upload-expires", expires_header(&upload));
    // A plain PUT without Content-Length learns its length at its end (tus 1.0
    // creation-defer-length's way of saying so).
    builder = match upload.length {
        length if length >= 0 => builder.header("upload-length", length),
        _ => builder.header("upload-defer-length", 1),
    };
    if !upload.metadata.is_empty() {
        builder = builder.header("upload-metadata", &upload.metadata);
    }
    respond::empty(builder)
}

/// `DELETE /uploads/{id}`: termination.
async fn terminate(store: &Store, id: &str) -> Result<Response<Body>> {
    // A complete upload is published before its state goes, or its bytes would be lost.
    let mut outcome = store.tus_terminate(id).await?;
    while outcome == Terminated::Publishing {
        ensure_published(store, id, Recoverer::Anyone).await?;
        outcome = store.tus_terminate(id).await?;
    }
    match outcome {
        Terminated::Publishing => Err(NodeError::Locked(format!("upload {id}"))),
        Terminated::NotFound => Err(NodeError::NotFound(format!("upload {id}"))),
        Terminated::Removed => {
            tracing::info!(upload = %id, "tus upload terminated");
            respond::empty(response(StatusCode::NO_CONTENT))
        }
        Terminated::StateOnly => {
            tracing::info!(upload = %id, "state of a completed tus upload removed");
            respond::empty(response(StatusCode::NO_CONTENT))
        }
    }
}

async fn live(store: &Store, id: &str) -> Result<TusUpload> {
    let upload = store
        .tus_get(id)
        .await?
        .ok_or_else(|| NodeError::NotFound(format!("upload {id}")))?;
    if !upload.done && !upload.complete && upload.expires_at < bson::DateTime::now() {
        return Err(NodeError::Gone(format!("upload {id} expired")));
    }
    Ok(upload)
}

/// `PATCH /uploads/{id}`: bytes at `Upload-Offset`.
async fn patch(
    store: &Store,
    id: &str,
    headers: &HeaderMap,
    body: ReqBody,
    tus: &Tus,
) -> Result<Response<Body>> {
    if header_str(headers, header::CONTENT_TYPE.as_str()) != Some(OFFSET_OCTET_STREAM) {
        return Err(NodeError::UnsupportedMediaType(format!(
            "PATCH needs Content-Type: {OFFSET_OCTET_STREAM}"
        )));
    }
    let offset = header_u64(headers, "upload-offset")?
        .ok_or_else(|| bad("Upload-Offset is required"))? as i64;
    let checksum = header_str(headers, "upload-checksum")
        .map(parse_checksum)
        .transpose()?;
    // The compare-and-set that takes the lease also tells why it could not: no read first.
    let (upload, token) = match store.tus_acquire(id, LEASE_TTL).await? {
        Acquired::Leased { upload, token } => (*upload, token),
        Acquired::Locked => return Err(NodeError::Locked(format!("upload {id}"))),
        Acquired::NotFound => return Err(NodeError::NotFound(format!("upload {id}"))),
        Acquired::Expired => return Err(NodeError::Gone(format!("upload {id} expired"))),
        Acquired::Complete(upload) => return patch_complete(store, &upload, offset, &body).await,
    };
    let lease = LeaseGuard::new(store, id, token);
    let written = async {
        if upload.offset != offset {
            return Err(NodeError::OffsetMismatch {
                expected: upload.offset,
                got: offset,
            });
        }
        store.tus_clear_stale(&upload, token).await?;
        let data = data_stream(body);
        write_patch(store, upload, token, checksum, data, tus, None).await
    }
    .await;
    // Released before any answer goes out, a refusal's too: the client's next PATCH, sent
    // the moment it reads this one's answer, must find the lease free, not get 423.
    lease.end(&written).await;
    let (new_offset, _) = written?;
    let current = store.tus_get(id).await?;
    let mut builder = response(StatusCode::NO_CONTENT).header("upload-offset", new_offset);
    if let Some(current) = current {
        builder = builder.header("upload-expires", expires_header(&current));
    }
    respond::empty(builder)
}
