//! Resumable-upload state: one document per tus upload in `<bucket>.tus`, holding its
//! offset, length, metadata, expiry and lease. Any node can continue any upload because all
//! of its state, and the lock on it, live here.
//!
//! The byte layout follows GridFS from the start: chunks of the file id reserved at creation
//! are written as whole chunks; the bytes of a not-yet-full last chunk live in the document's
//! `tail`. So `offset` (what HEAD reports) is always `chunks written × chunk size + tail`, all
//! journaled. A lease (`lease_token`, `lease_until`) is taken by compare-and-set for each
//! PATCH; every state change is conditional on the token, so a request whose lease was taken
//! over (its node was presumed dead) can no longer move the offset.
//!
//! Nothing here deletes a byte that someone else may own. An upload moves `receiving →
//! complete → done`: `complete` is set in the same step that records the last offset, and
//! from then on no lease for writing is ever granted again, so a late, replayed or racing
//! PATCH can never touch the chunks of a published file. Chunks written under a lease carry
//! its token, and removing the leftovers of a dead request removes only chunks of *older*
//! tokens, never those of a newer holder. Terminating and expiring are single conditional
//! deletes of the state that prove the upload is still unfinished. (The finishing half:
//! [`super::tus_finish`].)

use std::time::Duration;

use bson::oid::ObjectId;
use bson::{doc, Binary, DateTime};
use serde::{Deserialize, Serialize};

use super::lease::{self, after, lease_free, Taken};
use super::{binary, Store};
use crate::digest::Hasher;
use crate::error::Result;

/// The state document of one resumable upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TusUpload {
    #[serde(rename = "_id")]
    pub id: String,
    pub file_id: ObjectId,
    pub name: String,
    pub content_type: Option<String>,
    /// The client's `Upload-Metadata`, echoed back on HEAD.
    pub metadata: String,
    pub length: i64,
    pub offset: i64,
    pub tail: Binary,
    pub chunk_size: i32,
    pub created_at: DateTime,
    pub expires_at: DateTime,
    pub lease_token: i64,
    pub lease_until: Option<DateTime>,
    pub lease_node: Option<String>,
    /// Every byte is in: set with the last offset, under the lease. No PATCH is leased
    /// again; the upload is being (or waits to be) published.
    #[serde(default)]
    pub complete: bool,
    /// Complete and published: the chunks belong to a file now, and HEAD keeps answering
    /// with the full offset until the state expires.
    #[serde(default)]
    pub done: bool,
    /// Who took the lease last: the compare-and-set writes a fresh id, and the read that
    /// follows it proves whose the token is.
    #[serde(default)]
    pub lease_holder: Option<ObjectId>,
    /// The principal (token `sub`) that created it: only it (or an admin) may continue,
    /// inspect or terminate it. `None` when created without a token.
    #[serde(default)]
    pub owner: Option<String>,
    /// The running whole-file digests ([`Hasher::state`]) after the first `hash_at`
    /// bytes, recorded in the same update as the offset at the end of every PATCH, so
    /// whichever node takes the next PATCH (or publishes the upload) goes on from them
    /// instead of reading the file back (about 8 s per GiB on the embedded database).
    #[serde(default)]
    pub hash_state: Option<Binary>,
    #[serde(default)]
    pub hash_at: Option<i64>,
    /// A plain `PUT` the balancer may continue on another node (`crate::put_resume`),
    /// not a tus upload: its `length` is -1 until a body of unknown length ends.
    #[serde(default)]
    pub put: bool,
}

impl TusUpload {
    /// The whole-file digests of the first `offset` bytes, if they were recorded at that
    /// very offset (a PATCH that moved the offset mid-way and then failed leaves them
    /// behind it: the digests then come from the stored chunks).
    pub fn saved_hasher(&self) -> Option<Hasher> {
        if self.offset == 0 {
            return Some(Hasher::default());
        }
        if self.hash_at != Some(self.offset) {
            return None;
        }
        Hasher::restore(&self.hash_state.as_ref()?.bytes)
    }
}

/// What a new upload starts from.
pub struct NewUpload {
    pub id: String,
    pub name: String,
    pub content_type: Option<String>,
    /// The client's `Upload-Metadata`, as sent.
    pub metadata: String,
    /// Bytes.
    pub length: i64,
    pub expires_in: Duration,
    pub owner: Option<String>,
    /// A plain PUT; see [`TusUpload::put`].
    pub put: bool,
    /// Create it with its lease taken by the caller (for [`LEASE_TTL`]), which then writes
    /// at once: the insert proves that nobody else can hold it, saving the compare-and-set
    /// of [`Store::tus_acquire`] and its read.
    pub leased: bool,
}

