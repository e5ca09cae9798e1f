//! The upkeep around video jobs: where a job's source stands, jobs for videos published
//! without one, and the outputs of a video gone for good.

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document};
use futures::TryStreamExt;

use super::media::{JobState, MediaJob};
use super::{FileInfo, Store};
use crate::error::Result;

/// What [`Store::media_source`] found.
pub enum SourceState {
    Current(Box<FileInfo>),
    Pending,
    Gone,
}

impl Store {
    /// The job of `source` (the current revision of its name), recorded now if it has
    /// none (a video published before jobs existed) and queued again if it was cancelled
    /// while its source stayed current (a cancellation whose replacement lost its race).
    ///
    /// Reads only, unless the job needs one of those repairs: clients poll this.
    pub async fn media_job_of(&self, source: &FileInfo) -> Result<Option<MediaJob>> {
        match self.media_job(source.file_id).await? {
            None => self.media_enqueue(source.file_id, &source.name).await?,
            Some(job) if job.state == JobState::Cancelled => {
                // Harmless if the name is moving on right now: a worker that claims the
                // job finds its source gone and cancels it again.
                self.media
                    .update_one(
                        doc! {"_id": source.file_id, "state": "cancelled"},
                        doc! {"$set": {"state": "queued", "due_at": DateTime::now(), "attempts": 0_i64}},
                    )
                    .await?;
                tracing::info!(name = %source.name, "cancelled job of a current video queued again");
            }
            job => return Ok(job),
        }
        self.media_job(source.file_id).await
    }

    /// Where the job's source stands: still current under its name, not yet published
    /// (its upload is committing), or gone (replaced, deleted, or never published).
    pub async fn media_source(&self, job: &MediaJob) -> Result<SourceState> {
        let current = self.lookup(&job.name).await?;
        if let Some(current) = current.filter(|c| c.file_id == job.file_id) {
            return Ok(SourceState::Current(Box::new(current)));
        }
        // `publish` writes the files document before it records the job, and `retire`
        // marks a revision before its name moves away.
        let file = self
            .files
            .find_one(doc! {"_id": job.file_id})
            .projection(doc! {"metadata.retired_at": 1})
            .await?;
        let retired = |f: &Document| {
            f.get_document("metadata")
                .is_ok_and(|m| m.contains_key("retired_at"))
        };
        Ok(match file {
            Some(f) if !retired(&f) => SourceState::Pending,
            _ => SourceState::Gone,
        })
    }

    /// Removes what the job of a revision gone for good left: the names of its outputs
    /// (each removal conditional on the name still being that output, so a newer job's
    /// output under the same name stays; their content goes with the next sweeps) and
    /// the job itself. Called by the sweep before it deletes the revision.
    pub(super) async fn media_forget(&self, file_id: ObjectId) -> Result<u64> {
        let mut removed = 0;
        loop {
            let outputs: Vec<FileInfo> = self
                .names
                .find(doc! {"media.source": file_id})
                .projection(doc! {"inline": 0})
                .limit(500)
                .await?
                .try_collect()
                .await?;
            if outputs.is_empty() {
                break;
            }
            for output in outputs {
                self.retire(output.file_id).await?;
                let gone = self
                    .names
                    .delete_one(doc! {"_id": &output.name, "version": output.version})
                    .await?;
                removed += gone.deleted_count;
            }
        }
        self.media.delete_one(doc! {"_id": file_id}).await?;
        Ok(removed)
    }

    /// Records jobs for published videos that have none (published before this node
    /// version, or by one with jobs off); at most `limit` per call. How many it recorded.
    pub async fn media_backfill(&self, limit: i64) -> Result<u64> {
        let _timer = self.metrics.time("media_backfill");
        // `$lookup` with localField/foreignField: uses the jobs' `_id` index on both
        // database servers (the `$expr` pipeline form scans).
        let pipeline = vec![
            doc! {"$match": {
                "content_type": {"$gte": "video/", "$lt": "video0"},
                "media": {"$exists": false},
            }},
            doc! {"$lookup": {
                "from": self.media.name(), "localField": "file_id",
                "foreignField": "_id", "as": "job",
            }},
            doc! {"$match": {"job": {"$size": 0}}},
            doc! {"$project": {"file_id": 1}},
            doc! {"$limit": limit},
        ];
        let missing: Vec<Document> = self.names.aggregate(pipeline).await?.try_collect().await?;
        let mut recorded = 0;
        for name in missing {
            if let (Ok(name_), Ok(file_id)) = (name.get_str("_id"), name.get_object_id("file_id")) {
                self.media_enqueue(file_id, name_).await?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}
