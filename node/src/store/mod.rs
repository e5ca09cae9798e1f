//! The only module that talks to MongoDB.
//!
//! Files are laid out as the GridFS spec says (`<bucket>.files`, `<bucket>.chunks`), so any
//! GridFS driver can read them, but the node writes and reads chunks itself rather than through
//! the driver's GridFS streams: uploads need digests checked before commit, tus (later) needs
//! writes at a given chunk `n`, and serving needs reads that start at any chunk in bounded
//! windows (the driver's download stream has no offset and makes the server hold the whole
//! file's cursor). Three more collections complete the picture:
//! - `<bucket>.names`: name → current file id, swapped by compare-and-set on `version`, so a
//!   replacement becomes visible at one instant and "latest revision" never depends on clocks.
//!   It carries the file's metadata, so serving a file is one lookup plus chunk windows.
//! - `<bucket>.uploads`: one document per upload in progress with a heartbeat; the sweep
//!   removes the chunks of uploads whose node went silent (killed mid-upload).
//! - `<bucket>.media`: one video job per published video ([`media`]), and
//!   `<bucket>.media_generations`, a counter per name that orders its jobs.
//! - `metadata.retired_at` on a files document marks a revision that lost its name; the sweep
//!   deletes it after a grace period, so readers already streaming it can finish.
//!
//! Every write is journaled (`j: true`) unless the URI says otherwise: an acknowledged file
//! must survive a crash of the database.

use std::sync::Arc;
use std::time::Duration;

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document, RawDocumentBuf};
use bytes::Bytes;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, IndexModel};
use serde::{Deserialize, Serialize};
use speedbox_common::config::{MongoConfig, StorageConfig, WriteAck};
use tokio::sync::Semaphore;

use crate::error::Result;

mod chunker;
mod chunks;
mod fences;
mod lease;
mod listing;
mod media;
mod media_upkeep;
mod metrics;
mod names;
mod revoked;
mod sweep;
mod tus;
mod tus_finish;
mod upload;
mod whole;
mod writer;

pub use chunker::Chunker;
use fences::Fences;
pub use listing::ListQuery;
pub use media::{
    is_video, JobState, MediaFacts, MediaJob, MediaOutput, OutputGuard, Outputs, Rendition,
    MEDIA_LEASE_TTL,
};
pub use media_upkeep::SourceState;
pub use metrics::StoreMetrics;
pub use names::Guard;
pub use tus::{Acquired, Created, NewUpload, TusUpload, LEASE_TTL};
pub use tus_finish::{Recoverer, Terminated};
pub use upload::Upload;
pub use writer::ChunkWriter;

/// What a name points at: the current revision of a file and its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    #[serde(rename = "_id")]
    pub name: String,
    /// The name again, as an ordinary indexed field that listings range over (see
    /// [`Store::list`]).
    #[serde(rename = "name", default)]
    pub key: String,
    pub file_id: ObjectId,
    pub length: i64,
    pub chunk_size: i32,
    pub content_type: String,
    /// Hex digests of the content, computed while it streamed in.
    pub md5: String,
    pub sha256: String,
    pub uploaded_at: DateTime,
    /// Bumped on every swap; the compare-and-set guard.
    pub version: i64,
    /// Set when the file is an output of a video job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaOutput>,
    /// `file_id` again, set only when the whole file is at most [`WHOLE_CHUNKS`] chunks: the
    /// field [`Store::lookup_whole`] joins the chunks on, so that a GET of a small file is
    /// one database round trip (a large file's chunks are never joined: they would not fit
    /// in one reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small: Option<ObjectId>,
    /// The whole content of a file of at most [`INLINE_MAX_BYTES`] (and one chunk), set by
    /// the swap that publishes it; its GridFS chunks hold it too, so GridFS readers see a
    /// whole file. [`Store::lookup_whole`] takes it out; every other read leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<bson::Binary>,
}

/// Files of at most this many bytes carry their content in their name's document too: a
/// GET of one is one `find` by `_id` (see [`whole`]). Stored twice, so kept small: the
/// bytes a document of a name and its metadata costs anyway are of this order.
pub const INLINE_MAX_BYTES: u64 = 16 * 1024;

/// `bytes` as BSON binary data of the generic subtype, as every byte field here is stored.
fn binary(bytes: Vec<u8>) -> bson::Binary {
    bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes,
    }
}

/// Whether `content` bytes may be the inline content ([`FileInfo::inline`]) of a file of
/// `length` bytes: the whole file, and at most [`INLINE_MAX_BYTES`]. The one rule that
/// publishing, the reader and the backfill of old files apply.
fn is_inline_content(content: usize, length: u64) -> bool {
    content as u64 == length && length <= INLINE_MAX_BYTES
}

