//! A plain `PUT /files/NAME` that survives the death of the node writing it.
//!
//! The balancer tags such a PUT with `Speedbox-Upload: <id>` and `Speedbox-Upload-Offset`
//! (where the body starts in the file: 0 at first). The node stores it as a resumable
//! upload, with the tus machinery (state document, lease and fencing token, a durable
//! offset that moves with the whole-file digests' state, see [`crate::tus`]), and answers
//! like any PUT. When the node dies mid-body, the balancer sends the same request to
//! another node with the body from an offset at or before the durable one (from what its
//! window still holds): that node takes the lease over (the balancer saw the dead node's
//! connection die, `Speedbox-Upload-Takeover: 1`; without it, 423 until that lease runs
//! out), drops the bytes it already has, and goes on. Nothing is published before the last
//! byte, the announced digests and the preconditions are checked, so the client sees one
//! PUT, whole or failed.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::request::Parts;
use http::{HeaderMap, Response};
use speedbox_common::auth::Principal;
use speedbox_common::headers::{SPEEDBOX_UPLOAD, SPEEDBOX_UPLOAD_OFFSET, SPEEDBOX_UPLOAD_TAKEOVER};

use crate::conditional::Preconditions;
use crate::digest::Expected;
use crate::error::{NodeError, Result};
use crate::server::AppState;
use crate::store::{Acquired, Created, Guard, NewUpload, Recoverer, Store, TusUpload, LEASE_TTL};
use crate::tus::{
    check_owned, data_stream, ensure_published, write_patch, LeaseGuard, PutTerms, Tus, TusLimits,
};
use crate::upload::{self, Limits};
use crate::{files, Body, ReqBody};

/// An abandoned PUT (its balancer died too) is swept this long after its last byte or
/// lease renewal; a live request renews every second, a continuation comes within seconds.
const ABANDONED_AFTER: Duration = Duration::from_secs(120);

/// Whether this PUT is one the balancer may continue.
pub fn is_resumable(headers: &HeaderMap) -> bool {
    headers.contains_key(SPEEDBOX_UPLOAD)
}

/// `PUT /files/NAME` with `Speedbox-Upload`: 201 with the file's JSON, like any PUT.
/// Errors besides a PUT's: 400 for a bad id or offset, or an id of another upload; 404
/// for a continuation of an upload that never started; 409 when the body starts past the
/// durable offset; 423 while another request holds the upload; 410 once it expired.
pub async fn put(
    state: &AppState,
    principal: &Principal,
    name: String,
    parts: Parts,
    body: ReqBody,
    limits: Limits,
    expected: Expected,
) -> Result<Response<Body>> {
    let headers = &parts.headers;
    let id = upload_id(headers)?;
    let from = offset(headers)?;
    let store = &state.store;
    let preconditions = Preconditions::from_headers(headers);
    let guard = preconditions.write_guard();
    let opened = open(store, principal, &name, headers, &id, from, guard).await?;
    // Created by this request, leased to it: the request's own state, no chunk yet.
    let fresh = opened.token.is_some();
    let acquired = match opened.token {
        Some(token) => Acquired::Leased {
            upload: Box::new(opened.upload),
            token,
        },
        None => {
            check_same(&opened.upload, principal, &name, from, headers)?;
            if headers
                .get(SPEEDBOX_UPLOAD_TAKEOVER)
                .is_some_and(|v| v == "1")
            {
                store.tus_take_over(&id, LEASE_TTL).await?
            } else {
                store.tus_acquire(&id, LEASE_TTL).await?
            }
        }
    };
    let (upload, token) = match acquired {
        Acquired::Leased { upload, token } => (*upload, token),
        Acquired::Locked => return Err(NodeError::Locked(format!("upload {id}"))),
        Acquired::NotFound => return Err(NodeError::NotFound(format!("upload {id}"))),
        Acquired::Expired => return Err(NodeError::Gone(format!("upload {id} expired"))),
        Acquired::Complete(_) => {
            // Published by now, or by us under this request's preconditions if its
            // finisher died after the last byte.
            let done = ensure_published(store, &id, Recoverer::Put(guard)).await?;
            if !done.done {
                return Err(NodeError::Locked(format!("upload {id}")));
            }
            let info = store.revision(&done.name, done.file_id).await?;
            let info =
                info.ok_or_else(|| NodeError::Gone(format!("upload {id}: its file was removed")))?;
            return Ok(files::created(&info));
        }
    };
    let lease = LeaseGuard::new(store, &id, token);
    let tus = Tus {
        limits: TusLimits {
            max_size: limits.max_size,
            chunks_per_write: limits.chunks_per_write,
            chunks_per_read: state.tus.limits.chunks_per_read,
            idle: limits.idle,
            expires_after: ABANDONED_AFTER,
        },
    };
    let written = async {
        if from > upload.offset {
            return Err(NodeError::OffsetMismatch {
                expected: upload.offset,
                got: from,
            });
        }
        if from > 0 || upload.offset > 0 {
            // The balancer's window started at `from`; it had forwarded more, up to what
            // it logged: the difference to `durable` is what the window had to hold.
            tracing::info!(upload = %id, durable = upload.offset, from, "continuing an upload");
        }
        if !fresh {
            store.tus_clear_stale(&upload, token).await?;
        }
        let data = skip(data_stream(body), upload.offset - from);
        let terms = PutTerms {
            expected: &expected,
            guard,
            max_size: limits.max_size,
        };
        write_patch(store, upload, token, None, data, &tus, Some(&terms)).await
    }
    .await;
    lease.end(&written).await;
    match written? {
        (_, Some(info)) => {
            tracing::info!(file = %info.name, length = info.length, upload = %id, "stored");
            Ok(files::created(&info))
        }
        (offset, None) => Err(NodeError::BadRequest(format!(
            "the body ended at byte {offset}, before the length it announced"
        ))),
    }
}

