//! The finishing half of a resumable upload: publishing it once every byte is in,
//! recovering a publication whose finisher died, termination and expiry.
//!
//! Publication runs under a lease too (the finisher keeps the one it wrote with; a
//! recoverer takes a fresh one once that has run out), and [`Store::publish`] is
//! idempotent, so an upload is published exactly once in effect however often finishing
//! is attempted or interrupted.

use std::time::{Duration, Instant};

use bson::{doc, DateTime};
use bytes::Bytes;
use futures::TryStreamExt;

use super::lease::{after, lease_free, Taken};
use super::tus::{TusUpload, LEASE_TTL};
use super::{ChunkLayout, FileInfo, Finished, Guard, Store};
use crate::digest::{Digests, Hasher};
use crate::error::{NodeError, Result};

/// How long a published PUT's state stays to answer a replayed continuation (its 201 was
/// lost with its node) with the same file: the balancer sends one within seconds, and every
/// state kept is a document the sweep reads.
const PUT_DONE_KEPT: Duration = Duration::from_secs(60);

/// Who publishes a complete upload whose finisher died ([`Store::tus_recover`]).
#[derive(Clone, Copy)]
pub enum Recoverer<'a> {
    /// The sweep, or any tus request: every upload but a PUT. A PUT is published only by
    /// its own request or the balancer's continuation of it, which alone bring its
    /// preconditions and know that its client still waits: published by the sweep after
    /// its request failed, it would appear after its client got an error, and could lay
    /// an older body over the one the client sent since.
    Anyone,
    /// A PUT's continuation, which brings the PUT's preconditions.
    Put(Option<&'a dyn Guard>),
}

/// What [`Store::tus_terminate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminated {
    /// The upload and its bytes are gone.
    Removed,
    /// The upload had completed: its state is gone, the published file stays.
    StateOnly,
    /// The upload is complete and a live finisher is publishing it: ask again once it has.
    Publishing,
    NotFound,
}

impl Store {
    /// MD5 and SHA-256 of an upload's stored chunks, read back in windows, keeping the
    /// lease `(id, token)` alive meanwhile (a multi-GB read-back outlasts it).
    async fn digest_stored(&self, upload: &TusUpload, token: i64) -> Result<Digests> {
        let (window, ttl) = (self.read_window, LEASE_TTL);
        let layout = ChunkLayout {
            file_id: upload.file_id,
            chunk_size: upload.chunk_size as u64,
            length: upload.length as u64,
        };
        let mut hasher = Hasher::default();
        let total = layout.count();
        let mut n = 0;
        let mut renewed = Instant::now();
        while n < total {
            if renewed.elapsed() > ttl / 3 {
                if !self.tus_renew(&upload.id, token, ttl, None).await? {
                    return Err(NodeError::Locked(format!("upload {}", upload.id)));
                }
                renewed = Instant::now();
            }
            let to = (n + window).min(total);
            for chunk in self.read_chunks(layout, n, to).await? {
                hasher.update(&chunk);
            }
            n = to;
        }
        Ok(hasher.finish())
    }

    /// Publishes a complete upload under its name like a PUT, then marks its state done.
    /// `token` is the lease the caller holds. Without `digests` they come from the state
    /// the last PATCH recorded, or, if it recorded none at the final offset, from the
    /// stored chunks. `inline`: see [`Finished::inline`]. `guard` is a PUT's preconditions: if they
    /// fail, the upload is discarded and the answer is [`NodeError::PreconditionFailed`].
    pub async fn tus_finish(
        &self,
        upload: &TusUpload,
        token: i64,
        digests: Option<Digests>,
        inline: Option<Bytes>,
        guard: Option<&dyn Guard>,
    ) -> Result<FileInfo> {
        let _timer = self.metrics.time("tus_finish");
        let digests = match digests.or_else(|| upload.saved_hasher().map(Hasher::finish)) {
            Some(d) => d,
            None => self.digest_stored(upload, token).await?,
        };
        let content_type = upload
            .content_type
            .clone()
            .unwrap_or_else(|| super::guess_type(&upload.name));
        let done = Finished {
            length: upload.length as u64,
            content_type,
            md5: hex::encode(&digests.md5),
            sha256: hex::encode(&digests.sha256),
            media: None,
            inline,
        };
        let info = match self
            .publish(upload.file_id, upload.name.clone(), done, guard)
            .await
        {
            Err(e @ NodeError::PreconditionFailed(_)) => {
                self.tus_discard(upload, token).await?;
                return Err(e);
            }
            published => published?,
        };
        let empty = super::binary(Vec::new());
        let mut set = doc! {
            "done": true, "offset": upload.length, "tail": empty,
            "lease_until": null, "lease_node": null,
        };
        if upload.put {
            set.insert("expires_at", after(PUT_DONE_KEPT));
        }
        self.tus
            .update_one(
                doc! {"_id": &upload.id, "complete": true},
                doc! {"$set": set},
            )
            .await?;
        Ok(info)
    }

