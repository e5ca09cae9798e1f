//! One PATCH body into chunks, under the upload's lease, in four named steps:
//!
//! 1. [`Patch::receive`]: cut the bytes into whole chunks (the first one completing the
//!    stored tail) and write a batch per round trip. Without `Upload-Checksum` every
//!    journaled batch moves the durable offset now and then, so a broken PATCH keeps what
//!    arrived.
//! 2. verify: [`check`] the client's checksum; [`settle`] decides from how receiving
//!    ended, what the checksum says and whether every write is in (the outcome matrix).
//! 3. [`Patch::record`]: write what remains and record the new offset under the lease.
//! 4. [`Patch::finish`]: publish the file when the upload is complete.

use futures::StreamExt;
use http_body_util::BodyDataStream;
use hyper::body::Incoming;

use super::checksum::{check, Checked, PatchHasher};
use super::complete::finish;
use super::headers::Checksum;
use super::Tus;
use crate::digest::Hasher;
use crate::error::{NodeError, Result};
use crate::store::{ChunkWriter, Chunker, Store, TusUpload, LEASE_TTL};

/// Without a checksum, the durable offset moves at most this often during a PATCH: each
/// move is a journaled write, and a crash costs the client at most this much re-sending.
const ADVANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Streams one PATCH body into chunks under our lease; returns the new durable offset.
pub(super) async fn write_patch(
    store: &Store,
    upload: TusUpload,
    token: i64,
    checksum: Option<Checksum>,
    body: Incoming,
    tus: &Tus,
) -> Result<i64> {
    let mut patch = Patch::new(store, upload, token, checksum.as_ref(), tus);
    let received = patch.receive(body).await;
    // The offset may only move over chunks that are in; a failed write leaves a hole.
    let flushed = patch.writer.flush().await;
    let checked = check(checksum.as_ref(), patch.hasher.take(), received.is_ok());
    match settle(&received, checked, flushed.is_ok()) {
        Settle::Abandon => {}
        Settle::Discard => {
            patch.discard().await?;
            return Err(received.err().unwrap_or(NodeError::ChecksumMismatch));
        }
        Settle::KeepOffset => {}
        Settle::Record => {
            let offset = patch.record().await?;
            patch.finish().await?;
            received?;
            return Ok(offset);
        }
    }
    received?;
    flushed?;
    Ok(patch.received)
}

/// What a PATCH does with the bytes it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Another request holds the lease now: anything more we wrote could collide with it.
    Abandon,
    /// Nothing of this PATCH counts: remove what it wrote; the offset never moved.
    Discard,
    /// A chunk write failed: the offset stays where it was, and the next PATCH's lease
    /// clears what lies beyond.
    KeepOffset,
    /// Keep every byte that arrived (a broken PATCH's too) and record the new offset.
    Record,
}

/// The outcome matrix: how receiving ended × what the checksum says × whether every chunk
/// write is in.
fn settle(received: &Result<()>, checked: Checked, flushed: bool) -> Settle {
    match (received, checked) {
        (Err(NodeError::Locked(_)), _) => Settle::Abandon,
        (_, Checked::Differs | Checked::Unverifiable) => Settle::Discard,
        _ if !flushed => Settle::KeepOffset,
        _ => Settle::Record,
    }
}

/// One PATCH under way: where its bytes go and what has been seen.
struct Patch<'a> {
    store: &'a Store,
    tus: &'a Tus,
    upload: TusUpload,
    token: i64,
    chunk_size: i64,
    /// The chunk this PATCH started in (the stored tail's, when there is one).
    start_chunk: i64,
    /// The next chunk number to write.
    next_n: i64,
    chunker: Chunker,
    /// Bytes of the file received so far, counting those before this PATCH.
    received: i64,
    /// The digest `Upload-Checksum` asks for.
    hasher: Option<PatchHasher>,
    /// The whole file's digests, when the state recorded with the offset is at hand.
    whole: Option<Hasher>,
    writer: ChunkWriter,
}

impl<'a> Patch<'a> {
    fn new(
        store: &'a Store,
        upload: TusUpload,
        token: i64,
        checksum: Option<&Checksum>,
        tus: &'a Tus,
    ) -> Self {
        let chunk_size = i64::from(upload.chunk_size);
        let start_chunk = upload.offset / chunk_size;
        let whole = upload.saved_hasher();
        Self {
            store,
            tus,
            chunker: Chunker::new(
                chunk_size as usize,
                tus.limits.chunks_per_write,
                &upload.tail.bytes,
            ),
            received: upload.offset,
            hasher: checksum.map(|c| PatchHasher::new(c.algorithm)),
            whole,
            writer: store.chunk_writer(upload.file_id, Some(token)),
            upload,
            token,
            chunk_size,
            start_chunk,
            next_n: start_chunk,
        }
    }

