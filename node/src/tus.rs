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

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyDataStream;
use hyper::body::Incoming;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{NodeError, Result};
use crate::routes::check_name;
use crate::store::{Acquired, Store, TusUpload};
use crate::{empty_body, Body};

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,termination,checksum,expiration";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,md5,sha256";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// An upload's lease outlives its node by at most this: then any node may continue it.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// Settings of the tus endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TusLimits {
    pub max_size: u64,
    pub chunks_per_write: usize,
    pub chunks_per_read: u64,
    pub idle: Duration,
    /// Without activity, an unfinished upload expires this long after its last byte.
    pub expires_after: Duration,
}

/// A parsed `Upload-Checksum` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Md5,
    Sha256,
}

/// Parses `Upload-Checksum: <algorithm> <base64>`.
pub fn parse_checksum(value: &str) -> Result<Checksum> {
    let (name, b64) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum must be '<algorithm> <base64 digest>'"))?;
    let (algorithm, len) = match name.to_ascii_lowercase().as_str() {
        "sha1" => (Algorithm::Sha1, 20),
        "md5" => (Algorithm::Md5, 16),
        "sha256" => (Algorithm::Sha256, 32),
        other => {
            return Err(bad(&format!(
                "unsupported checksum algorithm {other:?}; use one of {CHECKSUM_ALGORITHMS}"
            )))
        }
    };
    let digest = STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|d| d.len() == len)
        .ok_or_else(|| bad("Upload-Checksum digest is not valid base64 of the right length"))?;
    Ok(Checksum { algorithm, digest })
}

