//! The end of a resumable upload: publishing it once every byte is in, and what requests
//! to a complete upload get. A complete upload is immutable (tus 1.0 core: a mismatched
//! PATCH is refused "without modifying the upload").

use std::time::Duration;

use http::{Response, StatusCode};

use super::{expires_header, response};
use crate::error::{NodeError, Result};
use crate::respond;
use crate::store::{Recoverer, Store, TusUpload};
use crate::{Body, ReqBody};

/// How long a request waits for a live finisher to publish a complete upload (a
/// multi-GB read-back takes longer; then the client gets 423 and asks again).
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// A PATCH to an upload that has every byte: it is immutable. An empty PATCH at its end
/// (what a client sends when the 204 of its last PATCH was lost) is answered 204 once the
/// file is published; anything else is 409 and changes nothing (tus 1.0 core).
pub(super) async fn patch_complete(
    store: &Store,
    upload: &TusUpload,
    offset: i64,
    body: &ReqBody,
) -> Result<Response<Body>> {
    use hyper::body::Body as _;
    if offset != upload.length || !body.is_end_stream() {
        return Err(NodeError::OffsetMismatch {
            expected: upload.length,
            got: offset,
        });
    }
    let upload = ensure_published(store, &upload.id, Recoverer::Anyone).await?;
    respond::empty(
        response(StatusCode::NO_CONTENT)
            .header("upload-offset", upload.length)
            .header("upload-expires", expires_header(&upload)),
    )
}

/// Waits until a complete upload is published, publishing it ourselves (as `by` may) if
/// its finisher died (its lease ran out); the state as it then is.
pub(crate) async fn ensure_published(
    store: &Store,
    id: &str,
    by: Recoverer<'_>,
) -> Result<TusUpload> {
    let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
    loop {
        let upload = store
            .tus_get(id)
            .await?
            .ok_or_else(|| NodeError::NotFound(format!("upload {id}")))?;
        if upload.done || !upload.complete {
            return Ok(upload);
        }
        if !store.tus_recover(id, by).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::Locked(format!("upload {id}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
