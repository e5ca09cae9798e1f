//! One worker: claims a due job, runs it under its lease, and records how it ended.
//!
//! An attempt probes the source, makes the poster and the renditions into a scratch
//! directory, stores and publishes the outputs ([`super::outputs`]) and marks the job
//! done. Meanwhile a
//! keeper renews the lease every few seconds; when a renewal finds the lease gone (taken
//! over, or the job cancelled) the attempt is dropped on the spot, which kills ffmpeg,
//! removes the unpublished outputs and the scratch directory.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::DateTime;

use super::ffmpeg::{self, ToolError};
use super::scratch::Scratch;
use super::Media;
use super::{args, probe};
use crate::error::NodeError;
use crate::store::{MediaFacts, MediaJob, SourceState, MEDIA_LEASE_TTL};

/// How often an idle worker looks for a due job.
const POLL: Duration = Duration::from_secs(1);
/// How often a running job's lease is renewed (its TTL is [`MEDIA_LEASE_TTL`]).
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// A source still being published is looked at again after this.
const PENDING_AGAIN: Duration = Duration::from_secs(2);
/// A job whose source has not been published this long after the job was recorded is
/// cancelled: publication takes milliseconds, and an upload that failed after recording
/// the job removes it (this catches one whose removal was cut short).
const PENDING_AT_MOST: Duration = Duration::from_secs(3600);

/// Why an attempt stopped short.
#[derive(Debug)]
enum Stop {
    /// Someone else holds the job now, or it was cancelled: leave it alone.
    LeaseLost(String),
    /// The source was replaced or deleted before the job began.
    SourceGone,
    /// The source's publication is still under way.
    Pending,
    /// The input cannot be processed; no retry.
    Rejected(String),
    /// Anything else; retried after a backoff while attempts remain.
    Failed(String),
}

impl From<ToolError> for Stop {
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::Rejected(why) => Stop::Rejected(why),
            ToolError::Failed(why) => Stop::Failed(why),
        }
    }
}

impl From<NodeError> for Stop {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::PreconditionFailed(name) => {
                Stop::LeaseLost(format!("{name} holds a newer job's output"))
            }
            // An output name the source's name makes too long or invalid.
            NodeError::BadRequest(why) => Stop::Rejected(why),
            e => Stop::Failed(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Failed(format!("scratch directory: {e}"))
    }
}

