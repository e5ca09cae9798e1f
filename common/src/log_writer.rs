//! Log lines to stdout from a background thread that writes them in batches.
//!
//! Why not `tracing-appender`'s non-blocking writer, which this replaced: it hands every
//! line to its thread through a channel and wakes it for each one (a futex wake by the
//! logging thread, then the worker's spin with `sched_yield`, its park again, and a
//! `write(2)` whenever the queue runs dry), and it has no setting to wait for more lines.
//! With one access line per request that was 6.5 µs of the balancer's 36.5 µs of CPU per
//! 4 KiB GET (`scripts/bench-observe`, `log` against `nolog`, median of 3).
//!
//! Here a line is appended to a shared buffer under a mutex held for the copy only. The
//! thread is woken once per batch, by the line that starts it; it lets the batch gather
//! for [`FLUSH_EVERY`] (less once [`EARLY_FLUSH_BYTES`] are waiting) and writes it with one
//! `write(2)`. So a line reaches stdout at most about [`FLUSH_EVERY`] after it was logged,
//! an idle process never wakes, and a request never waits for stdout: past
//! [`MAX_PENDING_BYTES`] waiting or being written (a stdout nobody drains) new lines are
//! dropped and counted ([`LineWriter::dropped_lines`]), as are the lines of a batch whose
//! write failed. Dropping the [`FlushGuard`] writes what is left, waiting at most
//! [`CLOSE_WAIT`] for a stdout that does not drain.
//!
//! Each call of [`LineWriter::write_line`] (or `write` through [`tracing_subscriber`]'s
//! `MakeWriter`, whose fmt layer formats an event whole and writes it once) is one piece:
//! never wrap the writer in a buffer that could split a line.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a batch gathers lines before it is written: the most a line waits.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A batch this large is written at once (one `write(2)` of at most about this much).
pub const EARLY_FLUSH_BYTES: usize = 256 * 1024;
/// Bytes waiting or being written beyond which new lines are dropped: about 128,000
/// access lines.
pub const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;
/// How long dropping the [`FlushGuard`] waits for the last lines to be written: a process
/// whose stdout is not drained must still exit (tracing-appender's guard waited ~1.1 s).
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The thresholds above; tests use small ones.
#[derive(Debug, Clone, Copy)]
struct Limits {
    flush_every: Duration,
    early_flush_bytes: usize,
    max_pending_bytes: usize,
}

const LIMITS: Limits = Limits {
    flush_every: FLUSH_EVERY,
    early_flush_bytes: EARLY_FLUSH_BYTES,
    max_pending_bytes: MAX_PENDING_BYTES,
};

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled by the line that starts a batch, by one that makes it large, on close, and
    /// by the thread when it ends.
    wake: Condvar,
    dropped: AtomicU64,
    limits: Limits,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Bytes of the batch being written: they count against the bound too.
    writing: usize,
    closing: bool,
    /// The thread wrote everything after `closing` and ended.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock cannot leave the bytes half-appended in a way
        // that matters more than losing the log: carry on with what is there.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (woken by [`Shared::wake`]) until `done` holds or `deadline` passes; returns
    /// the lock and whether `done` holds.
    fn wait_until<'a>(
        &'a self,
        mut pending: MutexGuard<'a, Pending>,
        deadline: Instant,
        done: impl Fn(&Pending) -> bool,
    ) -> (MutexGuard<'a, Pending>, bool) {
        while !done(&pending) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (pending, false);
            }
            pending = self
                .wake
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        (pending, true)
    }
}

/// Where log lines are written; cheap to clone, never blocks on I/O. Use it as a
/// `tracing-subscriber` writer ([`tracing_subscriber::fmt::MakeWriter`]) or call
/// [`LineWriter::write_line`].
#[derive(Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

/// Keeps the writing thread; dropping it writes every line still waiting and ends the
/// thread. Keep it until the process ends.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes to `out` (stdout, in the binaries).
pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<(LineWriter, FlushGuard)> {
    spawn_with(out, LIMITS)
}

fn spawn_with<W: Write + Send + 'static>(
    out: W,
    limits: Limits,
) -> io::Result<(LineWriter, FlushGuard)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        limits,
    });
    let worker = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_batches(&worker, out))?;
    let guard = FlushGuard {
        shared: Arc::clone(&shared),
        thread: Some(thread),
    };
    Ok((LineWriter { shared }, guard))
}

