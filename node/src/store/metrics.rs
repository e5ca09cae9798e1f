//! What the store counts for `/metrics`: GridFS chunks and bytes read and written, the
//! latency of each store operation, and what the sweeps removed. All of it is counted as
//! the work happens, so a scrape reads memory only, never the database.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use speedbox_common::metrics::{durations, Durations};

use super::sweep::Swept;

/// The store's metric families (registered under `speedbox_store_`).
#[derive(Debug)]
pub struct StoreMetrics {
    /// `speedbox_store_chunks_total{direction="read"|"written"}`: GridFS chunks.
    chunks: Family<Direction, Counter>,
    /// `speedbox_store_chunk_bytes_total{direction}`: their payload bytes.
    chunk_bytes: Family<Direction, Counter>,
    /// `speedbox_store_operation_duration_seconds{operation}`: one store operation, all
    /// its database round trips included (driver retries too).
    operations: Durations<Operation>,
    /// `speedbox_store_swept_total{what}`: what the sweeps removed.
    swept: Family<What, Counter>,
    /// `speedbox_store_chunks_size_bytes`: the chunks collection's size (`collStats`).
    stored: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct What {
    what: &'static str,
}

/// Observes an operation's duration when dropped (see [`StoreMetrics::time`]).
pub struct Timer<'a> {
    metrics: &'a StoreMetrics,
    operation: &'static str,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        let op = Operation {
            operation: self.operation,
        };
        let elapsed = self.start.elapsed().as_secs_f64();
        self.metrics.operations.get_or_create(&op).observe(elapsed);
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            chunks: Family::default(),
            chunk_bytes: Family::default(),
            operations: durations(),
            swept: Family::default(),
            stored: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// Registers the families in `registry` (the node's `speedbox_` part).
    pub fn register(&self, registry: &mut Registry) {
        let store = registry.sub_registry_with_prefix("store");
        store.register(
            "chunks",
            "GridFS chunks read and written",
            self.chunks.clone(),
        );
        store.register_with_unit(
            "chunk",
            "GridFS chunk payload read and written",
            Unit::Bytes,
            self.chunk_bytes.clone(),
        );
        store.register_with_unit(
            "operation_duration",
            "Store operations (name lookups, chunk windows, chunk batches, publications, \
             tus state changes, sweeps), every database round trip included",
            Unit::Seconds,
            self.operations.clone(),
        );
        store.register("swept", "What the sweeps removed", self.swept.clone());
        store.register_with_unit(
            "chunks_size",
            "Size of the GridFS chunks collection as the database reports it (collStats), \
             measured every size_interval_secs; the same cluster-wide figure on every node",
            Unit::Bytes,
            self.stored.clone(),
        );
    }

    /// Times `operation` until the returned guard is dropped.
    pub fn time(&self, operation: &'static str) -> Timer<'_> {
        Timer {
            metrics: self,
            operation,
            start: Instant::now(),
        }
    }

    /// `chunks` GridFS chunks of `bytes` payload bytes were read.
    pub fn read(&self, chunks: usize, bytes: usize) {
        self.count("read", chunks, bytes);
    }

    /// `chunks` GridFS chunks of `bytes` payload bytes were written.
    pub fn written(&self, chunks: usize, bytes: usize) {
        self.count("written", chunks, bytes);
    }

    fn count(&self, direction: &'static str, chunks: usize, bytes: usize) {
        let d = Direction { direction };
        self.chunks.get_or_create(&d).inc_by(chunks as u64);
        self.chunk_bytes.get_or_create(&d).inc_by(bytes as u64);
    }

    /// The chunks collection holds `bytes` (see [`Self::register`]).
    pub(super) fn set_stored(&self, bytes: u64) {
        self.stored.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A sweep removed `swept`.
    pub fn swept(&self, swept: &Swept) {
        for (what, n) in [
            ("abandoned_uploads", swept.abandoned_uploads),
            ("retired_files", swept.retired_files),
            ("expired_tus_uploads", swept.expired_tus_uploads),
            ("media_outputs", swept.media_outputs),
        ] {
            self.swept.get_or_create(&What { what }).inc_by(n);
        }
    }
}