    /// Step 1: reads the body to its end (or its failure), writing whole chunks as they
    /// fill and renewing the lease.
    async fn receive(&mut self, body: Incoming) -> Result<()> {
        let idle = self.tus.limits.idle;
        let mut last_renew = tokio::time::Instant::now();
        let mut last_advance = last_renew;
        let stream = BodyDataStream::new(body);
        futures::pin_mut!(stream);
        loop {
            let next = tokio::time::timeout(idle, stream.next())
                .await
                .map_err(|_| NodeError::BodyIdle(idle.as_secs()))?;
            let Some(frame) = next else { return Ok(()) };
            let data = frame.map_err(|e| NodeError::Body(e.to_string()))?;
            if self.received + data.len() as i64 > self.upload.length {
                return Err(NodeError::TooLarge {
                    limit: self.upload.length as u64,
                });
            }
            self.received += data.len() as i64;
            if let Some(h) = self.hasher.as_mut() {
                h.update(&data);
            }
            if let Some(h) = self.whole.as_mut() {
                h.update(&data);
            }
            for batch in self.chunker.push(data) {
                if last_renew.elapsed() > LEASE_TTL / 3 {
                    self.renew().await?;
                    last_renew = tokio::time::Instant::now();
                }
                let written = batch.len() as i64;
                self.writer.write(self.next_n, batch).await?;
                self.next_n += written;
                // Without a checksum journaled batches are progress a retry keeps. The
                // last byte is recorded only at the end, where the upload completes.
                let durable = self.next_n * self.chunk_size;
                if self.hasher.is_none()
                    && last_advance.elapsed() >= ADVANCE_EVERY
                    && durable < self.upload.length
                {
                    self.writer.flush().await?;
                    // the digests have seen bytes past `durable`: no state to record
                    self.advance(durable, &[], None).await?;
                    last_renew = tokio::time::Instant::now();
                    last_advance = last_renew;
                }
            }
        }
    }

    async fn renew(&self) -> Result<()> {
        let store = self.store;
        if store
            .tus_renew(&self.upload.id, self.token, LEASE_TTL)
            .await?
        {
            Ok(())
        } else {
            Err(NodeError::Locked(format!("upload {}", self.upload.id)))
        }
    }

    /// Removes every chunk this PATCH wrote (only chunks tagged with our lease).
    async fn discard(&self) -> Result<()> {
        let store = self.store;
        store
            .tus_discard_from(&self.upload, self.start_chunk, self.token)
            .await
    }

    /// Step 3: writes the full chunks still held, then the rest as the tail (or as the
    /// file's last chunk when the upload is complete), and records the new offset.
    async fn record(&mut self) -> Result<i64> {
        let chunker = std::mem::replace(&mut self.chunker, Chunker::new(1, 1, &[]));
        let (mut batch, mut tail) = chunker.finish();
        if self.complete() && !tail.is_empty() {
            batch.push(std::mem::take(&mut tail));
        }
        self.writer.write(self.next_n, batch).await?;
        self.writer.flush().await?;
        let hash = self.whole.as_ref().map(Hasher::state);
        self.advance(self.received, &tail, hash).await?;
        Ok(self.received)
    }

    /// Step 4: a complete upload is published (an unfinished one recorded its running
    /// digests with its offset in step 3).
    async fn finish(self) -> Result<()> {
        if !self.complete() {
            return Ok(());
        }
        let mut done = self.upload;
        done.offset = self.received;
        finish(
            self.store,
            &done,
            self.token,
            self.whole.map(Hasher::finish),
        )
        .await
    }

    fn complete(&self) -> bool {
        self.received == self.upload.length
    }

    /// Records `offset` (and the unfinished chunk's bytes, and the digests' state after
    /// exactly `offset` bytes if given) as durable under our lease, sliding the expiry;
    /// `Locked` if the lease was taken over.
    async fn advance(&self, offset: i64, tail: &[u8], hash: Option<Vec<u8>>) -> Result<()> {
        let (store, id) = (self.store, &self.upload.id);
        let expires = self.tus.limits.expires_after;
        if store
            .tus_advance(
                id,
                self.token,
                offset,
                self.upload.length,
                tail,
                hash,
                expires,
                LEASE_TTL,
            )
            .await?
        {
            Ok(())
        } else {
            Err(NodeError::Locked(format!("upload {id}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_matrix() {
        let whole = || Ok(());
        let broken = || Err(NodeError::BodyIdle(1));
        let locked = || Err(NodeError::Locked("upload x".into()));
        use Checked::*;
        use Settle::*;
        let cases: [(Result<()>, Checked, bool, Settle); 14] = [
            // The lease is gone: touch nothing, whatever else happened.
            (locked(), NotAsked, true, Abandon),
            (locked(), Unverifiable, false, Abandon),
            // Checksum asked and not proven: nothing of the PATCH counts.
            (whole(), Differs, true, Discard),
            (whole(), Differs, false, Discard),
            (broken(), Unverifiable, true, Discard),
            (broken(), Unverifiable, false, Discard),
            // A write failed: the offset stays.
            (whole(), NotAsked, false, KeepOffset),
            (whole(), Matches, false, KeepOffset),
            (broken(), NotAsked, false, KeepOffset),
            // Otherwise what arrived is kept and recorded, a broken body's too.
            (whole(), NotAsked, true, Record),
            (whole(), Matches, true, Record),
            (broken(), NotAsked, true, Record),
            (
                Err(NodeError::TooLarge { limit: 1 }),
                NotAsked,
                true,
                Record,
            ),
            (Err(NodeError::Body("reset".into())), NotAsked, true, Record),
        ];
        for (received, checked, flushed, want) in cases {
            assert_eq!(
                settle(&received, checked, flushed),
                want,
                "{received:?} {checked:?} flushed={flushed}"
            );
        }
    }
}
