//! The name → revision pointer (`<bucket>.names`): lookup, publication and
//! deletion, each swap a compare-and-set on the pointer's `version`.
//!
//! A write's preconditions (a [`Guard`]) are evaluated against the revision read in the same
//! iteration of the compare-and-set loop whose swap is conditional on that revision's
//! version, so the check and the swap are one atomic step: if anyone moved the pointer in
//! between, the swap fails and the guard is asked again about the new revision.

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document};

use super::{is_duplicate_key, is_video, FileInfo, Finished, Store};
use crate::error::{NodeError, Result};

/// A write's precondition: given the revision the name points at now (None: nothing),
/// may the write go on? False becomes [`NodeError::PreconditionFailed`] (412).
pub trait Guard: Sync {
    fn allows(&self, current: Option<&FileInfo>) -> bool;
}

impl Store {
    /// The name's current revision, without an inline file's content (a GET's read with
    /// it is [`Store::lookup_whole`]).
    pub async fn lookup(&self, name: &str) -> Result<Option<FileInfo>> {
        let _timer = self.metrics.time("lookup");
        Ok(self
            .names
            .find_one(doc! {"_id": name})
            .projection(doc! {"inline": 0})
            .await?)
    }

    /// The revision `file_id` was published as under `name`: the name's document while
    /// it still points there, else rebuilt from the files document (the name has moved
    /// on since); `None` if it was never published.
    pub async fn revision(&self, name: &str, file_id: ObjectId) -> Result<Option<FileInfo>> {
        let _timer = self.metrics.time("revision");
        if let Some(current) = self.lookup(name).await?.filter(|f| f.file_id == file_id) {
            return Ok(Some(current));
        }
        let Some(file) = self.files.find_one(doc! {"_id": file_id}).await? else {
            return Ok(None);
        };
        let meta = file.get_document("metadata").ok();
        let text = |key: &str| {
            meta.and_then(|m| m.get_str(key).ok())
                .unwrap_or_default()
                .to_string()
        };
        Ok(Some(FileInfo {
            name: name.to_string(),
            key: name.to_string(),
            file_id,
            length: file.get_i64("length").unwrap_or_default(),
            chunk_size: file.get_i32("chunkSize").unwrap_or_default(),
            content_type: text("contentType"),
            md5: text("md5"),
            sha256: text("sha256"),
            uploaded_at: file
                .get_datetime("uploadDate")
                .copied()
                .unwrap_or(DateTime::MIN),
            version: 0,
            media: None,
            small: None,
            inline: None,
        }))
    }

    /// Removes a name if `guard` allows; its content goes after the grace period.
    /// False if there was none: then preconditions do not apply (RFC 9110 §13.2.1, the
    /// answer would be 404 without them).
    pub async fn delete(&self, name: &str, guard: Option<&dyn Guard>) -> Result<bool> {
        let _timer = self.metrics.time("delete");
        loop {
            let Some(current) = self.lookup(name).await? else {
                return Ok(false);
            };
            if let Some(guard) = guard {
                if !guard.allows(Some(&current)) {
                    return Err(NodeError::PreconditionFailed(name.to_string()));
                }
            }
            self.retire_revision(&current).await?;
            let gone = self
                .names
                .delete_one(doc! {"_id": name, "version": current.version})
                .await?;
            if gone.deleted_count == 1 {
                return Ok(true);
            }
        }
    }

