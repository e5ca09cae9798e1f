//! Request bodies into GridFS: `PUT /files/{name}` and each file part of `POST /upload`.
//!
//! Bytes are cut into chunks as they arrive and written a few chunks per round trip, so memory
//! stays at about `chunk_size × chunks_per_write` per upload whatever the file's size. The
//! digests are computed on the way; only when the whole body has arrived and matches what the
//! client announced is the upload committed. Any other ending drops the [`Upload`], which
//! removes its chunks.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::HeaderMap;

use crate::digest::{Digests, Expected, Hasher};
use crate::error::{NodeError, Result};
use crate::store::{guess_type, Chunker, FileInfo, Finished, Guard, MediaOutput, Store, Upload};

/// Limits that apply to one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub chunks_per_write: usize,
    pub idle: Duration,
    pub max_size: u64,
}

/// Streams `body` into a new revision of `name` and makes it current, if `guard` (the
/// request's preconditions) allows: checked before the body is read, so a doomed upload
/// is refused before the client sends it (with `Expect: 100-continue`), and again in the
/// compare-and-set that makes it current.
pub async fn store_stream<S>(
    store: &Store,
    name: &str,
    content_type: Option<&str>,
    expected: &Expected,
    body: S,
    limits: Limits,
    guard: Option<&dyn Guard>,
) -> Result<FileInfo>
where
    S: Stream<Item = Result<Bytes>>,
{
    if let Some(guard) = guard {
        if !guard.allows(store.lookup(name).await?.as_ref()) {
            return Err(NodeError::PreconditionFailed(name.to_string()));
        }
    }
    let received = receive(store, name, body, limits).await?;
    expected.check(&received.digests)?;
    let content_type = content_type.map_or_else(|| guess_type(name), str::to_string);
    let done = received.finished(content_type, None);
    received.upload.commit(done, guard).await
}

/// A body completely stored under a new file id, not yet visible under any name.
pub struct Received {
    pub upload: Upload,
    /// Bytes.
    pub length: u64,
    pub digests: Digests,
    /// The file's last chunk, offered as its whole content (see [`crate::store::Finished::inline`]).
    pub inline: Option<Bytes>,
}

impl Received {
    /// What [`Upload::commit`] needs to publish it as `content_type`.
    pub fn finished(&self, content_type: String, media: Option<MediaOutput>) -> Finished {
        Finished {
            length: self.length,
            content_type,
            md5: hex::encode(&self.digests.md5),
            sha256: hex::encode(&self.digests.sha256),
            media,
            inline: self.inline.clone(),
        }
    }
}

/// Streams `body` into a new, unpublished upload of `name`, digesting it on the way.
/// Dropping the result before committing it removes what was written.
pub async fn receive<S>(store: &Store, name: &str, body: S, limits: Limits) -> Result<Received>
where
    S: Stream<Item = Result<Bytes>>,
{
    let mut upload = store.begin_upload(name).await?;
    let mut chunker = Chunker::new(store.chunk_size() as usize, limits.chunks_per_write, &[]);
    let mut hasher = Hasher::default();
    let mut length = 0u64;
    futures::pin_mut!(body);
    loop {
        let next = tokio::time::timeout(limits.idle, body.next())
            .await
            .map_err(|_| NodeError::BodyIdle(limits.idle.as_secs()))?;
        let Some(frame) = next else { break };
        let data = frame?;
        length += data.len() as u64;
        if length > limits.max_size {
            return Err(NodeError::TooLarge {
                limit: limits.max_size,
            });
        }
        hasher.update(&data);
        for batch in chunker.push(data) {
            upload.write(batch).await?;
        }
    }
    // The file is complete: its tail is its last chunk.
    let (mut batch, tail) = chunker.finish();
    let inline = (length <= crate::store::INLINE_MAX_BYTES).then(|| tail.clone());
    if !tail.is_empty() {
        batch.push(tail);
    }
    upload.write(batch).await?;
    Ok(Received {
        upload,
        length,
        digests: hasher.finish(),
        inline,
    })
}

/// The client's Content-Type, if it sent a usable one.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The body's length as its `Content-Length` says, if it says one (bytes).
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A Content-Length larger than the limit is refused before a byte is read.
pub fn check_declared_length(headers: &HeaderMap, limits: &Limits) -> Result<()> {
    match declared_length(headers) {
        Some(len) if len > limits.max_size => Err(NodeError::TooLarge {
            limit: limits.max_size,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_guessed_from_names() {
        assert_eq!(guess_type("clips/a.mp4"), "video/mp4");
        assert_eq!(guess_type("notes.txt"), "text/plain");
        assert_eq!(guess_type("blob"), "application/octet-stream");
    }

    #[test]
    fn declared_length_over_limit_is_413() {
        let limits = Limits {
            chunks_per_write: 4,
            idle: Duration::from_secs(1),
            max_size: 10,
        };
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        assert_eq!(
            check_declared_length(&h, &limits).unwrap_err().status(),
            413
        );
        h.insert(http::header::CONTENT_LENGTH, "10".parse().unwrap());
        assert!(check_declared_length(&h, &limits).is_ok());
    }
}