impl LineWriter {
    /// Queues `line` (whole lines, newline included): it is written in one piece, never
    /// interleaved with another call's. Dropped and counted if too much is waiting.
    pub fn write_line(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        let before = pending.bytes.len();
        if pending.writing + before + line.len() > shared.limits.max_pending_bytes {
            drop(pending);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.bytes.extend_from_slice(line);
        let early = shared.limits.early_flush_bytes;
        let wake = before == 0 || (before < early && pending.bytes.len() >= early);
        drop(pending);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Lines dropped so far because too much was waiting.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Write for &LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = &'a LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        pending.closing = true;
        shared.wake.notify_all();
        let (pending, closed) =
            shared.wait_until(pending, Instant::now() + CLOSE_WAIT, |p| p.closed);
        drop(pending);
        if !closed {
            // Stuck in a write to a stdout nobody drains: leave it, and let the process
            // exit without those lines.
            return;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits for a batch to start, lets it gather, writes it; until closed and
/// drained.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let limits = shared.limits;
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closing {
            pending = shared
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // A batch has begun: let it gather, unless it is large already or we close.
        let gathered = |p: &Pending| p.bytes.len() >= limits.early_flush_bytes || p.closing;
        let (mut pending, _) =
            shared.wait_until(pending, Instant::now() + limits.flush_every, gathered);
        std::mem::swap(&mut pending.bytes, &mut batch);
        pending.writing = batch.len();
        if pending.closing && batch.is_empty() {
            pending.closed = true;
            drop(pending);
            shared.wake.notify_all();
            return;
        }
        drop(pending);
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            // stdout closed or failing: the batch is lost (some of it may have been
            // written); count its lines, there is nowhere else to report it.
            let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
            shared.dropped.fetch_add(lines, Ordering::Relaxed);
        }
        shared.lock().writing = 0;
        batch.clear();
        if batch.capacity() > 4 * limits.early_flush_bytes {
            // After a burst, give the memory back rather than keep the largest batch.
            batch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that records what reached it, and how many writes it took.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut seen = self.0.lock().unwrap();
            seen.0.extend_from_slice(buf);
            seen.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    fn limits(max_pending_bytes: usize) -> Limits {
        Limits {
            flush_every: Duration::from_millis(5),
            early_flush_bytes: 64,
            max_pending_bytes,
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_each_threads_order() {
        let out = Recorder::default();
        let (writer, guard) = spawn_with(out.clone(), limits(1 << 30)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        writer.write_line(format!("thread={t} line={i} end\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = out.text();
        let mut next = [0; 4];
        for line in text.lines() {
            let (t, i) = line
                .strip_prefix("thread=")
                .and_then(|l| l.strip_suffix(" end"))
                .and_then(|l| l.split_once(" line="))
                .unwrap_or_else(|| panic!("a broken line: {line:?}"));
            let t: usize = t.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[t], "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 4]);
        assert_eq!(writer.dropped_lines(), 0);
        assert!(out.writes() < 8000, "{} writes: not batched", out.writes());
    }

    #[test]
    fn a_lone_line_is_written_without_more_lines_or_a_shutdown() {
        let out = Recorder::default();
        let (writer, _guard) = spawn_with(out.clone(), limits(1 << 30)).unwrap();
        for n in 1..=3 {
            writer.write_line(format!("line {n}\n").as_bytes());
            let waited = Instant::now();
            while out.text().lines().count() < n {
                assert!(
                    waited.elapsed() < Duration::from_secs(10),
                    "line {n} never written"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn a_stdout_nobody_drains_does_not_keep_the_process_from_exiting() {
        let (_go, stuck) = mpsc::channel();
        let (writer, guard) =
            spawn_with(Stuck(Mutex::new(stuck), Recorder::default()), limits(1000)).unwrap();
        writer.write_line(b"a line that is never written\n");
        std::thread::sleep(Duration::from_millis(20));
        let dropping = Instant::now();
        drop(guard);
        let waited = dropping.elapsed();
        assert!(waited >= CLOSE_WAIT, "gave up after {waited:?}");
        assert!(waited < CLOSE_WAIT * 10, "hung for {waited:?}");
    }

    #[test]
    fn a_failing_output_counts_the_lines_it_lost() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (writer, guard) = spawn_with(Closed, limits(1 << 30)).unwrap();
        for _ in 0..10 {
            writer.write_line(b"lost\n");
        }
        drop(guard);
        assert_eq!(writer.dropped_lines(), 10);
    }

    /// An output that blocks until told to go on: stdout nobody drains.
    struct Stuck(Mutex<mpsc::Receiver<()>>, Recorder);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_and_never_blocks_the_caller() {
        let (go, stuck) = mpsc::channel();
        let out = Recorder::default();
        let (writer, guard) =
            spawn_with(Stuck(Mutex::new(stuck), out.clone()), limits(1000)).unwrap();
        let line = [b'x'; 99];
        let line = [&line[..], b"\n"].concat();
        // The first batch goes to the stuck output; the next ones wait, up to 1000 bytes.
        for _ in 0..500 {
            writer.write_line(&line);
        }
        let dropped = writer.dropped_lines();
        assert!(dropped > 0 && dropped < 500, "{dropped} dropped");
        for _ in 0..1000 {
            let _ = go.send(());
        }
        drop(guard);
        let written = out.text().lines().count() as u64;
        assert_eq!(written + dropped, 500, "{written} written");
        assert!(out.text().lines().all(|l| l.len() == 99));
    }
}