/// What [`Store::tus_create`] did.
pub struct Created {
    pub upload: TusUpload,
    /// The fencing token of our lease: `Some` when this call inserted the upload with
    /// [`NewUpload::leased`]; `None` when it was created without a lease, or existed
    /// already (its state is then as found, lease and all).
    pub token: Option<i64>,
}

/// A lease outlives its node by at most this: then any node may continue the upload.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// What [`Store::tus_acquire`] found.
pub enum Acquired {
    /// The lease is ours; `token` fences every later write.
    Leased {
        upload: Box<TusUpload>,
        token: i64,
    },
    /// Another request holds a live lease.
    Locked,
    NotFound,
    /// Every byte is in: no more writes (see [`TusUpload::complete`]).
    Complete(Box<TusUpload>),
    /// Past its expiry and unfinished.
    Expired,
}

impl Store {
    /// Creates the state of a new upload of `length` bytes; if `id` is taken already (a
    /// racing first attempt of the same PUT), that upload's state.
    pub async fn tus_create(&self, new: NewUpload) -> Result<Created> {
        let _timer = self.metrics.time("tus_create");
        let NewUpload {
            id,
            name,
            content_type,
            metadata,
            length,
            expires_in,
            owner,
            put,
            leased,
        } = new;
        // An empty upload has every byte from the start: nobody writes it.
        let leased = leased && length != 0;
        let upload = TusUpload {
            id,
            file_id: super::new_file_id(),
            name,
            content_type,
            metadata,
            length,
            offset: 0,
            tail: binary(Vec::new()),
            chunk_size: self.chunk_size as i32,
            created_at: DateTime::now(),
            expires_at: after(expires_in),
            lease_token: i64::from(leased),
            lease_until: leased.then(|| after(LEASE_TTL)),
            lease_node: leased.then(|| self.node_id.clone()),
            complete: length == 0,
            done: false,
            lease_holder: leased.then(ObjectId::new),
            owner,
            hash_state: None,
            hash_at: None,
            put,
        };
        match self.tus.insert_one(&upload).await {
            Ok(_) => Ok(Created {
                token: leased.then_some(upload.lease_token),
                upload,
            }),
            Err(e) if super::is_duplicate_key(&e) => match self.tus_get(&upload.id).await? {
                Some(upload) => Ok(Created {
                    upload,
                    token: None,
                }),
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tus_get(&self, id: &str) -> Result<Option<TusUpload>> {
        let _timer = self.metrics.time("tus_get");
        Ok(self.tus.find_one(doc! {"_id": id}).await?)
    }

    /// Takes the upload's lease for writing for `ttl`, unless a live one is held or the
    /// upload is complete or expired: all proven by the one compare-and-set that takes it.
    pub async fn tus_acquire(&self, id: &str, ttl: Duration) -> Result<Acquired> {
        let _timer = self.metrics.time("tus_acquire");
        self.acquire(id, ttl, false).await
    }

    /// [`Store::tus_acquire`] even from a live holder, for a request that knows the holder's
    /// request is over (a PUT's balancer saw its connection die): the fencing token makes
    /// whatever that holder still does harmless (it can no longer move the offset, publish,
    /// or keep a chunk past the offset against the next holder's clearing).
    pub async fn tus_take_over(&self, id: &str, ttl: Duration) -> Result<Acquired> {
        let _timer = self.metrics.time("tus_take_over");
        self.acquire(id, ttl, true).await
    }

    async fn acquire(&self, id: &str, ttl: Duration, take_over: bool) -> Result<Acquired> {
        let now = DateTime::now();
        let mut filter = if take_over {
            doc! {}
        } else {
            lease_free(now)
        };
        filter.extend(doc! {
            "_id": id, "done": false, "complete": {"$ne": true}, "expires_at": {"$gt": now},
        });
        Ok(match self.take_lease(id, filter, ttl).await? {
            Taken::Ours(upload, token) => Acquired::Leased { upload, token },
            Taken::NotFound => Acquired::NotFound,
            Taken::Not(upload) if upload.done || upload.complete => Acquired::Complete(upload),
            Taken::Not(upload) if upload.expires_at <= now => Acquired::Expired,
            Taken::Not(_) => Acquired::Locked,
        })
    }

    /// The compare-and-set behind every lease of an upload ([`lease::take`]).
    pub(super) async fn take_lease(
        &self,
        id: &str,
        filter: bson::Document,
        ttl: Duration,
    ) -> Result<Taken<TusUpload>> {
        lease::take(&self.tus, id, filter, ttl, &self.node_id, doc! {}).await
    }

    /// Removes chunks past the durable offset left by requests that held the lease before
    /// us and died before recording them: they would collide with ours. Only chunks of
    /// older tokens (or untagged ones, written before tokens were recorded) match, so a
    /// late call can never remove what a newer holder wrote, and never a chunk below the
    /// offset, which is part of the upload.
    pub async fn tus_clear_stale(&self, upload: &TusUpload, token: i64) -> Result<()> {
        let _timer = self.metrics.time("tus_clear_stale");
        let first_free = upload.offset / i64::from(upload.chunk_size);
        self.chunks
            .delete_many(doc! {
                "files_id": upload.file_id, "n": {"$gte": first_free},
                // older than ours, or written before leases tagged chunks; see lease_free
                // for why this is not an `$or` (a scan of every chunk of every file)
                "lease": {"$not": {"$gte": token}},
            })
            .await?;
        Ok(())
    }

    /// Extends our lease (and slides the expiry by `expires_in`, if given: a writer alive
    /// keeps its upload alive); false if it was taken over.
    pub async fn tus_renew(
        &self,
        id: &str,
        token: i64,
        ttl: Duration,
        expires_in: Option<Duration>,
    ) -> Result<bool> {
        let _timer = self.metrics.time("tus_renew");
        let mut set = doc! {"lease_until": after(ttl)};
        if let Some(expires_in) = expires_in {
            set.insert("expires_at", after(expires_in));
        }
        let renewed = self
            .tus
            .update_one(doc! {"_id": id, "lease_token": token}, doc! {"$set": set})
            .await?;
        Ok(renewed.matched_count == 1)
    }

    /// Records `offset` (with the bytes of the unfinished chunk) as durable, sliding the
    /// expiry; at `length` the upload becomes complete in the same step. `hash` is the
    /// whole-file digests' state after exactly `offset` bytes, when the caller has it.
    /// False if our lease was taken over.
    #[allow(clippy::too_many_arguments)]
    pub async fn tus_advance(
        &self,
        id: &str,
        token: i64,
        offset: i64,
        length: i64,
        tail: &[u8],
        hash: Option<Vec<u8>>,
        expires_in: Duration,
        ttl: Duration,
    ) -> Result<bool> {
        let _timer = self.metrics.time("tus_advance");
        let mut set = doc! {
            "offset": offset, "tail": binary(tail.to_vec()), "complete": offset == length,
            "expires_at": after(expires_in), "lease_until": after(ttl),
        };
        if let Some(hash) = hash {
            set.insert("hash_state", binary(hash));
            set.insert("hash_at", offset);
        }
        let moved = self
            .tus
            .update_one(
                doc! {"_id": id, "lease_token": token, "complete": {"$ne": true}},
                doc! {"$set": set},
            )
            .await?;
        Ok(moved.matched_count == 1)
    }

    /// Gives the lease up so the next PATCH need not wait for it to expire.
    pub async fn tus_release(&self, id: &str, token: i64) -> Result<()> {
        let _timer = self.metrics.time("tus_release");
        self.tus
            .update_one(
                doc! {"_id": id, "lease_token": token},
                doc! {"$set": {"lease_until": null, "lease_node": null}},
            )
            .await?;
        Ok(())
    }

    /// Removes the chunks this lease wrote from `first_n` on (a PATCH whose checksum
    /// failed: none of them was ever counted in the offset).
    pub async fn tus_discard_from(
        &self,
        upload: &TusUpload,
        first_n: i64,
        token: i64,
    ) -> Result<()> {
        let _timer = self.metrics.time("tus_discard");
        self.chunks
            .delete_many(doc! {"files_id": upload.file_id, "n": {"$gte": first_n}, "lease": token})
            .await?;
        Ok(())
    }
}

impl Store {
    /// Removes an unpublished upload we hold the lease of (a PUT whose digests or
    /// preconditions failed): its state, proving in the same step that the lease is still
    /// ours and the file unpublished, then its chunks.
    pub async fn tus_discard(&self, upload: &TusUpload, token: i64) -> Result<()> {
        let _timer = self.metrics.time("tus_discard");
        let gone = self
            .tus
            .delete_one(doc! {"_id": &upload.id, "lease_token": token, "done": false})
            .await?;
        if gone.deleted_count == 1 && !self.is_referenced(upload.file_id).await? {
            self.chunks
                .delete_many(doc! {"files_id": upload.file_id})
                .await?;
        }
        Ok(())
    }
}

impl lease::Leased for TusUpload {
    fn lease_holder(&self) -> Option<ObjectId> {
        self.lease_holder
    }
    fn lease_token(&self) -> i64 {
        self.lease_token
    }
}
