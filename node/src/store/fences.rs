//! Listing fences: every so many names ([`MIN_SPACING`] or more), held in this node's
//! memory, that cut a listing's range into short ones.
//!
//! Why: SecantusDB (both servers) answers a `find` by reading every document its filter
//! matches, sorting them, and only then applying `limit` (`secantus-commands`' `find`: "the
//! storage returns the full ordered match set"). So `GET /files?limit=10` over 100,000
//! names read all 100,000 (340 ms on `secantusd-rs`); MongoDB stops its index scan at the
//! limit. A listing therefore walks `[lo, f₁)`, `[f₁, f₂)`, … between fences and stops as
//! soon as it has its page ([`Fences::ends`]).
//!
//! Fences are hints, never answers: each range query is exact, and the ranges are adjacent
//! and in order, so a page holds the first names of its range whatever the fences are
//! (stale, absent, or names since deleted). Stale fences only make the walk read more.
//!
//! They are rebuilt by one ordered read of every name (the `name` field only) when a walk
//! shows they no longer cut its range ([`Fences::wants_rebuild`]), one rebuild at a time,
//! and never more often than [`REBUILD_COST_SHARE`] of the time allows, so that on a server
//! that stops at the limit, where fences buy nothing, they cost at most 1 % of one
//! connection's database time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bson::{doc, RawDocumentBuf};
use futures::TryStreamExt;

use super::Store;
use crate::error::Result;

/// Names from one fence to the next, at least. A listing's first range holds about this
/// many (or its page, if larger): about 1 ms of reading on `secantusd-rs`, 5 on
/// `secantusd-py`.
pub const MIN_SPACING: u64 = 64;

/// Fences at most (by a wider spacing in a larger store): 16,384 names of at most 1 KiB.
const MAX_FENCES: usize = 16_384;

/// A rebuild that took `d` is not followed by another for `d × REBUILD_COST_SHARE`.
const REBUILD_COST_SHARE: u32 = 100;

/// Nor sooner than this after the last one, however quick it was.
const MIN_REBUILD_GAP: Duration = Duration::from_secs(1);

/// A walk is slow when it took longer than this many times what reading its page and one
/// fence interval cost per name in the last rebuild (and than [`SLOW_FLOOR`]): it read a
/// range the fences no longer cut (names added between two fences since), and asks for a
/// rebuild.
const SLOW_FACTOR: u32 = 8;

/// No walk quicker than this is slow: below it, the round trips, not the names, dominate.
const SLOW_FLOOR: Duration = Duration::from_millis(3);

/// A rebuild's time is spread over at least this many names to tell the cost of one: a
/// rebuild over few names is mostly its round trips (27 µs a name over 1,000 names on
/// `secantusd-rs`, about 2 over 100,000), and taken at face value it would excuse the slow
/// walks of the store once it has grown.
const RATE_MIN_NAMES: u64 = 10_000;

/// This node's fences and when it may rebuild them.
#[derive(Debug, Default)]
pub struct Fences {
    posts: ArcSwap<Posts>,
    rebuilding: AtomicBool,
    /// When the next rebuild may start; `None`: at once.
    next_rebuild: Mutex<Option<Instant>>,
}

/// Fences and the names from one to the next when they were read.
#[derive(Debug, Default)]
struct Posts {
    spacing: u64,
    /// In order, each name less than the next.
    names: Vec<String>,
    /// What reading one name cost the rebuild that found these.
    per_name: Duration,
}

impl Posts {
    /// How long a walk for `want` names may take before it is slow (see [`SLOW_FACTOR`]).
    fn slow_walk(&self, want: usize) -> Duration {
        let names = u32::try_from(want as u64 + self.spacing).unwrap_or(u32::MAX);
        (self
            .per_name
            .saturating_mul(names)
            .saturating_mul(SLOW_FACTOR))
        .max(SLOW_FLOOR)
    }
}

/// How a listing's walk went, for [`Fences::wants_rebuild`].
#[derive(Debug, Clone, Copy)]
pub struct Walked {
    /// The last range read had no fence above it (it ran to the listing's upper bound).
    pub unfenced: bool,
    /// That range filled the page: the server may have read many more names in it.
    pub filled: bool,
    /// Names the walk looked for (the page and one more).
    pub want: usize,
    pub took: Duration,
}

impl Fences {
    /// The upper ends of the ranges a listing of `(lo, hi)` reads in turn, to find `want`
    /// names: fences strictly inside `(lo, hi)`; the first range spans enough fence
    /// intervals for `want` names, the second as many again, each next one twice the one
    /// before, and the last ends at `hi`. Without fences inside: `[hi]`, one range.
    pub fn ends(&self, lo: &str, hi: &str, want: usize) -> Vec<String> {
        let posts = self.posts.load();
        ends(&posts.names, posts.spacing, lo, hi, want)
    }

    /// Whether `walked` asks for new fences: its last range was unfenced and full, or the
    /// walk was slow for what these fences promise.
    pub fn wants_rebuild(&self, walked: Walked) -> bool {
        (walked.unfenced && walked.filled) || walked.took > self.posts.load().slow_walk(walked.want)
    }

