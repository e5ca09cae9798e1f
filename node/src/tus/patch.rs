//! One PATCH body (or a plain PUT the balancer may continue elsewhere, see
//! [`crate::put_resume`]) into chunks, under the upload's lease, in four named steps:
//!
//! 1. [`Patch::receive`]: cut the bytes into whole chunks (the first one completing the
//!    stored tail) and write a batch per round trip. Without `Upload-Checksum` the durable
//!    offset moves over journaled batches now and then (every second for tus, after every
//!    batch for a PUT), with the whole-file digests' state at exactly that offset, so a
//!    broken PATCH keeps what arrived and another node can go on from it.
//! 2. verify: [`check`] the client's checksum; [`settle`] decides from how receiving
//!    ended, what the checksum says and whether every write is in (the outcome matrix).
//! 3. [`Patch::record`]: write what remains and record the new offset under the lease.
//! 4. [`Patch::finish`]: publish the file when the upload is complete.

use std::collections::VecDeque;
use std::future::Future;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::advancing::Advancing;
use super::checksum::{check, Checked, PatchHasher};
use super::headers::Checksum;
use super::Tus;
use crate::digest::{Expected, Hasher};
use crate::error::{NodeError, Result};
use crate::store::{ChunkWriter, Chunker, FileInfo, Guard, Store, TusUpload, LEASE_TTL};

/// Without a checksum, the durable offset of a tus PATCH moves at most this often: each
/// move is a journaled write, and a crash costs the client at most this much re-sending.
const ADVANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a plain PUT asks of its upload besides its bytes (`None` for tus).
pub struct PutTerms<'a> {
    /// Digests the client announced: checked before the last byte is recorded, so a
    /// complete upload always has the digests it was sent with.
    pub expected: &'a Expected,
    /// The request's preconditions, evaluated in the compare-and-set that publishes.
    pub guard: Option<&'a dyn Guard>,
    /// Bytes, for a PUT of unknown length (chunked).
    pub max_size: u64,
}

/// Streams one PATCH body into chunks under our lease; returns the new durable offset,
/// and the file when this body completed the upload.
pub(crate) async fn write_patch<S>(
    store: &Store,
    upload: TusUpload,
    token: i64,
    checksum: Option<Checksum>,
    body: S,
    tus: &Tus,
    put: Option<&PutTerms<'_>>,
) -> Result<(i64, Option<FileInfo>)>
where
    S: Stream<Item = Result<Bytes>>,
{
    let mut patch = Patch::new(store, upload, token, checksum.as_ref(), tus, put);
    let received = patch.receive(body).await;
    if received.is_ok() && patch.upload.length < 0 {
        // A PUT of unknown length: its clean end is the file's end.
        patch.upload.length = patch.received;
    }
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
            let file = patch.finish().await?;
            received?;
            return Ok((offset, file));
        }
    }
    received?;
    flushed?;
    Ok((patch.received, None))
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
    /// The whole file's digests, when the state recorded with the offset is at hand. They
    /// take the bytes as they go into chunks (not as frames arrive), so their state is
    /// known at every chunk boundary a mid-PATCH advance may record.
    whole: Option<Hasher>,
    /// Bytes of the stored tail at the front of the first chunk: hashed by the PATCH that
    /// stored them, so skipped here.
    hashed_ahead: usize,
    /// The digests' state at the end of each batch still being written.
    states: VecDeque<(i64, Vec<u8>)>,
    /// The offset last recorded as durable.
    advanced: i64,
    writer: ChunkWriter,
    put: Option<&'a PutTerms<'a>>,
    /// The last chunk of a file this PATCH completed in one batch of one chunk, offered as
    /// its whole content (see [`crate::store::Finished::inline`]).
    inline: Option<Bytes>,
}