    /// Makes complete content visible under `name`: the GridFS files document, then the
    /// name swap. Until this returns, readers see the previous revision (or nothing).
    ///
    /// Idempotent, so a resumable upload whose finisher died can be published again by
    /// anyone: a files document already there means an earlier attempt got this far, and a
    /// revision already retired was published once and replaced or deleted since; it is
    /// never brought back.
    pub(super) async fn publish(
        &self,
        file_id: ObjectId,
        name: String,
        done: Finished,
        guard: Option<&dyn Guard>,
    ) -> Result<FileInfo> {
        let _timer = self.metrics.time("publish");
        let now = DateTime::now();
        let inserted = self
            .files
            .insert_one(doc! {
                "_id": file_id,
                "length": done.length as i64,
                "chunkSize": self.chunk_size as i32,
                "uploadDate": now,
                "filename": &name,
                "metadata": {
                    "contentType": &done.content_type,
                    "md5": &done.md5,
                    "sha256": &done.sha256,
                    "node": &self.node_id,
                },
            })
            .await;
        let first_attempt = match inserted {
            Ok(_) => true,
            Err(e) if is_duplicate_key(&e) => false,
            Err(e) => return Err(e.into()),
        };
        // Before the swap: once the video is visible, its job exists.
        if done.media.is_none() && is_video(&done.content_type) {
            self.media_enqueue(file_id, &name).await?;
        }
        // Only the whole file, and only a small one (see [`Finished::inline`]).
        let inline = done
            .inline
            .filter(|b| super::is_inline_content(b.len(), done.length));
        let mut info = FileInfo {
            key: name.clone(),
            name,
            file_id,
            length: done.length as i64,
            chunk_size: self.chunk_size as i32,
            content_type: done.content_type,
            md5: done.md5,
            sha256: done.sha256,
            uploaded_at: now,
            version: 0,
            media: done.media,
            small: (inline.is_none()
                && done.length <= self.chunk_size as u64 * super::WHOLE_CHUNKS)
                .then_some(file_id),
            inline: inline.map(|b| super::binary(b.to_vec())),
        };
        self.swap_name(&mut info, first_attempt, guard).await?;
        Ok(info)
    }

    /// Points `info.name` at `info.file_id` if `guard` allows, whatever it pointed at.
    async fn swap_name(
        &self,
        info: &mut FileInfo,
        first_attempt: bool,
        guard: Option<&dyn Guard>,
    ) -> Result<()> {
        loop {
            let current = self.lookup(&info.name).await?;
            if let Some(current) = current.as_ref().filter(|c| c.file_id == info.file_id) {
                *info = current.clone();
                return Ok(());
            }
            // Read after the name: a revision is retired before any swap takes the name
            // from it, so if it was ever current we see that here.
            if !first_attempt && self.is_retired(info.file_id).await? {
                return Ok(());
            }
            if let Some(guard) = guard {
                if !guard.allows(current.as_ref()) {
                    return Err(NodeError::PreconditionFailed(info.name.clone()));
                }
            }
            match current {
                None => {
                    info.version = 1;
                    match self.names.insert_one(&*info).await {
                        Ok(_) => return Ok(()),
                        Err(e) if is_duplicate_key(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(current) => {
                    self.retire_revision(&current).await?;
                    info.version = current.version + 1;
                    let swapped = self
                        .names
                        .replace_one(doc! {"_id": &info.name, "version": current.version}, &*info)
                        .await?;
                    if swapped.matched_count == 1 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Marks a revision for deletion after the grace period. Done *before* the name stops
    /// pointing at it, so a crash in between leaves a mark the sweep undoes rather than a
    /// revision nobody will ever delete.
    pub(super) async fn retire(&self, file_id: ObjectId) -> Result<()> {
        self.files
            .update_one(
                doc! {"_id": file_id},
                doc! {"$set": {"metadata.retired_at": DateTime::now()}},
            )
            .await?;
        Ok(())
    }

    /// [`Store::retire`], and the cancellation of the revision's video job if it has one.
    async fn retire_revision(&self, current: &FileInfo) -> Result<()> {
        self.retire(current.file_id).await?;
        if current.media.is_none() && is_video(&current.content_type) {
            self.media_cancel(current.file_id).await?;
        }
        Ok(())
    }

    async fn is_retired(&self, file_id: ObjectId) -> Result<bool> {
        let filter = doc! {"_id": file_id, "metadata.retired_at": {"$exists": true}};
        Ok(self
            .files
            .find_one(filter)
            .projection(doc! {"_id": 1})
            .await?
            .is_some())
    }

    pub(super) async fn is_referenced(&self, file_id: ObjectId) -> Result<bool> {
        Ok(self
            .names
            .clone_with_type::<Document>()
            .find_one(doc! {"file_id": file_id})
            .projection(doc! {"_id": 1})
            .await?
            .is_some())
    }

    /// Gives names written before the `name` field existed their copy of it.
    pub(super) async fn backfill_name_keys(&self) -> Result<()> {
        let pipeline: Vec<Document> = vec![doc! {"$set": {"name": "$_id"}}];
        self.names
            .update_many(doc! {"name": {"$exists": false}}, pipeline)
            .await?;
        Ok(())
    }
}