    /// Claims the rebuild, if none is running and the last one's gap has passed.
    fn claim(&self) -> bool {
        let due = match self.next_rebuild.lock() {
            Ok(next) => next.is_none_or(|at| Instant::now() >= at),
            Err(_) => false,
        };
        due && !self.rebuilding.swap(true, Ordering::AcqRel)
    }

    fn finish(&self, posts: Option<Posts>, took: Duration) {
        if let Some(posts) = posts {
            self.posts.store(Arc::new(posts));
        }
        if let Ok(mut next) = self.next_rebuild.lock() {
            *next = Some(Instant::now() + (took * REBUILD_COST_SHARE).max(MIN_REBUILD_GAP));
        }
        self.rebuilding.store(false, Ordering::Release);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.posts.load().names.len()
    }
}

fn ends(posts: &[String], spacing: u64, lo: &str, hi: &str, want: usize) -> Vec<String> {
    let from = posts.partition_point(|p| p.as_str() <= lo);
    let to = posts.partition_point(|p| p.as_str() < hi);
    let inside = posts.get(from..to).unwrap_or_default();
    let mut out = Vec::new();
    let mut span = want.div_ceil(spacing.max(1) as usize).max(1);
    let mut at = span - 1;
    while let Some(post) = inside.get(at) {
        out.push(post.clone());
        at += span;
        span *= 2;
    }
    out.push(hi.to_string());
    out
}

impl Store {
    /// Starts a rebuild of this node's fences in the background if `walked` asks for one
    /// and [`Fences`] allows one now.
    pub(super) fn after_walk(&self, walked: Walked) {
        if !self.fences.wants_rebuild(walked) || !self.fences.claim() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let read = store.read_fences().await;
            let took = start.elapsed();
            let posts = match read {
                Ok(Read {
                    names,
                    spacing,
                    seen,
                }) => Some(Posts {
                    names,
                    spacing,
                    per_name: per_name(took, seen),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "listing fences not rebuilt");
                    None
                }
            };
            tracing::debug!(fences = ?posts.as_ref().map(|p| p.names.len()), ?took, "listing fences");
            store.fences.finish(posts, took);
        });
    }

    /// Every so many names, in order: one read of the `name` index's range, the documents'
    /// `name` only, streamed (the node holds the fences, not the names). The spacing starts
    /// at [`MIN_SPACING`] and doubles, every other fence dropped, whenever there would be
    /// more than [`MAX_FENCES`]: the store's size is learnt on the way, not by a count first
    /// (`estimatedDocumentCount` reads every document on SecantusDB: 60 ms at 100,000 names
    /// on `secantusd-rs`, 135 ms at 20,000 on `secantusd-py`).
    async fn read_fences(&self) -> Result<Read> {
        let _timer = self.metrics.time("fences");
        let mut cursor = self
            .names
            .clone_with_type::<RawDocumentBuf>()
            .find(doc! {"name": {"$gte": ""}})
            .projection(doc! {"_id": 0, "name": 1})
            .sort(doc! {"name": 1})
            .batch_size(10_000)
            .await?;
        let mut read = Read::default();
        while let Some(doc) = cursor.try_next().await? {
            if read.count() {
                if let Ok(name) = doc.get_str("name") {
                    read.keep(name.to_string());
                }
            }
        }
        Ok(read)
    }
}

/// What reading one name cost a rebuild that read `seen` in `took` (see [`RATE_MIN_NAMES`]).
fn per_name(took: Duration, seen: u64) -> Duration {
    took / u32::try_from(seen.max(RATE_MIN_NAMES)).unwrap_or(u32::MAX)
}

/// What one ordered read of the names found (see [`Store::read_fences`]).
struct Read {
    /// The fences so far, the `spacing`-th name, the 2 × `spacing`-th, …
    names: Vec<String>,
    spacing: u64,
    /// Names read.
    seen: u64,
}

impl Default for Read {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            spacing: MIN_SPACING,
            seen: 0,
        }
    }
}

impl Read {
    /// Counts the next name read; true when it is a fence.
    fn count(&mut self) -> bool {
        self.seen += 1;
        self.seen % self.spacing == 0
    }

    /// Keeps a fence; past [`MAX_FENCES`], doubles the spacing and drops every other one.
    fn keep(&mut self, name: String) {
        self.names.push(name);
        if self.names.len() > MAX_FENCES {
            // The fences at even multiples of the spacing (the 2nd, 4th, …) stay.
            self.names = std::mem::take(&mut self.names)
                .into_iter()
                .skip(1)
                .step_by(2)
                .collect();
            self.spacing *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i:04}")).collect()
    }