impl<'a> Patch<'a> {
    fn new(
        store: &'a Store,
        upload: TusUpload,
        token: i64,
        checksum: Option<&Checksum>,
        tus: &'a Tus,
        put: Option<&'a PutTerms<'a>>,
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
            hashed_ahead: upload.tail.bytes.len(),
            states: VecDeque::new(),
            advanced: upload.offset,
            writer: store.chunk_writer(upload.file_id, Some(token)),
            put,
            inline: None,
            upload,
            token,
            chunk_size,
            start_chunk,
            next_n: start_chunk,
        }
    }

    /// Step 1: reads the body to its end (or its failure), writing whole chunks as they
    /// fill and renewing the lease (also while the body pauses). The offset recorded
    /// meanwhile has landed when this returns, so nothing recorded later is overtaken.
    async fn receive<S>(&mut self, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>>,
    {
        let mut advancing = Advancing::default();
        let received = self.receive_into(body, &mut advancing).await;
        match (received, advancing.land().await) {
            (_, Err(locked @ NodeError::Locked(_))) => Err(locked),
            // The body is whole: the final record, under the same lease, supersedes the
            // one that failed (failing here would answer an error for a published PUT).
            (Ok(()), Err(e)) => {
                tracing::warn!(upload = %self.upload.id, "recording the offset failed: {e}");
                Ok(())
            }
            (received, _) => received,
        }
    }

    async fn receive_into<S>(&mut self, body: S, advancing: &mut Advancing) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>>,
    {
        let idle = self.tus.limits.idle;
        let renew_every = LEASE_TTL / 3;
        let mut last_renew = tokio::time::Instant::now();
        let mut last_advance = last_renew;
        let mut last_byte = last_renew;
        let limit = match (self.upload.length, self.put) {
            (length, _) if length >= 0 => length,
            (_, Some(put)) => put.max_size as i64,
            (_, None) => i64::MAX,
        };
        futures::pin_mut!(body);
        loop {
            let next = match tokio::time::timeout(renew_every.min(idle), body.next()).await {
                Ok(next) => next,
                Err(_) if last_byte.elapsed() >= idle => {
                    return Err(NodeError::BodyIdle(idle.as_secs()))
                }
                Err(_) => {
                    self.renew().await?;
                    last_renew = tokio::time::Instant::now();
                    continue;
                }
            };
            last_byte = tokio::time::Instant::now();
            let Some(frame) = next else { return Ok(()) };
            let data = frame?;
            if self.received + data.len() as i64 > limit {
                return Err(NodeError::TooLarge {
                    limit: limit as u64,
                });
            }
            self.received += data.len() as i64;
            if let Some(h) = self.hasher.as_mut() {
                h.update(&data);
            }
            for batch in self.chunker.push(data) {
                if last_renew.elapsed() > renew_every {
                    self.renew().await?;
                    last_renew = tokio::time::Instant::now();
                }
                self.hash_committed(&batch);
                let written = batch.len() as i64;
                self.writer.write(self.next_n, batch).await?;
                self.next_n += written;
                // Without a checksum journaled batches are progress a retry keeps. The
                // last byte is recorded only at the end, where the upload completes.
                let Some(durable) = self.durable() else {
                    continue;
                };
                // A PUT's balancer holds every byte not yet recorded in its window
                // (`upload_window_bytes`): record each batch as soon as it is in.
                let due = self.put.is_some() || last_advance.elapsed() >= ADVANCE_EVERY;
                if self.hasher.is_none()
                    && due
                    && (self.upload.length < 0 || durable < self.upload.length)
                {
                    // Recorded while the body is read on, one record at a time (awaited
                    // in line, it held up every batch: see `tus::advancing`).
                    let state = self.state_at(durable);
                    let advance = self.advance(durable, Bytes::new(), state);
                    advancing.start(advance).await?;
                    self.advanced = durable;
                    last_renew = tokio::time::Instant::now();
                    last_advance = last_renew;
                }
            }
        }
    }

    /// Feeds the whole-file digests the bytes of `chunks` not hashed before, and notes
    /// their state at the batch's end.
    fn hash_committed(&mut self, chunks: &[Bytes]) {
        let Some(whole) = self.whole.as_mut() else {
            return;
        };
        for chunk in chunks {
            let skip = self.hashed_ahead.min(chunk.len());
            self.hashed_ahead -= skip;
            whole.update(&chunk[skip..]);
        }
        let end = self.next_n + chunks.len() as i64;
        self.states.push_back((end, whole.state()));
    }

    /// The offset up to which every chunk is in the database, if past the last recorded.
    fn durable(&self) -> Option<i64> {
        let through = self.writer.written_through()? * self.chunk_size;
        (through > self.advanced).then_some(through)
    }

    /// The digests' state after exactly `offset` bytes (a batch's end), if known.
    fn state_at(&mut self, offset: i64) -> Option<Vec<u8>> {
        let end_n = offset / self.chunk_size;
        while let Some((n, state)) = self.states.pop_front() {
            if n == end_n {
                return Some(state);
            }
        }
        None
    }

    async fn renew(&self) -> Result<()> {
        let store = self.store;
        let expires = Some(self.tus.limits.expires_after);
        if store
            .tus_renew(&self.upload.id, self.token, LEASE_TTL, expires)
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
    /// file's last chunk when the upload is complete), and records the new offset. A PUT's
    /// announced digests are checked first: a mismatch discards the upload.
    async fn record(&mut self) -> Result<i64> {
        let chunker = std::mem::replace(&mut self.chunker, Chunker::new(1, 1, &[]));
        let (mut batch, mut tail) = chunker.finish();
        if self.complete() && !tail.is_empty() {
            batch.push(std::mem::take(&mut tail));
        }
        if let ([last], true) = (batch.as_slice(), self.complete()) {
            self.inline = Some(last.clone());
        }
        self.hash_committed(&batch);
        self.hash_committed(std::slice::from_ref(&tail));
        if let (Some(put), true) = (self.put, self.complete()) {
            let digests = self.whole.clone().map(Hasher::finish).ok_or_else(|| {
                NodeError::Internal("the digests of the stored prefix are lost".into())
            })?;
            if let Err(e) = put.expected.check(&digests) {
                self.writer.flush().await.ok();
                self.store.tus_discard(&self.upload, self.token).await?;
                return Err(e);
            }
        }
        self.writer.write(self.next_n, batch).await?;
        self.writer.flush().await?;
        let hash = self.whole.as_ref().map(Hasher::state);
        self.advance(self.received, tail, hash).await?;
        Ok(self.received)
    }

    /// Step 4: a complete upload is published, and its file returned (an unfinished one
    /// recorded its running digests with its offset in step 3).
    async fn finish(self) -> Result<Option<FileInfo>> {
        if !self.complete() {
            return Ok(None);
        }
        let mut done = self.upload;
        done.offset = self.received;
        let guard = self.put.and_then(|p| p.guard);
        let digests = self.whole.map(Hasher::finish);
        let info = self
            .store
            .tus_finish(&done, self.token, digests, self.inline, guard)
            .await?;
        tracing::info!(upload = %done.id, file = %info.name, length = info.length, "upload complete");
        Ok(Some(info))
    }

    fn complete(&self) -> bool {
        self.received == self.upload.length
    }

    /// Records `offset` (and the unfinished chunk's bytes, and the digests' state after
    /// exactly `offset` bytes if given) as durable under our lease, sliding the expiry;
    /// `Locked` if the lease was taken over. The future owns what it needs, so that it can
    /// run while the body is read on ([`Advancing`]).
    fn advance(
        &self,
        offset: i64,
        tail: Bytes,
        hash: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (store, id, token) = (self.store.clone(), self.upload.id.clone(), self.token);
        let (length, expires) = (self.upload.length, self.tus.limits.expires_after);
        async move {
            let moved = store
                .tus_advance(&id, token, offset, length, &tail, hash, expires, LEASE_TTL)
                .await?;
            if moved {
                Ok(())
            } else {
                Err(NodeError::Locked(format!("upload {id}")))
            }
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