/// Files of at most this many chunks are read with their name in one round trip (see
/// [`FileInfo::small`]): at most 8 × 255 KiB (2 MiB) in one reply, far below MongoDB's 16 MiB.
pub const WHOLE_CHUNKS: u64 = 8;

/// What reading a file's chunks needs to know: where they are and how long each must be.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLayout {
    pub file_id: ObjectId,
    pub chunk_size: u64,
    pub length: u64,
}

impl ChunkLayout {
    /// How many chunks the file has.
    pub fn count(&self) -> u64 {
        self.length.div_ceil(self.chunk_size.max(1))
    }
}

impl FileInfo {
    pub fn layout(&self) -> ChunkLayout {
        ChunkLayout {
            file_id: self.file_id,
            chunk_size: self.chunk_size as u64,
            length: self.length as u64,
        }
    }
}

/// Digests and type of a completely received upload.
#[derive(Debug, Clone)]
pub struct Finished {
    pub length: u64,
    pub content_type: String,
    pub md5: String,
    pub sha256: String,
    /// Set when the file is an output of a video job (which then records no job of its
    /// own, whatever its type).
    pub media: Option<MediaOutput>,
    /// The caller's last chunk of the file, if it holds it. Publishing keeps it as the
    /// file's [`FileInfo::inline`] only if it is the whole file (its length is the file's)
    /// and at most [`INLINE_MAX_BYTES`]; the callers need not know which it is.
    pub inline: Option<Bytes>,
}

/// Whether the driver makes writes retryable (`txnNumber` on each): as the URI's
/// `retryWrites=` says, else on except for the embedded server (see [`Store::connect`]).
fn retryable_writes(uri_says: Option<bool>, embedded: bool) -> bool {
    uri_says.unwrap_or(!embedded)
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    files: Collection<Document>,
    chunks: Collection<RawDocumentBuf>,
    names: Collection<FileInfo>,
    uploads: Collection<Document>,
    tus: Collection<TusUpload>,
    revoked: Collection<Document>,
    media: Collection<MediaJob>,
    media_generations: Collection<Document>,
    chunk_size: u32,
    /// Chunks per query when reading a file back (`chunks_per_read`).
    read_window: u64,
    node_id: String,
    heartbeat_every: Duration,
    /// Chunk writes in flight on this node, across all uploads (see [`writer`]).
    background_writes: Arc<Semaphore>,
    metrics: Arc<StoreMetrics>,
    /// This node's listing fences (see [`fences`]).
    fences: Arc<Fences>,
    /// Which read a GET tries first (see [`whole`]).
    first_read: Arc<whole::FirstRead>,
    /// Old small files getting their inline content (see [`whole`]).
    backfill: Arc<whole::Backfill>,
    db: mongodb::Database,
}

