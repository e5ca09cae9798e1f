//! Video jobs: one document per published video in `<bucket>.media`, keyed by the source
//! revision's file id, recorded by [`Store::publish`] before the name swap that makes the
//! video visible (so no crash can publish a video without its job), and run by any node's
//! workers under a lease with a fencing token ([`super::lease`], as for tus uploads).
//!
//! A job moves `queued → running → done`, or back to `queued` (a retry, after a backoff)
//! or to `failed`; replacing or deleting its source makes it `cancelled`. `due_at` is set
//! exactly while a job may be claimed: when a queued job's backoff ends, or when a running
//! job's lease runs out (its worker died), so one indexed range finds every claimable job.
//!
//! Outputs are ordinary files published under the source's name (`NAME.media/...`). Each
//! output's name document records the job it came from ([`MediaOutput`]: source, the
//! job's generation, the lease's token), and an output is only ever replaced by one of the
//! same or a later generation and token ([`OutputGuard`], checked in the name's
//! compare-and-set): a worker that lost its lease, or the job of a replaced revision, can
//! never overwrite what a newer one published. The outputs of a replaced or deleted
//! revision are removed with it once the grace period is over ([`Store::media_forget`]).

use std::time::Duration;

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};

use super::lease::{self, after, Taken};
use super::{is_duplicate_key, FileInfo, Guard, Store};
use crate::error::Result;

/// A job's lease outlives its worker by at most this; workers renew it every few seconds.
pub const MEDIA_LEASE_TTL: Duration = Duration::from_secs(10);

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// What `ffprobe` says of a source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    /// Seconds.
    pub duration_s: f64,
    /// Pixels of the first video stream.
    pub width: i64,
    pub height: i64,
    pub video_codec: String,
    /// `None`: the source has no audio.
    pub audio_codec: Option<String>,
    /// Bits per second of the whole container, when ffprobe knows it.
    pub bit_rate: Option<i64>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
}

/// One HLS rendition a job made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    pub width: i64,
    pub height: i64,
    /// Peak bits per second, as the master playlist says (`BANDWIDTH`).
    pub bandwidth: i64,
    /// Its media playlist's name.
    pub playlist: String,
}

/// The names a finished job published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    pub poster: String,
    pub master: String,
    pub renditions: Vec<Rendition>,
}

/// The job an output file came from, recorded in its name document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaOutput {
    /// The source revision's file id (the job's id).
    pub source: ObjectId,
    /// Later jobs of the same name have larger generations.
    pub generation: i64,
    /// The fencing token of the lease it was published under.
    pub token: i64,
}

/// The state document of one video job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaJob {
    /// The source revision's file id.
    #[serde(rename = "_id")]
    pub file_id: ObjectId,
    /// The source's name.
    pub name: String,
    pub generation: i64,
    pub state: JobState,
    /// Times it was claimed.
    pub attempts: i64,
    /// When it may be claimed (see the module doc); unset once it is over.
    #[serde(default)]
    pub due_at: Option<DateTime>,
    /// 0 to 100.
    #[serde(default)]
    pub progress: i64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub facts: Option<MediaFacts>,
    #[serde(default)]
    pub outputs: Option<Outputs>,
    pub created_at: DateTime,
    #[serde(default)]
    pub lease_token: i64,
    #[serde(default)]
    pub lease_until: Option<DateTime>,
    #[serde(default)]
    pub lease_node: Option<String>,
    #[serde(default)]
    pub lease_holder: Option<ObjectId>,
}

impl lease::Leased for MediaJob {
    fn lease_holder(&self) -> Option<ObjectId> {
        self.lease_holder
    }
    fn lease_token(&self) -> i64 {
        self.lease_token
    }
}

/// What [`Store::media_source`] found.
pub enum SourceState {
    Current(Box<FileInfo>),
    Pending,
    Gone,
}

/// Whether a Content-Type is a video's (`video/*`).
pub fn is_video(content_type: &str) -> bool {
    content_type
        .get(..6)
        .is_some_and(|t| t.eq_ignore_ascii_case("video/"))
}

/// Lets an output replace only outputs of the same or an older job, lease and token
/// (and any file that is not a job's output).
pub struct OutputGuard(pub MediaOutput);

impl Guard for OutputGuard {
    fn allows(&self, current: Option<&FileInfo>) -> bool {
        match current.and_then(|c| c.media.as_ref()) {
            None => true,
            Some(m) => (m.generation, m.token) <= (self.0.generation, self.0.token),
        }
    }
}

