//! `GET /files`: one page of names in order, read as a walk of short ranges between this
//! node's [`fences`](super::fences).
//!
//! Each range is on the indexed `name` field with both bounds given: on the embedded
//! database a range on `_id`, or one without an upper bound, scans the whole collection
//! (1.4 s at 20,000 names), and any range reads every name in it before the limit applies
//! (see [`super::fences`]). A real MongoDB serves either shape from the index and stops at
//! the limit.
//!
//! A page read in several ranges is not one snapshot: a name added to a range already read
//! is missing from it, as it would be had it been added just before the request. Pages
//! were never one snapshot together.

use std::time::Instant;

use bson::{doc, Document};
use futures::TryStreamExt;

use super::fences::Walked;
use super::{FileInfo, Store};
use crate::error::Result;

/// `GET /files?prefix=&limit=&after=`: which names, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub after: Option<String>,
    pub limit: u32,
}

impl Store {
    /// One page of names in order (at most `q.limit`), and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<FileInfo>, bool)> {
        let _timer = self.metrics.time("list");
        let start = Instant::now();
        let (mut lower, lo) = match &q.after {
            Some(after) if *after >= q.prefix => (doc! {"$gt": after}, after.as_str()),
            _ => (doc! {"$gte": &q.prefix}, q.prefix.as_str()),
        };
        let hi = prefix_upper_bound(&q.prefix).unwrap_or_else(past_every_name);
        let want = q.limit as usize + 1;
        let ends = self.fences.ends(lo, &hi, want);
        let last = ends.len() - 1;
        let mut page: Vec<FileInfo> = Vec::with_capacity(want);
        for (i, end) in ends.into_iter().enumerate() {
            let asked = want - page.len();
            let got = self.name_range(lower, &end, asked).await?;
            let filled = got.len() == asked;
            page.extend(got);
            if filled || i == last {
                self.after_walk(Walked {
                    unfenced: i == last,
                    filled,
                    want,
                    took: start.elapsed(),
                });
                break;
            }
            lower = doc! {"$gte": end};
        }
        let more = page.len() > q.limit as usize;
        page.truncate(q.limit as usize);
        Ok((page, more))
    }

    /// The first `limit` names in `lower` (a `$gt`/`$gte` condition) and below `end`.
    async fn name_range(
        &self,
        mut lower: Document,
        end: &str,
        limit: usize,
    ) -> Result<Vec<FileInfo>> {
        lower.insert("$lt", end);
        Ok(self
            .names
            .find(doc! {"name": lower})
            .projection(doc! {"inline": 0})
            .sort(doc! {"name": 1})
            .limit(limit as i64)
            .await?
            .try_collect()
            .await?)
    }
}

/// Greater than every valid name (at most 1024 bytes of UTF-8): 257 × U+10FFFF is 1028
/// bytes and sorts after any shorter string of U+10FFFF and after every other string.
fn past_every_name() -> String {
    char::MAX.to_string().repeat(257)
}

/// The smallest string greater than every string starting with `prefix`, if one exists.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("user07/").as_deref(), Some("user070"));
        assert_eq!(prefix_upper_bound("a").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }
}