/// The upload's state: created by a first attempt (`from` 0), leased to it, unless a
/// racing or earlier attempt already did; otherwise as found.
async fn open(
    store: &Store,
    principal: &Principal,
    name: &str,
    headers: &HeaderMap,
    id: &str,
    from: i64,
    guard: Option<&dyn Guard>,
) -> Result<Created> {
    // A guarded PUT reads first: its preconditions are checked before creating, and must
    // not be checked against its own published file when this is a replay.
    if from == 0 && guard.is_none() {
        return create(store, principal, name, headers, id, None).await;
    }
    match store.tus_get(id).await? {
        Some(upload) => Ok(Created {
            upload,
            token: None,
        }),
        None if from == 0 => create(store, principal, name, headers, id, guard).await,
        None => Err(NodeError::NotFound(format!("upload {id}"))),
    }
}

/// The first attempt: the upload's state, created unless a racing attempt already did.
async fn create(
    store: &Store,
    principal: &Principal,
    name: &str,
    headers: &HeaderMap,
    id: &str,
    guard: Option<&dyn Guard>,
) -> Result<Created> {
    if let Some(guard) = guard {
        if !guard.allows(store.lookup(name).await?.as_ref()) {
            return Err(NodeError::PreconditionFailed(name.to_string()));
        }
    }
    let length = upload::declared_length(headers).map_or(-1, |l| l as i64);
    store
        .tus_create(NewUpload {
            id: id.to_string(),
            name: name.to_string(),
            content_type: upload::content_type(headers).map(str::to_string),
            metadata: String::new(),
            length,
            expires_in: ABANDONED_AFTER,
            owner: principal.sub.clone(),
            put: true,
            leased: true,
        })
        .await
}

/// A continuation must be of the same PUT: its name, its principal, and a length that
/// adds up to the one announced first.
fn check_same(
    upload: &TusUpload,
    principal: &Principal,
    name: &str,
    from: i64,
    headers: &HeaderMap,
) -> Result<()> {
    if !upload.put || upload.name != name {
        return Err(NodeError::BadRequest(format!(
            "upload {} is not a PUT of {name}",
            upload.id
        )));
    }
    check_owned(upload, principal)?;
    match upload::declared_length(headers) {
        Some(rest) if upload.length >= 0 && from + rest as i64 != upload.length => {
            Err(NodeError::BadRequest(format!(
                "{from} + Content-Length {rest} is not the upload's length {}",
                upload.length
            )))
        }
        _ => Ok(()),
    }
}

fn upload_id(headers: &HeaderMap) -> Result<String> {
    let id = headers
        .get(SPEEDBOX_UPLOAD)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| NodeError::BadRequest("Speedbox-Upload must be 32 hex digits".into()))?;
    Ok(id.to_ascii_lowercase())
}

fn offset(headers: &HeaderMap) -> Result<i64> {
    headers
        .get(SPEEDBOX_UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| {
            NodeError::BadRequest("Speedbox-Upload-Offset must be a non-negative integer".into())
        })
}

/// `body` without its first `bytes` bytes (the ones the upload already has).
fn skip<S>(body: S, mut bytes: i64) -> impl Stream<Item = Result<Bytes>>
where
    S: Stream<Item = Result<Bytes>>,
{
    body.filter_map(move |frame| {
        let out = match frame {
            Ok(data) if bytes > 0 => {
                let n = bytes.min(data.len() as i64);
                bytes -= n;
                Some(Ok(data.slice(n as usize..))).filter(|d| !matches!(d, Ok(d) if d.is_empty()))
            }
            other => Some(other),
        };
        futures::future::ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn skip_drops_exactly_the_bytes_already_stored() {
        let frames = |sizes: &[usize]| {
            let mut at = 0u8;
            let out: Vec<Result<Bytes>> = sizes
                .iter()
                .map(|&n| {
                    let data: Vec<u8> = (0..n).map(|_| (at, at = at.wrapping_add(1)).0).collect();
                    Ok(Bytes::from(data))
                })
                .collect();
            futures::stream::iter(out)
        };
        for (sizes, n) in [
            (&[3, 4, 5][..], 0),
            (&[3, 4, 5], 3),
            (&[3, 4, 5], 5),
            (&[3], 3),
        ] {
            let all: Vec<u8> = (0..sizes.iter().sum::<usize>() as u8).collect();
            let got: Vec<Result<Bytes>> = skip(frames(sizes), n).collect().await;
            assert!(got.iter().all(|f| f.as_ref().is_ok_and(|d| !d.is_empty())));
            let got: Vec<u8> = got.into_iter().flat_map(|f| f.unwrap().to_vec()).collect();
            assert_eq!(got, all[n as usize..], "{sizes:?} skipping {n}");
        }
    }

    #[test]
    fn ids_and_offsets_are_checked() {
        let mut h = HeaderMap::new();
        assert!(upload_id(&h).is_err());
        h.insert(
            SPEEDBOX_UPLOAD,
            "0123456789ABCDEF0123456789abcdef".parse().unwrap(),
        );
        assert_eq!(upload_id(&h).unwrap(), "0123456789abcdef0123456789abcdef");
        h.insert(SPEEDBOX_UPLOAD, "../x".parse().unwrap());
        assert!(upload_id(&h).is_err());
        assert!(offset(&h).is_err());
        h.insert(SPEEDBOX_UPLOAD_OFFSET, "-1".parse().unwrap());
        assert!(offset(&h).is_err());
        h.insert(SPEEDBOX_UPLOAD_OFFSET, "42".parse().unwrap());
        assert_eq!(offset(&h).unwrap(), 42);
    }
}
