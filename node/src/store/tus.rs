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

use std::time::Duration;

use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{doc, Binary, DateTime};
use serde::{Deserialize, Serialize};

use super::{ChunkLayout, FileInfo, Finished, Store};
use crate::digest::{Digests, Hasher};
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
    /// Complete and published: the chunks belong to a file now, and HEAD keeps answering
    /// with the full offset until the state expires.
    #[serde(default)]
    pub done: bool,
}

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
}

fn after(d: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + d.as_millis() as i64)
}

impl Store {
    /// MD5 and SHA-256 of an upload's stored chunks, read back in windows.
    async fn digest_stored(&self, upload: &TusUpload, window: u64) -> Result<Digests> {
        let layout = ChunkLayout {
            file_id: upload.file_id,
            chunk_size: upload.chunk_size as u64,
            length: upload.length as u64,
        };
        let mut hasher = Hasher::default();
        let total = layout.length.div_ceil(layout.chunk_size);
        let mut n = 0;
        while n < total {
            let to = (n + window).min(total);
            for chunk in self.read_chunks(layout, n, to).await? {
                hasher.update(&chunk);
            }
            n = to;
        }
        Ok(hasher.finish())
    }

    /// Creates the state of a new upload of `length` bytes.
    pub async fn tus_create(
        &self,
        id: String,
        name: String,
        content_type: Option<String>,
        metadata: String,
        length: i64,
        expires_in: Duration,
    ) -> Result<TusUpload> {
        let upload = TusUpload {
            id,
            file_id: ObjectId::new(),
            name,
            content_type,
            metadata,
            length,
            offset: 0,
            tail: Binary {
                subtype: BinarySubtype::Generic,
                bytes: Vec::new(),
            },
            chunk_size: self.chunk_size as i32,
            created_at: DateTime::now(),
            expires_at: after(expires_in),
            lease_token: 0,
            lease_until: None,
            lease_node: None,
            done: false,
        };
        self.tus.insert_one(&upload).await?;
        Ok(upload)
    }

    pub async fn tus_get(&self, id: &str) -> Result<Option<TusUpload>> {
        Ok(self.tus.find_one(doc! {"_id": id}).await?)
    }

    /// Takes the upload's lease for `ttl` unless a live one is held.
    pub async fn tus_acquire(&self, id: &str, ttl: Duration) -> Result<Acquired> {
        let now = DateTime::now();
        let taken = self
            .tus
            .update_one(
                doc! {"_id": id, "$or": [{"lease_until": null}, {"lease_until": {"$lt": now}}]},
                doc! {
                    "$set": {"lease_until": after(ttl), "lease_node": &self.node_id},
                    "$inc": {"lease_token": 1},
                },
            )
            .await?;
        let Some(upload) = self.tus_get(id).await? else {
            return Ok(Acquired::NotFound);
        };
        if taken.matched_count == 0 {
            return Ok(Acquired::Locked);
        }
        // Chunks past the durable offset were written by a request that died before it
        // could record them; they would collide with ours.
        let first_free = upload.offset / i64::from(upload.chunk_size);
        self.chunks
            .delete_many(doc! {"files_id": upload.file_id, "n": {"$gte": first_free}})
            .await?;
        let token = upload.lease_token;
        Ok(Acquired::Leased {
            upload: Box::new(upload),
            token,
        })
    }

    /// Extends our lease; false if it was taken over.
    pub async fn tus_renew(&self, id: &str, token: i64, ttl: Duration) -> Result<bool> {
        let renewed = self
            .tus
            .update_one(
                doc! {"_id": id, "lease_token": token},
                doc! {"$set": {"lease_until": after(ttl)}},
            )
            .await?;
        Ok(renewed.matched_count == 1)
    }

    /// Records `offset` (with the bytes of the unfinished chunk) as durable, sliding the
    /// expiry; false if our lease was taken over.
    pub async fn tus_advance(
        &self,
        id: &str,
        token: i64,
        offset: i64,
        tail: &[u8],
        expires_in: Duration,
        ttl: Duration,
    ) -> Result<bool> {
        let tail = Binary {
            subtype: BinarySubtype::Generic,
            bytes: tail.to_vec(),
        };
        let moved = self
            .tus
            .update_one(
                doc! {"_id": id, "lease_token": token},
                doc! {"$set": {
                    "offset": offset, "tail": tail,
                    "expires_at": after(expires_in), "lease_until": after(ttl),
                }},
            )
            .await?;
        Ok(moved.matched_count == 1)
    }

    /// Gives the lease up so the next PATCH need not wait for it to expire.
    pub async fn tus_release(&self, id: &str, token: i64) -> Result<()> {
        self.tus
            .update_one(
                doc! {"_id": id, "lease_token": token},
                doc! {"$set": {"lease_until": null, "lease_node": null}},
            )
            .await?;
        Ok(())
    }

    /// Removes chunks from `first_n` on (bytes of a PATCH that is being discarded).
    pub async fn tus_discard_from(&self, upload: &TusUpload, first_n: i64) -> Result<()> {
        self.chunks
            .delete_many(doc! {"files_id": upload.file_id, "n": {"$gte": first_n}})
            .await?;
        Ok(())
    }

    /// All bytes are in: the file is published under its name like a PUT, and the upload
    /// state marked done. Without `digests` (the upload crossed nodes, so no one node saw
    /// every byte) they are computed from the stored chunks first.
    pub async fn tus_finish(
        &self,
        upload: &TusUpload,
        window: u64,
        digests: Option<Digests>,
    ) -> Result<FileInfo> {
        let digests = match digests {
            Some(d) => d,
            None => self.digest_stored(upload, window).await?,
        };
        let length = upload.length as u64;
        let content_type = upload
            .content_type
            .clone()
            .unwrap_or_else(|| crate::upload::guess_type(&upload.name));
        let info = self
            .publish(
                upload.file_id,
                upload.name.clone(),
                Finished {
                    length,
                    content_type,
                    md5: hex::encode(&digests.md5),
                    sha256: hex::encode(&digests.sha256),
                },
            )
            .await?;
        self.tus
            .update_one(
                doc! {"_id": &upload.id},
                doc! {"$set": {"done": true, "offset": upload.length,
                "tail": Binary { subtype: BinarySubtype::Generic, bytes: Vec::new() },
                "lease_until": null, "lease_node": null}},
            )
            .await?;
        Ok(info)
    }

    /// Terminates an upload: its state goes, and its chunks unless it completed (then they
    /// are a published file, removed by `DELETE /files/{name}`). False if there was none.
    pub async fn tus_terminate(&self, id: &str) -> Result<bool> {
        let Some(upload) = self.tus_get(id).await? else {
            return Ok(false);
        };
        self.tus.delete_one(doc! {"_id": id}).await?;
        if !upload.done {
            self.chunks
                .delete_many(doc! {"files_id": upload.file_id})
                .await?;
        }
        Ok(true)
    }

    /// Removes uploads past their expiry, with their chunks.
    pub(super) async fn sweep_expired_tus(&self) -> Result<u64> {
        use futures::TryStreamExt;
        let expired: Vec<TusUpload> = self
            .tus
            .find(doc! {"expires_at": {"$lt": DateTime::now()}})
            .limit(100)
            .await?
            .try_collect()
            .await?;
        let mut removed = 0;
        for upload in expired {
            let gone = self
                .tus
                .delete_one(doc! {"_id": &upload.id, "expires_at": {"$lt": DateTime::now()}})
                .await?;
            if gone.deleted_count == 1 && !upload.done {
                self.chunks
                    .delete_many(doc! {"files_id": upload.file_id})
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
