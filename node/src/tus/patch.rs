//! One PATCH body into chunks, under the upload's lease.
//!
//! Bytes are cut into whole chunks (the first one completing the stored tail) and written a
//! batch per round trip. Without `Upload-Checksum` every journaled batch moves the durable
//! offset, so a broken PATCH keeps what arrived; with one, nothing counts until the whole
//! body is verified, and a mismatch removes what this PATCH wrote.

use futures::StreamExt;
use http_body_util::BodyDataStream;
use hyper::body::Incoming;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::complete::finish;
use super::headers::{Algorithm, Checksum};
use super::Tus;
use crate::digest::Hasher;
use crate::error::{NodeError, Result};
use crate::store::LEASE_TTL;
use crate::store::{Chunker, Store, TusUpload};

/// Without a checksum, the durable offset moves at most this often during a PATCH: each
/// move is a journaled write, and a crash costs the client at most this much re-sending.
const ADVANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

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
pub(super) async fn write_patch(
    store: &Store,
    upload: TusUpload,
    token: i64,
    checksum: Option<Checksum>,
    body: Incoming,
    tus: &Tus,
) -> Result<i64> {
    let limits = &tus.limits;
    let cs = upload.chunk_size as usize;
    let start_chunk = upload.offset / cs as i64;
    let mut next_n = start_chunk;
    let mut chunker = Chunker::new(cs, limits.chunks_per_write, &upload.tail.bytes);
    let mut received = upload.offset;
    let mut hasher = checksum.as_ref().map(|c| PatchHasher::new(c.algorithm));
    // The whole file's digests, when this node has seen every byte before this PATCH.
    let mut whole = match upload.offset {
        0 => Some(Hasher::default()),
        offset => tus.carry.take(&upload.id, offset),
    };
    let mut writer = store.chunk_writer(upload.file_id, Some(token));
    let mut last_renew = tokio::time::Instant::now();
    let mut last_advance = last_renew;
    let stream = BodyDataStream::new(body);
    futures::pin_mut!(stream);

    let outcome: Result<()> = async {
        loop {
            let next = tokio::time::timeout(limits.idle, stream.next())
                .await
                .map_err(|_| NodeError::BodyIdle(limits.idle.as_secs()))?;
            let Some(frame) = next else { break };
            let data = frame.map_err(|e| NodeError::Body(e.to_string()))?;
            if received + data.len() as i64 > upload.length {
                return Err(NodeError::TooLarge {
                    limit: upload.length as u64,
                });
            }
            received += data.len() as i64;
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            if let Some(h) = whole.as_mut() {
                h.update(&data);
            }
            for batch in chunker.push(data) {
                if last_renew.elapsed() > LEASE_TTL / 3 {
                    if !store.tus_renew(&upload.id, token, LEASE_TTL).await? {
                        return Err(NodeError::Locked(format!("upload {}", upload.id)));
                    }
                    last_renew = tokio::time::Instant::now();
                }
                let written = batch.len() as i64;
                writer.write(next_n, batch).await?;
                next_n += written;
                // Without a checksum journaled batches are progress a retry keeps. The
                // last byte is recorded only at the end, where the upload completes.
                let durable = next_n * cs as i64;
                if hasher.is_none()
                    && last_advance.elapsed() >= ADVANCE_EVERY
                    && durable < upload.length
                {
                    writer.flush().await?;
                    advance(store, &upload, token, durable, &[], tus).await?;
                    last_renew = tokio::time::Instant::now();
                    last_advance = last_renew;
                }
            }
        }
        Ok(())
    }
    .await;

    if let Err(NodeError::Locked(_)) = outcome {
        // Another request owns the upload now; anything we wrote could collide with it.
        writer.settled().await;
        return outcome.map(|()| received);
    }
    // The offset may only move over chunks that are in; a failed write leaves a hole.
    let flushed = writer.flush().await;
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
        store.tus_discard_from(&upload, start_chunk, token).await?;
        return Err(outcome.err().unwrap_or(e));
    }
    if let Err(e) = flushed {
        // The offset stays where it was; the next PATCH's lease clears what lies beyond.
        return Err(outcome.err().unwrap_or(e));
    }
    // Keep every byte that arrived (a broken PATCH included): full chunks, then the rest as
    // the tail, or as the file's last chunk when the upload is complete.
    let (mut batch, mut tail) = chunker.finish();
    if complete && !tail.is_empty() {
        batch.push(std::mem::take(&mut tail));
    }
    writer.write(next_n, batch).await?;
    writer.flush().await?;
    advance(store, &upload, token, received, &tail, tus).await?;
    if complete {
        let mut done = upload;
        done.offset = received;
        finish(store, &done, token, whole.map(Hasher::finish)).await?;
    } else if let Some(h) = whole {
        tus.carry.put(&upload.id, received, h);
    }
    outcome?;
    Ok(received)
}

/// Records `offset` (and the unfinished chunk's bytes) as durable under our lease, sliding
/// the expiry; `Locked` if the lease was taken over.
async fn advance(
    store: &Store,
    upload: &TusUpload,
    token: i64,
    offset: i64,
    tail: &[u8],
    tus: &Tus,
) -> Result<()> {
    let expires = tus.limits.expires_after;
    let (id, length) = (&upload.id, upload.length);
    if store
        .tus_advance(id, token, offset, length, tail, expires, LEASE_TTL)
        .await?
    {
        Ok(())
    } else {
        Err(NodeError::Locked(format!("upload {id}")))
    }
}