/// Parses `Upload-Metadata: key base64, key2 base64, key3` into pairs.
pub fn parse_metadata(value: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next().unwrap_or_default().to_string();
        let value = match parts.next() {
            Some(v) => STANDARD
                .decode(v.trim())
                .map_err(|_| bad(&format!("Upload-Metadata value of {key:?} is not base64")))?,
            None => Vec::new(),
        };
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(bad("Upload-Metadata keys must be non-empty without spaces"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The URL of an upload as the client addressed us (through the balancer: its
/// `X-Forwarded-Proto`/`-Host`), or a path when the host is unknown.
pub fn location(headers: &HeaderMap, id: &str) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let host = get("x-forwarded-host").or_else(|| get("host"));
    let proto = get("x-forwarded-proto").unwrap_or_else(|| "http".into());
    match host {
        Some(host) if !host.contains(['/', ' ']) => format!("{proto}://{host}/uploads/{id}"),
        _ => format!("/uploads/{id}"),
    }
}

fn bad(msg: &str) -> NodeError {
    NodeError::BadRequest(msg.into())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>> {
    header_str(headers, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| bad(&format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| NodeError::Body(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Every tus request but OPTIONS must say which protocol version it speaks.
pub fn check_version(method: &Method, headers: &HeaderMap) -> Result<()> {
    if method == Method::OPTIONS || header_str(headers, "tus-resumable") == Some(VERSION) {
        Ok(())
    } else {
        Err(NodeError::TusVersion)
    }
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

fn built(builder: http::response::Builder) -> Result<Response<Body>> {
    builder
        .body(empty_body())
        .map_err(|e| NodeError::BadRequest(format!("cannot build response: {e}")))
}

/// `OPTIONS /uploads`: what this server supports.
pub fn options(limits: &TusLimits) -> Result<Response<Body>> {
    built(
        response(StatusCode::NO_CONTENT)
            .header("tus-version", VERSION)
            .header("tus-extension", EXTENSIONS)
            .header("tus-max-size", limits.max_size)
            .header("tus-checksum-algorithm", CHECKSUM_ALGORITHMS),
    )
}

/// `POST /uploads`: creation, optionally with the first bytes.
pub async fn create(
    store: &Store,
    headers: &HeaderMap,
    body: Incoming,
    limits: &TusLimits,
) -> Result<Response<Body>> {
    if header_str(headers, "upload-defer-length").is_some() {
        return Err(bad(
            "Upload-Defer-Length is not supported; send Upload-Length",
        ));
    }
    let length =
        header_u64(headers, "upload-length")?.ok_or_else(|| bad("Upload-Length is required"))?;
    if length > limits.max_size {
        return Err(NodeError::TooLarge {
            limit: limits.max_size,
        });
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
    let content_type = text("filetype")?.filter(|t| !t.is_empty());
    let upload = store
        .tus_create(
            id,
            name,
            content_type,
            raw_metadata,
            length as i64,
            limits.expires_after,
        )
        .await?;
    tracing::info!(upload = %upload.id, file = %upload.name, length, "tus upload created");
    let with_data = header_str(headers, header::CONTENT_TYPE.as_str()) == Some(OFFSET_OCTET_STREAM);
    let offset = if length == 0 {
        finish(store, &upload, limits).await?;
        0
    } else if with_data {
        match store.tus_acquire(&upload.id, LEASE_TTL).await? {
            Acquired::Leased { upload, token } => {
                write_patch(store, *upload, token, None, body, limits).await?
            }
            _ => 0,
        }
    } else {
        0
    };
    let current = store.tus_get(&upload.id).await?.unwrap_or(upload);
    built(
        response(StatusCode::CREATED)
            .header(header::LOCATION, location(headers, &current.id))
            .header("upload-offset", offset)
            .header("upload-expires", expires_header(&current)),
    )
}

/// `HEAD /uploads/{id}`: how much is durably stored.
pub async fn head(store: &Store, id: &str) -> Result<Response<Body>> {
    let upload = live(store, id).await?;
    let mut builder = response(StatusCode::OK)
        .header("upload-offset", upload.offset)
        .header("upload-length", upload.length)
        .header("upload-expires", expires_header(&upload));
    if !upload.metadata.is_empty() {
        builder = builder.header("upload-metadata", &upload.metadata);
    }
    built(builder)
}

/// `DELETE /uploads/{id}`: termination.
pub async fn terminate(store: &Store, id: &str) -> Result<Response<Body>> {
    if store.tus_terminate(id).await? {
        tracing::info!(upload = %id, "tus upload terminated");
        built(response(StatusCode::NO_CONTENT))
    } else {
        Err(NodeError::NotFound(format!("upload {id}")))
    }
}

async fn live(store: &Store, id: &str) -> Result<TusUpload> {
    let upload = store
        .tus_get(id)
        .await?
        .ok_or_else(|| NodeError::NotFound(format!("upload {id}")))?;
    if !upload.done && upload.expires_at < bson::DateTime::now() {
        return Err(NodeError::Gone(format!("upload {id} expired")));
    }
    Ok(upload)
}

/// `PATCH /uploads/{id}`: bytes at `Upload-Offset`.
pub async fn patch(
    store: &Store,
    id: &str,
    headers: &HeaderMap,
    body: Incoming,
    limits: &TusLimits,
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
    live(store, id).await?;
    let (upload, token) = match store.tus_acquire(id, LEASE_TTL).await? {
        Acquired::Leased { upload, token } => (*upload, token),
        Acquired::Locked => return Err(NodeError::Locked(format!("upload {id}"))),
        Acquired::NotFound => return Err(NodeError::NotFound(format!("upload {id}"))),
    };
    let lease = LeaseGuard {
        store: store.clone(),
        id: id.to_string(),
        token,
    };
    if upload.offset != offset {
        return Err(NodeError::OffsetMismatch {
            expected: upload.offset,
            got: offset,
        });
    }
    let new_offset = if upload.done {
        upload.length
    } else {
        write_patch(store, upload, token, checksum, body, limits).await?
    };
    drop(lease);
    let current = store.tus_get(id).await?;
    let mut builder = response(StatusCode::NO_CONTENT).header("upload-offset", new_offset);
    if let Some(current) = current {
        builder = builder.header("upload-expires", expires_header(&current));
    }
    built(builder)
}

/// Releases the lease when the request ends, however it ends.
struct LeaseGuard {
    store: Store,
    id: String,
    token: i64,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (store, id, token) = (self.store.clone(), std::mem::take(&mut self.id), self.token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.tus_release(&id, token).await {
                    tracing::debug!(upload = %id, error = %e, "lease left to expire");
                }
            });
        }
    }
}

enum PatchHasher {
    Sha1(Sha1),
    Md5(Md5),
    Sha256(Sha256),
}

impl PatchHasher {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Self::Sha1(Sha1::new()),
            Algorithm::Md5 => Self::Md5(Md5::new()),
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Streams one PATCH body into chunks under our lease; returns the new durable offset.
async fn write_patch(
    store: &Store,
    upload: TusUpload,
    token: i64,
    checksum: Option<Checksum>,
    body: Incoming,
    limits: &TusLimits,
) -> Result<i64> {
    let cs = upload.chunk_size as usize;
    let start_chunk = upload.offset / cs as i64;
    let mut next_n = start_chunk;
    let mut partial = BytesMut::from(&upload.tail.bytes[..]);
    let mut received = upload.offset;
    let mut batch: Vec<Bytes> = Vec::with_capacity(limits.chunks_per_write);
    let mut hasher = checksum.as_ref().map(|c| PatchHasher::new(c.algorithm));
    let mut last_renew = tokio::time::Instant::now();
    let stream = BodyDataStream::new(body);
    futures::pin_mut!(stream);

    let outcome: Result<()> = async {
        loop {
            let next = tokio::time::timeout(limits.idle, stream.next())
                .await
                .map_err(|_| NodeError::BodyIdle(limits.idle.as_secs()))?;
            let Some(frame) = next else { break };
            let mut data = frame.map_err(|e| NodeError::Body(e.to_string()))?;
            if received + data.len() as i64 > upload.length {
                return Err(NodeError::TooLarge {
                    limit: upload.length as u64,
                });
            }
            received += data.len() as i64;
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            while !data.is_empty() {
                let take = (cs - partial.len()).min(data.len());
                partial.extend_from_slice(&data.split_to(take));
                if partial.len() == cs {
                    batch.push(partial.split().freeze());
                }
                if batch.len() == limits.chunks_per_write {
                    if last_renew.elapsed() > LEASE_TTL / 3 {
                        if !store.tus_renew(&upload.id, token, LEASE_TTL).await? {
                            return Err(NodeError::Locked(format!("upload {}", upload.id)));
                        }
                        last_renew = tokio::time::Instant::now();
                    }
                    store.tus_write(&upload, next_n, &batch).await?;
                    next_n += batch.len() as i64;
                    batch.clear();
                    // Without a checksum every journaled batch is progress a retry keeps.
                    if hasher.is_none() {
                        let durable = next_n * cs as i64;
                        if !store
                            .tus_advance(
                                &upload.id,
                                token,
                                durable,
                                &[],
                                limits.expires_after,
                                LEASE_TTL,
                            )
                            .await?
                        {
                            return Err(NodeError::Locked(format!("upload {}", upload.id)));
                        }
                        last_renew = tokio::time::Instant::now();
                    }
                }
            }
        }
        Ok(())
    }
    .await;

    if let Err(NodeError::Locked(_)) = outcome {
        // Another request owns the upload now; anything we wrote could collide with it.
        return outcome.map(|()| received);
    }
    let complete = received == upload.length;
    let verified = match (&outcome, checksum, hasher) {
        (Ok(()), Some(expected), Some(h)) => {
            let got = h.finish();
            if got != expected.digest {
                Err(NodeError::ChecksumMismatch)
            } else {
                Ok(())
            }
        }
        (Ok(()), _, _) => Ok(()),
        (Err(_), Some(_), _) => Err(NodeError::Body("discarded: checksum unverifiable".into())),
        (Err(_), None, _) => Ok(()),
    };
    if let Err(e) = verified {
        // Nothing of this PATCH counts: drop what it wrote, the offset never moved.
        store.tus_discard_from(&upload, start_chunk).await?;
        return Err(outcome.err().unwrap_or(e));
    }
    // Keep every byte that arrived (a broken PATCH included): full chunks, then the rest as
    // the tail, or as the file's last chunk when the upload is complete.
    if complete && !partial.is_empty() {
        batch.push(partial.split().freeze());
    }
    store.tus_write(&upload, next_n, &batch).await?;
    let tail = partial.freeze();
    if !store
        .tus_advance(
            &upload.id,
            token,
            received,
            &tail,
            limits.expires_after,
            LEASE_TTL,
        )
        .await?
    {
        return Err(NodeError::Locked(format!("upload {}", upload.id)));
    }
    outcome?;
    if complete {
        let mut done = upload;
        done.offset = received;
        finish(store, &done, limits).await?;
    }
    Ok(received)
}

async fn finish(store: &Store, upload: &TusUpload, limits: &TusLimits) -> Result<()> {
    let info = store.tus_finish(upload, limits.chunks_per_read).await?;
    tracing::info!(upload = %upload.id, file = %info.name, length = info.length, "tus upload complete");
    Ok(())
}

/// Headers browsers may send and read across origins, for tus clients and the file API.
pub const CORS_ALLOW_HEADERS: &str = "authorization, content-type, content-md5, repr-digest, range, if-none-match, if-range, x-request-id, x-http-method-override, tus-resumable, upload-length, upload-offset, upload-metadata, upload-checksum, upload-defer-length, upload-concat";
pub const CORS_EXPOSE_HEADERS: &str = "location, upload-offset, upload-length, upload-metadata, upload-expires, tus-version, tus-resumable, tus-extension, tus-max-size, tus-checksum-algorithm, content-range, content-length, etag, x-request-id, x-speedbox-node, x-speedbox-error";
pub const CORS_ALLOW_METHODS: &str = "GET, HEAD, PUT, POST, PATCH, DELETE, OPTIONS";

/// Adds CORS headers to a response for a request that came with `Origin`.
pub fn add_cors(request: &HeaderMap, response: &mut HeaderMap) {
    if request.get(header::ORIGIN).is_none() {
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
    built(
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, CORS_ALLOW_METHODS)
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS)
            .header(header::ACCESS_CONTROL_MAX_AGE, "86400"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        let c = parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        assert!(parse_checksum("md5 XrY7u+Ae7tCTyyK7j1rNww==").is_ok());
        assert!(parse_checksum("crc32 AAAA").is_err());
        assert!(parse_checksum("sha1").is_err());
        assert!(parse_checksum("sha1 AAAA").is_err());
    }

    #[test]
    fn metadata() {
        let m =
            parse_metadata("filename dmlkZW8ubXA0,filetype dmlkZW8vbXA0, is_confidential").unwrap();
        assert_eq!(m[0], ("filename".to_string(), b"video.mp4".to_vec()));
        assert_eq!(m[1], ("filetype".to_string(), b"video/mp4".to_vec()));
        assert_eq!(m[2], ("is_confidential".to_string(), Vec::new()));
        assert!(parse_metadata("filename !!!").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn locations_follow_the_client_facing_address() {
        let mut h = HeaderMap::new();
        assert_eq!(location(&h, "ab"), "/uploads/ab");
        h.insert("host", HeaderValue::from_static("127.0.0.1:8001"));
        assert_eq!(location(&h, "ab"), "http://127.0.0.1:8001/uploads/ab");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("files.example.com"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(location(&h, "ab"), "https://files.example.com/uploads/ab");
    }

    #[test]
    fn version_is_required_except_for_options() {
        let mut h = HeaderMap::new();
        assert!(check_version(&Method::OPTIONS, &h).is_ok());
        assert_eq!(check_version(&Method::HEAD, &h).unwrap_err().status(), 412);
        h.insert("tus-resumable", HeaderValue::from_static("0.2.2"));
        assert_eq!(check_version(&Method::PATCH, &h).unwrap_err().status(), 412);
        h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
        assert!(check_version(&Method::PATCH, &h).is_ok());
    }
}
