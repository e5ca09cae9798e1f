//! `[media]`: the video jobs every node runs (a poster frame and HLS renditions for each
//! uploaded `video/*` file). Read at each node's start.

use serde::{Deserialize, Serialize};

/// `[media]` (see the module doc).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// false: this node runs no jobs (others still may; jobs are still recorded).
    pub enabled: bool,
    /// Jobs this node runs at once.
    pub workers: u32,
    /// Threads each ffmpeg may use (`-threads`): with `nice`, what keeps processing from
    /// starving uploads and downloads on the same node.
    pub threads: u32,
    /// The niceness ffmpeg runs at (0 to 19; 19 yields the CPU to everything else).
    pub nice: i32,
    /// Rendition heights, never above the source's (the largest source-sized rendition is
    /// made when the source is smaller than all of them).
    pub heights: Vec<u32>,
    /// Target HLS segment duration, in seconds (segments cut at keyframes every this long).
    pub segment_secs: u32,
    /// Attempts a job gets before it fails for good (ffmpeg rejecting the input fails it at
    /// once: trying again cannot help).
    pub max_attempts: u32,
    /// Seconds before the first retry; doubled after each further failure.
    pub retry_backoff_secs: u64,
    /// Where each job's scratch directory is made (removed when the job ends, and at the
    /// node's start); empty: the system's temporary directory.
    pub scratch_dir: String,
    /// Bytes a job's scratch directory may hold; ffmpeg is stopped past it and the job
    /// fails.
    pub max_scratch_bytes: u64,
    /// The ffmpeg and ffprobe executables.
    pub ffmpeg: String,
    pub ffprobe: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            workers: 1,
            threads: 1,
            nice: 10,
            heights: vec![360, 720, 1080],
            segment_secs: 4,
            max_attempts: 3,
            retry_backoff_secs: 10,
            scratch_dir: String::new(),
            max_scratch_bytes: 8 << 30,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

impl MediaConfig {
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if !(1..=64).contains(&self.workers) {
            problems.push(format!("media.workers = {}: use 1 to 64", self.workers));
        }
        if !(1..=64).contains(&self.threads) {
            problems.push(format!("media.threads = {}: use 1 to 64", self.threads));
        }
        if !(0..=19).contains(&self.nice) {
            problems.push(format!("media.nice = {}: use 0 to 19", self.nice));
        }
        if self.heights.is_empty() || self.heights.len() > 6 {
            problems.push("media.heights: give 1 to 6 rendition heights".into());
        }
        for h in &self.heights {
            if !(64..=4320).contains(h) || h % 2 == 1 {
                problems.push(format!(
                    "media.heights: {h} is not an even height from 64 to 4320"
                ));
            }
        }
        if !(1..=30).contains(&self.segment_secs) {
            problems.push(format!(
                "media.segment_secs = {}: use 1 to 30",
                self.segment_secs
            ));
        }
        if !(1..=20).contains(&self.max_attempts) {
            problems.push(format!(
                "media.max_attempts = {}: use 1 to 20",
                self.max_attempts
            ));
        }
        if self.max_scratch_bytes < 64 << 20 {
            problems.push(format!(
                "media.max_scratch_bytes = {}: at least 64 MiB",
                self.max_scratch_bytes
            ));
        }
        for (key, value) in [("ffmpeg", &self.ffmpeg), ("ffprobe", &self.ffprobe)] {
            if value.is_empty() {
                problems.push(format!("media.{key} must name an executable"));
            }
        }
    }

    /// The heights to encode a `width`×`height` source at: the configured ones up to its
    /// height, highest last; the source's own (even) height if it is below all of them.
    pub fn renditions_for(&self, height: u32) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .heights
            .iter()
            .copied()
            .filter(|h| *h <= height)
            .collect();
        out.sort_unstable();
        out.dedup();
        if out.is_empty() && height >= 2 {
            out.push(height - height % 2);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::MediaConfig;

    #[test]
    fn renditions_never_exceed_the_source() {
        let m = MediaConfig::default();
        assert_eq!(m.renditions_for(1080), vec![360, 720, 1080]);
        assert_eq!(m.renditions_for(1440), vec![360, 720, 1080]);
        assert_eq!(m.renditions_for(719), vec![360]);
        assert_eq!(m.renditions_for(241), vec![240]);
        assert_eq!(m.renditions_for(0), Vec::<u32>::new());
    }

    #[test]
    fn bad_settings_are_named() {
        let m = MediaConfig {
            workers: 0,
            nice: 25,
            heights: vec![721],
            ..MediaConfig::default()
        };
        let mut problems = Vec::new();
        m.validate(&mut problems);
        let all = problems.join("\n");
        for key in ["media.workers", "media.nice", "721"] {
            assert!(all.contains(key), "{key} not named in {all}");
        }
    }
}