impl Store {
    /// A client for `cfg`; connects lazily, so a node starts even while the database is down.
    pub async fn connect(
        cfg: &MongoConfig,
        storage: &StorageConfig,
        node_id: &str,
    ) -> Result<Self> {
        let mut opts = ClientOptions::parse(&cfg.uri).await?;
        opts.server_selection_timeout =
            Some(Duration::from_millis(cfg.server_selection_timeout_ms));
        opts.heartbeat_freq = Some(Duration::from_millis(cfg.heartbeat_ms));
        opts.app_name = Some(format!("speedbox-node/{node_id}"));
        // A write that failed over is retried once by the driver (the server's writes are
        // idempotent by our unique indexes and compare-and-sets); so is a read. Not on the
        // embedded server unless its URI asks: one server has no failover to ride out, and
        // secantusd-py keeps every retryable write's reply for 30 minutes and prunes them
        // by a scan (and, past 10,000, a sort) on every write, which made small PUTs
        // slower with every write since the start. A URI's `retryWrites=` always wins.
        opts.retry_writes = Some(retryable_writes(opts.retry_writes, cfg.embedded));
        opts.retry_reads = Some(true);
        let uri_w = opts.write_concern.take().and_then(|wc| wc.w);
        let w = match (&cfg.write_concern, uri_w) {
            (Some(WriteAck::Nodes(n)), _) => Acknowledgment::Nodes(*n),
            (Some(WriteAck::Majority(_)), _) => Acknowledgment::Majority,
            (None, Some(w)) => w,
            (None, None) if opts.repl_set_name.is_some() => Acknowledgment::Majority,
            (None, None) => Acknowledgment::Nodes(1),
        };
        if w == Acknowledgment::Majority {
            opts.read_concern = Some(ReadConcern::majority());
        }
        opts.write_concern = Some(WriteConcern::builder().w(w).journal(true).build());
        let db = Client::with_options(opts)?.database(&cfg.database);
        let bucket = &storage.bucket;
        Ok(Self {
            files: db.collection(&format!("{bucket}.files")),
            chunks: db.collection(&format!("{bucket}.chunks")),
            names: db.collection(&format!("{bucket}.names")),
            uploads: db.collection(&format!("{bucket}.uploads")),
            tus: db.collection(&format!("{bucket}.tus")),
            revoked: db.collection(&format!("{bucket}.revoked")),
            media: db.collection(&format!("{bucket}.media")),
            media_generations: db.collection(&format!("{bucket}.media_generations")),
            chunk_size: storage.chunk_size,
            read_window: u64::from(storage.chunks_per_read.max(1)),
            node_id: node_id.to_string(),
            // Well inside the grace period, so a live upload is never taken for abandoned.
            heartbeat_every: Duration::from_secs(storage.gc_grace_secs.max(1)).div_f64(4.0),
            background_writes: Arc::new(Semaphore::new(writer::NODE_WRITES_IN_FLIGHT)),
            metrics: Arc::new(StoreMetrics::default()),
            fences: Arc::new(Fences::default()),
            first_read: Arc::default(),
            backfill: Arc::default(),
            db,
        })
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// What this store counted (for `/metrics`).
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Creates the indexes GridFS requires and the ones our queries use. The unique
    /// `{files_id, n}` index is what makes a replayed chunk write harmless.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let index = |keys: Document, opts: Option<IndexOptions>| {
            IndexModel::builder().keys(keys).options(opts).build()
        };
        let unique = IndexOptions::builder().unique(true).build();
        let sparse = IndexOptions::builder().sparse(true).build();
        self.chunks
            .create_index(index(doc! {"files_id": 1, "n": 1}, Some(unique)))
            .await?;
        self.files
            .create_index(index(doc! {"filename": 1, "uploadDate": 1}, None))
            .await?;
        self.files
            .create_index(index(doc! {"metadata.retired_at": 1}, Some(sparse.clone())))
            .await?;
        self.names
            .create_index(index(doc! {"file_id": 1}, None))
            .await?;
        self.backfill_name_keys().await?;
        self.names
            .create_index(index(doc! {"name": 1}, None))
            .await?;
        self.uploads
            .create_index(index(doc! {"heartbeat_at": 1}, None))
            .await?;
        self.tus
            .create_index(index(doc! {"expires_at": 1}, None))
            .await?;
        // The sweep looks for complete uploads not yet published.
        self.tus
            .create_index(index(doc! {"complete": 1, "done": 1}, None))
            .await?;
        // Claimable jobs; and the outputs of a job, found when its source goes.
        self.media
            .create_index(index(doc! {"due_at": 1}, Some(sparse.clone())))
            .await?;
        self.names
            .create_index(index(doc! {"media.source": 1}, Some(sparse)))
            .await?;
        Ok(())
    }

    /// A real read, because a database can answer `ping` while its storage is broken.
    pub async fn check(&self) -> Result<()> {
        let _timer = self.metrics.time("check");
        self.names.find_one(doc! {"_id": "\u{1}healthz"}).await?;
        Ok(())
    }
}

/// A new file id: an ObjectId of 12 random bytes rather than a time-ordered one, so that
/// on a sharded `fs.chunks` (shard key `{files_id: 1, n: 1}`, see the README) new uploads
/// spread over the key's range, hence over the shards, instead of all landing on its last
/// range. Nothing reads a time out of a file id (`uploadDate` says when).
pub(crate) fn new_file_id() -> ObjectId {
    let mut bytes = [0u8; 12];
    match getrandom::fill(&mut bytes) {
        Ok(()) => ObjectId::from_bytes(bytes),
        Err(_) => ObjectId::new(),
    }
}

/// The Content-Type for a name without one: by extension, else octet-stream.
pub fn guess_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// A unique index refused a document (code 11000), from a single write or a batch.
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(many) => many
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_ids_are_not_in_creation_order() {
        let ids: Vec<_> = (0..64).map(|_| super::new_file_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_ne!(
            ids, sorted,
            "64 ids in creation order: time-ordered, not random"
        );
        sorted.dedup();
        assert_eq!(sorted.len(), 64);
    }

    #[test]
    fn writes_are_retryable_except_on_the_embedded_server_unless_the_uri_says() {
        use super::retryable_writes;
        assert!(retryable_writes(None, false), "a real deployment");
        assert!(!retryable_writes(None, true), "the embedded server");
        assert!(retryable_writes(Some(true), true));
        assert!(!retryable_writes(Some(false), false));
    }
}