/// The state after which a job is over: nothing claims it again.
fn over(state: JobState, error: Option<String>) -> Document {
    let mut set = doc! {
        "state": bson::to_bson(&state).unwrap_or_default(),
        "lease_until": null, "lease_node": null,
    };
    if let Some(error) = error {
        set.insert("error", error);
    }
    doc! {"$set": set, "$unset": {"due_at": ""}}
}

impl Store {
    /// Records a job for the video `file_id` about to be published as `name`, unless it
    /// has one. Idempotent (a retried publication records no second job).
    pub(super) async fn media_enqueue(&self, file_id: ObjectId, name: &str) -> Result<()> {
        let _timer = self.metrics.time("media_enqueue");
        if self.media_job(file_id).await?.is_some() {
            return Ok(());
        }
        // A per-name counter that survives deletes (a name's `version` starts over).
        let counter = self
            .media_generations
            .find_one_and_update(doc! {"_id": name}, doc! {"$inc": {"n": 1_i64}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await?;
        let generation = counter.and_then(|c| c.get_i64("n").ok()).unwrap_or(1);
        let now = DateTime::now();
        let job = MediaJob {
            file_id,
            name: name.to_string(),
            generation,
            state: JobState::Queued,
            attempts: 0,
            due_at: Some(now),
            progress: 0,
            error: None,
            facts: None,
            outputs: None,
            created_at: now,
            lease_token: 0,
            lease_until: None,
            lease_node: None,
            lease_holder: None,
        };
        match self.media.insert_one(&job).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The job of source revision `file_id`.
    pub async fn media_job(&self, file_id: ObjectId) -> Result<Option<MediaJob>> {
        let _timer = self.metrics.time("media_job");
        Ok(self.media.find_one(doc! {"_id": file_id}).await?)
    }

    /// The job of `source` (the current revision of its name), recorded now if it has
    /// none (a video published before jobs existed) and queued again if it was cancelled
    /// while its source stayed current (a cancellation whose replacement lost its race).
    pub async fn media_job_of(&self, source: &FileInfo) -> Result<Option<MediaJob>> {
        self.media_enqueue(source.file_id, &source.name).await?;
        let requeued = self
            .media
            .update_one(
                doc! {"_id": source.file_id, "state": "cancelled"},
                doc! {"$set": {"state": "queued", "due_at": DateTime::now(), "attempts": 0_i64}},
            )
            .await?;
        if requeued.modified_count > 0 {
            tracing::info!(name = %source.name, "cancelled job of a current video queued again");
        }
        self.media_job(source.file_id).await
    }

    /// Claims a due job for this node, with a lease of `ttl`: `(job, token)`, or `None`
    /// when none is due. Its `attempts` already counts this one.
    pub async fn media_claim(&self, ttl: Duration) -> Result<Option<(MediaJob, i64)>> {
        let _timer = self.metrics.time("media_claim");
        let now = DateTime::now();
        // Both bounds: the embedded database scans for a range without a lower one.
        let due = doc! {"$gte": DateTime::from_millis(0), "$lte": now};
        let candidates: Vec<MediaJob> = self
            .media
            .find(doc! {"due_at": due.clone()})
            .sort(doc! {"due_at": 1})
            .limit(4)
            .await?
            .try_collect()
            .await?;
        for job in candidates {
            let filter = doc! {"_id": job.file_id, "due_at": due.clone(), "attempts": job.attempts};
            let set = doc! {
                "state": "running", "due_at": after(ttl), "attempts": job.attempts + 1,
            };
            let taken =
                lease::take(&self.media, job.file_id, filter, ttl, &self.node_id, set).await?;
            if let Taken::Ours(job, token) = taken {
                return Ok(Some((*job, token)));
            }
        }
        Ok(None)
    }

    /// Extends our lease and records `progress` (and `facts`, once known); false if the
    /// lease was taken over or the job cancelled: stop, publish nothing.
    pub async fn media_renew(
        &self,
        file_id: ObjectId,
        token: i64,
        ttl: Duration,
        progress: i64,
        facts: Option<&MediaFacts>,
    ) -> Result<bool> {
        let _timer = self.metrics.time("media_renew");
        let until = after(ttl);
        let mut set = doc! {"lease_until": until, "due_at": until, "progress": progress};
        if let Some(facts) = facts {
            set.insert("facts", bson::to_bson(facts).unwrap_or_default());
        }
        let renewed = self
            .media
            .update_one(
                doc! {"_id": file_id, "lease_token": token, "state": "running"},
                doc! {"$set": set},
            )
            .await?;
        Ok(renewed.matched_count == 1)
    }

    /// Marks our job done with its outputs, proving in the same update that the lease is
    /// still ours and the job not cancelled. False if not.
    pub async fn media_done(
        &self,
        file_id: ObjectId,
        token: i64,
        facts: &MediaFacts,
        outputs: &Outputs,
    ) -> Result<bool> {
        let _timer = self.metrics.time("media_done");
        let mut update = over(JobState::Done, None);
        if let Ok(set) = update.get_document_mut("$set") {
            set.insert("progress", 100_i64);
            set.insert("facts", bson::to_bson(facts).unwrap_or_default());
            set.insert("outputs", bson::to_bson(outputs).unwrap_or_default());
            set.insert("error", bson::Bson::Null);
        }
        let done = self
            .media
            .update_one(
                doc! {"_id": file_id, "lease_token": token, "state": "running"},
                update,
            )
            .await?;
        Ok(done.matched_count == 1)
    }

    /// Ends our attempt with `error`: queued again at `retry_at`, or failed for good
    /// (`None`). Conditional on our lease like [`Store::media_done`].
    pub async fn media_attempt_failed(
        &self,
        file_id: ObjectId,
        token: i64,
        error: &str,
        retry_at: Option<DateTime>,
    ) -> Result<bool> {
        let _timer = self.metrics.time("media_failed");
        let update = match retry_at {
            Some(at) => doc! {"$set": {
                "state": "queued", "due_at": at, "error": error, "progress": 0_i64,
                "lease_until": null, "lease_node": null,
            }},
            None => over(JobState::Failed, Some(error.to_string())),
        };
        let ended = self
            .media
            .update_one(
                doc! {"_id": file_id, "lease_token": token, "state": "running"},
                update,
            )
            .await?;
        Ok(ended.matched_count == 1)
    }

    /// Gives our claim back without counting it as an attempt, to be claimed again at
    /// `at` (the source's publication is still under way).
    pub async fn media_release(&self, file_id: ObjectId, token: i64, at: DateTime) -> Result<()> {
        self.media
            .update_one(
                doc! {"_id": file_id, "lease_token": token, "state": "running"},
                doc! {
                    "$set": {"state": "queued", "due_at": at, "lease_until": null, "lease_node": null},
                    "$inc": {"attempts": -1_i64},
                },
            )
            .await?;
        Ok(())
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

    /// Cancels the job of a revision that is being replaced or deleted (its worker sees
    /// it at its next renewal and stops). Jobs already over keep their state.
    pub async fn media_cancel(&self, file_id: ObjectId) -> Result<()> {
        self.media
            .update_one(
                doc! {"_id": file_id, "state": {"$in": ["queued", "running"]}},
                over(JobState::Cancelled, None),
            )
            .await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn output(generation: i64, token: i64) -> FileInfo {
        FileInfo {
            name: "a.mp4.media/master.m3u8".into(),
            key: "a.mp4.media/master.m3u8".into(),
            file_id: ObjectId::new(),
            length: 1,
            chunk_size: 1,
            content_type: "application/vnd.apple.mpegurl".into(),
            md5: String::new(),
            sha256: String::new(),
            uploaded_at: DateTime::now(),
            version: 1,
            media: Some(MediaOutput {
                source: ObjectId::new(),
                generation,
                token,
            }),
        }
    }

    #[test]
    fn an_output_never_replaces_a_newer_jobs_or_leases() {
        let guard = |generation, token| {
            OutputGuard(MediaOutput {
                source: ObjectId::new(),
                generation,
                token,
            })
        };
        let current = output(3, 5);
        // A retry under the same lease, or a later lease, or a later upload: allowed.
        assert!(guard(3, 5).allows(Some(&current)));
        assert!(guard(3, 6).allows(Some(&current)));
        assert!(guard(4, 1).allows(Some(&current)));
        // A worker whose lease was taken over, or the job of a replaced revision: refused.
        assert!(!guard(3, 4).allows(Some(&current)));
        assert!(!guard(2, 9).allows(Some(&current)));
        // Nothing there, or an ordinary file: allowed.
        assert!(guard(1, 1).allows(None));
        let plain = FileInfo {
            media: None,
            ..output(0, 0)
        };
        assert!(guard(1, 1).allows(Some(&plain)));
    }

    #[test]
    fn videos_are_known_by_their_type() {
        assert!(is_video("video/mp4"));
        assert!(is_video("Video/QuickTime"));
        assert!(!is_video("video"));
        assert!(!is_video("image/jpeg"));
        assert!(!is_video("application/vnd.apple.mpegurl"));
    }
}