/// Claims and runs jobs until the process ends.
pub async fn work(media: Arc<Media>) {
    loop {
        match media.store.media_claim(MEDIA_LEASE_TTL).await {
            Ok(Some((job, token))) => media.run(job, token).await,
            Ok(None) => tokio::time::sleep(POLL).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for video jobs");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

impl Media {
    async fn run(&self, job: MediaJob, token: i64) {
        let started = Instant::now();
        let _running = self.metrics.running();
        let (id, max) = (job.file_id, i64::from(self.cfg.max_attempts));
        let result = if job.attempts > max {
            let last = job.error.as_deref().unwrap_or("its worker stopped");
            Err(Stop::Rejected(format!(
                "gave up after {max} attempts; the last: {last}"
            )))
        } else {
            tracing::info!(name = %job.name, attempt = job.attempts, "video job started");
            self.attempt(&job, token).await
        };
        let store = &self.store;
        let outcome = match &result {
            Ok(_) => "done",
            Err(Stop::LeaseLost(_)) => "left",
            Err(Stop::SourceGone) => "cancelled",
            Err(Stop::Pending) => "released",
            Err(Stop::Rejected(_)) => "failed",
            Err(Stop::Failed(_)) if job.attempts < max => "retried",
            Err(Stop::Failed(_)) => "failed",
        };
        self.metrics.ended(outcome);
        let recorded = match result {
            Ok(facts) => {
                self.metrics.processed(facts.duration_s);
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    name = %job.name, seconds = secs,
                    speed = facts.duration_s / secs.max(0.001),
                    "video job done (speed: seconds of video per second)"
                );
                Ok(())
            }
            Err(Stop::LeaseLost(why)) => {
                tracing::info!(name = %job.name, why, "video job left to its new holder");
                Ok(())
            }
            Err(Stop::SourceGone) => store.media_cancel(id).await,
            Err(Stop::Pending) => {
                let at = DateTime::from_system_time(std::time::SystemTime::now() + PENDING_AGAIN);
                store.media_release(id, token, at).await
            }
            Err(Stop::Rejected(why)) => {
                tracing::warn!(name = %job.name, error = why, "video job failed");
                store
                    .media_attempt_failed(id, token, &why, None)
                    .await
                    .map(drop)
            }
            Err(Stop::Failed(why)) => {
                let retry_at = (job.attempts < max).then(|| {
                    let backoff = self.cfg.retry_backoff_secs << (job.attempts - 1).clamp(0, 10);
                    DateTime::from_system_time(
                        std::time::SystemTime::now() + Duration::from_secs(backoff),
                    )
                });
                tracing::warn!(
                    name = %job.name, attempt = job.attempts, error = why,
                    retry = retry_at.is_some(), "video job attempt failed"
                );
                store
                    .media_attempt_failed(id, token, &why, retry_at)
                    .await
                    .map(drop)
            }
        };
        if let Err(e) = recorded {
            // The lease runs out and the job is claimed again.
            tracing::warn!(name = %job.name, error = %e, "cannot record how a video job ended");
        }
    }

    /// One attempt, raced against its lease keeper.
    async fn attempt(&self, job: &MediaJob, token: i64) -> Result<MediaFacts, Stop> {
        match self.store.media_source(job).await.map_err(Stop::from)? {
            SourceState::Current(_) => {}
            SourceState::Pending => {
                let waited = DateTime::now().timestamp_millis() - job.created_at.timestamp_millis();
                if waited > PENDING_AT_MOST.as_millis() as i64 {
                    return Err(Stop::SourceGone);
                }
                return Err(Stop::Pending);
            }
            SourceState::Gone => return Err(Stop::SourceGone),
        }
        let scratch = Scratch::create(&self.scratch, &format!("{}-{token}", job.file_id))?;
        let progress = AtomicI64::new(0);
        tokio::select! {
            done = self.process(job, token, &scratch, &progress) => done,
            stop = self.keep(job, token, &scratch, &progress) => Err(stop),
        }
    }

    /// Renews the lease with the progress until it is lost or the scratch directory
    /// outgrows its limit; never returns otherwise.
    async fn keep(
        &self,
        job: &MediaJob,
        token: i64,
        scratch: &Scratch,
        progress: &AtomicI64,
    ) -> Stop {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            let size = scratch.size();
            if size > self.cfg.max_scratch_bytes {
                return Stop::Rejected(format!(
                    "the outputs passed media.max_scratch_bytes ({size} > {})",
                    self.cfg.max_scratch_bytes
                ));
            }
            let now = progress.load(Ordering::Relaxed);
            match self
                .store
                .media_renew(job.file_id, token, MEDIA_LEASE_TTL, now, None)
                .await
            {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return Stop::LeaseLost("taken over or cancelled".into()),
                // Keep going while the lease may still be ours.
                Err(e) if renewed.elapsed() + RENEW_EVERY < MEDIA_LEASE_TTL => {
                    tracing::warn!(name = %job.name, error = %e, "cannot renew a video job's lease; retrying");
                }
                Err(e) => return Stop::LeaseLost(format!("lease not renewed in time: {e}")),
            }
        }
    }

    async fn process(
        &self,
        job: &MediaJob,
        token: i64,
        scratch: &Scratch,
        progress: &AtomicI64,
    ) -> Result<MediaFacts, Stop> {
        let (cfg, dir) = (&self.cfg, scratch.path());
        let url = self.source.url(job.file_id);
        let hide = |e: ToolError| e.hiding(&url);
        let probed = ffmpeg::run(
            cfg,
            &cfg.ffprobe,
            &args::probe_args(&url),
            dir,
            None,
            ToolError::Rejected,
        )
        .await
        .map_err(hide)?;
        let facts = probe::parse_probe(&probed)?;
        if !self
            .store
            .media_renew(job.file_id, token, MEDIA_LEASE_TTL, 2, Some(&facts))
            .await?
        {
            return Err(Stop::LeaseLost("taken over or cancelled".into()));
        }
        let plan = args::plan(cfg, &facts);
        let poster = args::poster_args(cfg, &url, facts.duration_s * 0.1, "poster.jpg");
        ffmpeg::run(
            cfg,
            &cfg.ffmpeg,
            &poster,
            dir,
            Some(&mut |_| {}),
            ToolError::Failed,
        )
        .await
        .map_err(hide)?;
        progress.store(5, Ordering::Relaxed);
        let duration = facts.duration_s.max(0.001);
        let mut report = |secs: f64| {
            let done = 5 + (secs / duration * 85.0).clamp(0.0, 85.0) as i64;
            progress.store(done, Ordering::Relaxed);
        };
        let hls = args::hls_args(cfg, &url, &facts, &plan);
        ffmpeg::run(
            cfg,
            &cfg.ffmpeg,
            &hls,
            dir,
            Some(&mut report),
            ToolError::Failed,
        )
        .await
        .map_err(hide)?;
        progress.store(90, Ordering::Relaxed);
        let outputs = self.publish(job, token, dir, &plan).await?;
        if !self
            .store
            .media_done(job.file_id, token, &facts, &outputs)
            .await?
        {
            return Err(Stop::LeaseLost(
                "taken over or cancelled before done".into(),
            ));
        }
        Ok(facts)
    }
}
