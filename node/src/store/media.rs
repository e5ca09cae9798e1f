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

/// Matches the job while it runs under our lease: the proof every change of a running job
/// makes in the same update.
fn ours(file_id: ObjectId, token: i64) -> Document {
    doc! {"_id": file_id, "lease_token": token, "state": "running"}
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
            .update_one(ours(file_id, token), doc! {"$set": set})
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
        let done = self.media.update_one(ours(file_id, token), update).await?;
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
        let ended = self.media.update_one(ours(file_id, token), update).await?;
        Ok(ended.matched_count == 1)
    }

    /// Gives our claim back without counting it as an attempt, to be claimed again at
    /// `at` (the source's publication is still under way).
    pub async fn media_release(&self, file_id: ObjectId, token: i64, at: DateTime) -> Result<()> {
        self.media
            .update_one(
                ours(file_id, token),
                doc! {
                    "$set": {"state": "queued", "due_at": at, "lease_until": null, "lease_node": null},
                    "$inc": {"attempts": -1_i64},
                },
            )
            .await?;
        Ok(())
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
}

#[cfg(test)]
#[path = "media_tests.rs"]
mod tests;