    #[test]
    fn without_fences_inside_one_range_runs_to_the_upper_bound() {
        assert_eq!(ends(&[], 256, "", "~", 11), ["~"]);
        let p = posts(4);
        assert_eq!(ends(&p, 256, "f0003", "~", 11), ["~"], "none above lo");
        assert_eq!(ends(&p, 256, "", "f0000", 11), ["f0000"], "none below hi");
        assert_eq!(
            ends(&p, 256, "f0001", "f0002", 11),
            ["f0002"],
            "hi itself is no fence"
        );
    }

    #[test]
    fn ranges_double_from_the_first_fence_above_lo() {
        let p = posts(20);
        assert_eq!(
            ends(&p, 256, "f0002", "~", 11),
            ["f0003", "f0004", "f0006", "f0010", "f0018", "~"]
        );
        // A lo that is a fence starts above it: `after=` a fence excludes it.
        assert_eq!(ends(&p, 256, "f0003", "~", 11)[0], "f0004");
    }

    #[test]
    fn the_first_range_spans_enough_fences_for_the_page() {
        let p = posts(20);
        // 1,001 names at 256 per interval: 4 intervals.
        assert_eq!(
            ends(&p, 256, "", "~", 1001),
            ["f0003", "f0007", "f0015", "~"],
            "then 4 more, 8 more, and the rest"
        );
    }

    #[test]
    fn a_rebuild_is_asked_for_by_an_unfenced_full_range_or_a_slow_walk() {
        let quick = Duration::from_millis(2);
        let walked = |unfenced, filled, took| Walked {
            unfenced,
            filled,
            want: 11,
            took,
        };
        let none = Fences::default();
        assert!(none.wants_rebuild(walked(true, true, quick)));
        assert!(!none.wants_rebuild(walked(true, false, quick)), "the end");
        assert!(!none.wants_rebuild(walked(false, true, quick)));
        assert!(none.wants_rebuild(walked(false, true, SLOW_FLOOR * 2)));
        // 20 µs a name in the rebuild, 64 names apart: a walk for 11 may take 8 × 75 × 20 µs.
        let fenced = |per_name| {
            let f = Fences::default();
            let names = posts(3);
            f.finish(
                Some(Posts {
                    spacing: 64,
                    names,
                    per_name,
                }),
                quick,
            );
            f
        };
        let ms = |n: f64| Duration::from_secs_f64(n / 1000.0);
        let some = fenced(Duration::from_micros(20));
        assert!(!some.wants_rebuild(walked(false, true, ms(11.9))));
        assert!(some.wants_rebuild(walked(false, true, ms(12.1))));
        // At 2 µs a name the floor decides.
        let cheap = fenced(Duration::from_micros(2));
        assert!(
            !cheap.wants_rebuild(walked(false, true, ms(2.9))),
            "the floor"
        );
        assert!(cheap.wants_rebuild(walked(false, true, ms(3.1))));
    }

    #[test]
    fn a_rebuild_over_few_names_does_not_excuse_slow_walks_later() {
        // Measured: 27 ms for 1,000 names; the store then grew to 20,000 between fences,
        // and walks took 5.5 ms.
        let f = Fences::default();
        let per_name = per_name(Duration::from_millis(27), 1_000);
        f.finish(
            Some(Posts {
                spacing: 64,
                names: posts(15),
                per_name,
            }),
            Duration::from_millis(27),
        );
        let walked = Walked {
            unfenced: false,
            filled: true,
            want: 11,
            took: Duration::from_micros(5_500),
        };
        assert!(f.wants_rebuild(walked), "{per_name:?} a name");
        // Over a large store the rebuild's own rate counts.
        assert_eq!(
            super::per_name(Duration::from_millis(200), 100_000),
            Duration::from_micros(2)
        );
    }

    #[test]
    fn a_large_store_gets_wider_spacing_never_more_fences() {
        let mut read = Read::default();
        let total = MIN_SPACING * MAX_FENCES as u64 * 3 + 5;
        for i in 1..=total {
            if read.count() {
                read.keep(i.to_string());
            }
        }
        assert_eq!(read.seen, total);
        assert_eq!(read.spacing, MIN_SPACING * 4, "doubled twice");
        assert!(read.names.len() <= MAX_FENCES);
        assert_eq!(read.names.len() as u64, total / read.spacing);
        // Each fence is the name at its multiple of the final spacing.
        for (k, name) in read.names.iter().enumerate() {
            assert_eq!(*name, ((k as u64 + 1) * read.spacing).to_string());
        }
    }

    #[test]
    fn one_rebuild_at_a_time_and_not_again_before_its_gap() {
        let f = Fences::default();
        assert!(f.claim());
        assert!(!f.claim(), "one is running");
        f.finish(
            Some(Posts {
                spacing: 256,
                names: posts(3),
                per_name: Duration::ZERO,
            }),
            Duration::from_millis(1),
        );
        assert_eq!(f.len(), 3);
        assert!(!f.claim(), "within the minimum gap");
        *f.next_rebuild.lock().unwrap() = Some(Instant::now());
        assert!(f.claim(), "the gap has passed");
        f.finish(None, Duration::from_millis(1));
        assert_eq!(f.len(), 3, "a failed rebuild keeps the fences it had");
    }
}