    /// Publishes a complete upload whose finisher died (its lease ran out). Ok(false) when
    /// it is not complete-and-unpublished, a live finisher holds it, or `by` may not
    /// publish it (see [`Recoverer`]).
    pub async fn tus_recover(&self, id: &str, by: Recoverer<'_>) -> Result<bool> {
        let _timer = self.metrics.time("tus_recover");
        match by {
            Recoverer::Anyone => self.recover(id, doc! {"put": {"$ne": true}}, None).await,
            Recoverer::Put(guard) => self.recover(id, doc! {"put": true}, guard).await,
        }
    }

    async fn recover(
        &self,
        id: &str,
        only: bson::Document,
        guard: Option<&dyn Guard>,
    ) -> Result<bool> {
        let mut filter = lease_free(DateTime::now());
        filter.extend(doc! {"_id": id, "complete": true, "done": false});
        filter.extend(only);
        match self.take_lease(id, filter, LEASE_TTL).await? {
            Taken::Ours(upload, token) => {
                self.tus_finish(&upload, token, None, None, guard).await?;
                tracing::info!(upload = %id, file = %upload.name, "tus upload published by recovery");
                Ok(true)
            }
            Taken::Not(_) | Taken::NotFound => Ok(false),
        }
    }

    /// Terminates an upload. An unfinished one loses its state and its chunks in that
    /// order, the state's removal proving in the same step that it is still unfinished;
    /// a completed one loses only its state (its chunks are a published file now, removed
    /// by `DELETE /files/{name}`), after being published if its finisher died.
    pub async fn tus_terminate(&self, id: &str) -> Result<Terminated> {
        let _timer = self.metrics.time("tus_terminate");
        loop {
            let Some(upload) = self.tus_get(id).await? else {
                return Ok(Terminated::NotFound);
            };
            if upload.complete && !upload.done {
                if !self.tus_recover(id, Recoverer::Anyone).await? {
                    return Ok(Terminated::Publishing);
                }
                continue;
            }
            if upload.done {
                self.tus.delete_one(doc! {"_id": id, "done": true}).await?;
                return Ok(Terminated::StateOnly);
            }
            let gone = self
                .tus
                .delete_one(doc! {"_id": id, "done": false, "complete": {"$ne": true}})
                .await?;
            if gone.deleted_count == 1 {
                // No state, no lease: nobody can complete or publish this file id any more.
                self.chunks
                    .delete_many(doc! {"files_id": upload.file_id})
                    .await?;
                return Ok(Terminated::Removed);
            }
        }
    }

    /// Removes unfinished uploads past their expiry with their chunks, the state of
    /// finished ones, and publishes complete uploads whose finisher died.
    pub(super) async fn sweep_tus(&self) -> Result<u64> {
        let now = DateTime::now();
        // Only the `{complete, done}` index's two fields: with the lease and `put`
        // conditions in the filter as well, the embedded database scans every upload
        // (731 ms at 10,000 finished ones, against 1 ms). Those are checked here instead,
        // and again by the compare-and-set that takes the lease.
        let stranded: Vec<TusUpload> = self
            .tus
            .find(doc! {"complete": true, "done": false})
            .limit(100)
            .await?
            .try_collect()
            .await?;
        // A finisher that failed released its lease (null); one that died let it run out.
        let unleased = |u: &&TusUpload| u.lease_until.is_none_or(|until| until < now);
        for upload in stranded.iter().filter(|u| !u.put).filter(unleased) {
            self.tus_recover(&upload.id, Recoverer::Anyone).await?;
        }
        self.sweep_finished(now).await?;
        let expired: Vec<TusUpload> = self
            .tus
            .find(doc! {"expires_at": {"$lt": now}, "done": false})
            .limit(100)
            .await?
            .try_collect()
            .await?;
        let mut removed = 0;
        for upload in expired {
            // Unfinished, expired and nobody writing, proven by the delete itself: a PATCH
            // that slid the expiry or holds a live lease keeps the upload. A complete PUT
            // is never published by the sweep (see `Recoverer::Anyone`): once abandoned,
            // it goes too, unless a publication got as far as its name.
            let mut filter = lease_free(now);
            filter.extend(doc! {"_id": &upload.id, "done": false, "expires_at": {"$lt": now}});
            if upload.put {
                filter.insert("put", true);
            } else {
                filter.insert("complete", doc! {"$ne": true});
            }
            let gone = self.tus.delete_one(filter).await?;
            if gone.deleted_count == 1 && !self.is_referenced(upload.file_id).await? {
                self.chunks
                    .delete_many(doc! {"files_id": upload.file_id})
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the states of published uploads past their expiry (their files stay) in
    /// one delete that proves each is done and expired. One delete per state, by every
    /// node at once, was what made small PUTs collapse as the store grew: 2,000 PUTs'
    /// states expiring together cost 3,433 deletes of 21 ms each on the embedded
    /// database (0.5 PUT/s meanwhile), against 1.4 s for 3,000 in one delete. (Batches
    /// by `_id: {$in: [...]}` took 6 s per 500 there, and finding a batch's bound by
    /// expiry cost as much as the delete it bounded.)
    async fn sweep_finished(&self, now: DateTime) -> Result<()> {
        self.tus
            .delete_many(doc! {"done": true, "expires_at": {"$lt": now}})
            .await?;
        Ok(())
    }
}
