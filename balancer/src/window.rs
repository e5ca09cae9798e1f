//! The window of an upload's forwarded bytes that the balancer keeps for a continuation
//! on another node ([`crate::protect`]), and the memory budget all windows share.
//!
//! Pure bookkeeping, no I/O: the frames are hyper's own `Bytes`, kept by reference count
//! (the copy into the node's socket is the one the proxy makes anyway), so the window
//! costs memory held a little longer, not a copy. Measured against copying into a ring
//! (`scripts/bench --only proxy`, one 1 GiB upload): the copy cost 20% of the balancer's
//! CPU (memmove); holding frames cost as much under glibc, which returned each released
//! read buffer to the kernel and faulted a fresh one in, and nothing under jemalloc (the
//! balancer's allocator since), which keeps freed pages for reuse.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// The last forwarded bytes of one upload: at least `cap` of them (the whole body while
/// it is shorter), in whole frames.
#[derive(Debug)]
pub struct Window {
    frames: VecDeque<Bytes>,
    /// The offset in the body of the first byte held.
    start: u64,
    /// Bytes held.
    held: u64,
    cap: u64,
}

impl Window {
    pub fn new(cap: u64) -> Self {
        Self {
            frames: VecDeque::new(),
            start: 0,
            held: 0,
            cap,
        }
    }

    /// Keeps `frame`, the body's next bytes, dropping the oldest frames no longer needed
    /// to hold `cap` bytes.
    pub fn push(&mut self, frame: Bytes) {
        self.held += frame.len() as u64;
        self.frames.push_back(frame);
        while let Some(oldest) = self.frames.front() {
            let len = oldest.len() as u64;
            if self.held - len < self.cap {
                break;
            }
            self.held -= len;
            self.start += len;
            self.frames.pop_front();
        }
    }

    /// The offset of the first byte held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The offset just past the last byte held: every byte forwarded so far.
    pub fn end(&self) -> u64 {
        self.start + self.held
    }

    /// Every byte held, from [`Window::start`], to send again.
    pub fn replay(&self) -> VecDeque<Bytes> {
        self.frames.clone()
    }
}

/// What all upload windows together may hold, and what they did, since the start.
#[derive(Debug, Default)]
pub struct UploadStats {
    reserved: AtomicU64,
    /// Uploads that found the budget spent.
    pub unprotected: AtomicU64,
    /// Uploads continued on another node after theirs died.
    pub continued: AtomicU64,
    /// Uploads whose node died and that could not be continued.
    pub cut: AtomicU64,
}

impl UploadStats {
    /// Reserves `bytes` of `budget` for one upload's window, or `None` (counted) when the
    /// budget has no room left.
    pub fn reserve(self: &Arc<Self>, bytes: u64, budget: u64) -> Option<Reservation> {
        let taken = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + bytes <= budget).then_some(now + bytes)
            });
        match taken {
            Ok(_) => Some(Reservation {
                stats: Arc::clone(self),
                bytes,
            }),
            Err(_) => {
                self.unprotected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Bytes reserved by the windows of uploads under way.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }
}

/// One window's share of the budget, given back when the upload ends.
#[derive(Debug)]
pub struct Reservation {
    stats: Arc<UploadStats>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.stats.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(window: &Window) -> Vec<u8> {
        window.replay().iter().flat_map(|f| f.to_vec()).collect()
    }

    #[test]
    fn the_window_holds_at_least_cap_bytes_in_whole_frames() {
        let mut w = Window::new(10);
        let mut sent = Vec::new();
        for (i, len) in [4usize, 4, 4, 7, 1, 12, 3].into_iter().enumerate() {
            let frame: Vec<u8> = (0..len).map(|j| (i * 16 + j) as u8).collect();
            sent.extend_from_slice(&frame);
            w.push(Bytes::from(frame));
            assert_eq!(w.end(), sent.len() as u64);
            let held = w.end() - w.start();
            assert!(held >= 10.min(sent.len() as u64), "held {held} after {i}");
            let first = w.replay().front().map_or(0, |f| f.len() as u64);
            assert!(held - first < 10, "an unneeded frame kept after {i}");
            assert_eq!(body(&w), sent[w.start() as usize..]);
        }
    }

    #[test]
    fn a_body_shorter_than_the_window_is_held_whole() {
        let mut w = Window::new(100);
        w.push(Bytes::from_static(b"abc"));
        w.push(Bytes::from_static(b"de"));
        assert_eq!((w.start(), w.end()), (0, 5));
        assert_eq!(body(&w), b"abcde");
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let stats = Arc::new(UploadStats::default());
        let a = stats.reserve(6, 10).expect("room for one");
        assert!(stats.reserve(6, 10).is_none(), "no room for a second");
        assert_eq!(stats.unprotected.load(Ordering::Relaxed), 1);
        let b = stats.reserve(4, 10).expect("room for a smaller one");
        assert_eq!(stats.reserved(), 10);
        drop(a);
        assert_eq!(stats.reserved(), 4);
        drop(b);
        assert_eq!(stats.reserved(), 0);
    }
}
