//! The durable log: an append-only, checksummed, segmented log with group commit. It is the
//! source of truth for device data; the live twin and the stored projections are rebuilt by
//! replaying it.
//!
//! Contract: an append resolves only after its records are written and `sync_data` has returned,
//! so a source acknowledges a device (MQTT PUBACK, HL7 ACK, HTTP 201) only on a resolved append.
//! This crate must never resolve an append before its data is durable, never hand a reader a
//! record that is not durable yet, and never skip damaged data silently: only the unsynced tail
//! that a crash leaves at the end of the last segment is cut off, and that is reported.
//!
//! Delivery is at-least-once: a record can be durable without its append having resolved (a crash
//! between `sync_data` and the answer, a dropped future), so a device may resend it and replay
//! must tolerate duplicates.
//!
//! # On disk
//!
//! A directory of segments, each named by the offset of its first record, zero-padded to 20
//! digits: `00000000000000000000.seg`, `00000000000000001742.seg`, ... A segment is a sequence of
//! frames `[len u32 LE][crc32 u32 LE][payload]`, no header; the CRC-32 (IEEE) covers the length
//! bytes and the payload. A segment rolls when the next frame would take it past
//! `segment_bytes` (a single larger record gets a segment of its own).
//!
//! Offsets are record sequence numbers (0, 1, 2, ...), not byte positions: the `n`-th record ever
//! appended has offset `n`, and offsets stay stable when old segments are removed.
//!
//! # Threads
//!
//! One writer thread (`std::thread`, since fsync blocks) owns the files. Appenders queue requests
//! on a bounded channel (backpressure: `append` waits while the queue is full) and await a
//! `tokio::sync::oneshot`; both are runtime-agnostic, so the crate needs no tokio runtime.

mod frame;
mod reader;
mod segment;
mod writer;

use std::fmt;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub use frame::MAX_RECORD_BYTES;
pub use reader::LogReader;

use segment::io_error;
use writer::{Request, Writer};

/// The position of a record: its sequence number in the log, starting at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt record in segment {} at byte {position}: {reason}", segment.display())]
    Corrupt {
        segment: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("invalid log layout: {0}")]
    InvalidLayout(String),
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    #[error("offset {requested} was removed by retention, the log starts at {start}")]
    OffsetTruncated { requested: Offset, start: Offset },
    #[error("offset {requested} is past the durable end of the log at {end}")]
    OffsetOutOfRange { requested: Offset, end: Offset },
    #[error("log is closed")]
    Closed,
    #[error("log writer failed and accepts no more appends: {0}")]
    WriterFailed(String),
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// A segment rolls when the next record would take it past this size.
    pub segment_bytes: u64,
    /// The writer stops taking queued requests into one fsync group once it holds this many
    /// records; a single `append_batch` is never split.
    pub max_batch_records: usize,
    /// Requests that may wait for the writer before `append` itself waits (backpressure).
    pub queue_capacity: usize,
}

impl LogConfig {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_MAX_BATCH_RECORDS: usize = 4096;
    pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_batch_records: Self::DEFAULT_MAX_BATCH_RECORDS,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
        }
    }

    fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes == 0 {
            return Err(LogError::InvalidConfig(
                "segment_bytes must be positive".into(),
            ));
        }
        if self.max_batch_records == 0 {
            return Err(LogError::InvalidConfig(
                "max_batch_records must be positive".into(),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(LogError::InvalidConfig(
                "queue_capacity must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What `Log::open` found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// The first offset still on disk (above 0 once retention removed segments).
    pub start_offset: Offset,
    /// The offset the next appended record gets.
    pub next_offset: Offset,
    /// Whole, checksummed records found.
    pub records_recovered: u64,
    /// Bytes of a torn or damaged tail cut off the last segment (never acknowledged data).
    pub truncated_bytes: u64,
    pub truncated_segment: Option<PathBuf>,
    pub truncated_reason: Option<String>,
}

/// Counters since open, for metrics and benchmarks (`records / fsyncs` is the group-commit gain).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records made durable.
    pub records: u64,
    /// `append` and `append_batch` calls made durable.
    pub appends: u64,
    /// Group commits: write-then-sync rounds of the writer.
    pub batches: u64,
    /// `sync_data` calls (one per batch, plus one per segment roll inside a batch).
    pub fsyncs: u64,
    /// Bytes written, frames included.
    pub bytes: u64,
    pub segments_rolled: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    appends: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
    segments_rolled: AtomicU64,
}

/// State shared by the handles, the writer and the readers.
pub(crate) struct Shared {
    dir: PathBuf,
    /// One past the last record that is synced: readers never go beyond it.
    durable_next: AtomicU64,
    stats: Counters,
    /// Serializes retention, so two calls never race over the same files.
    retention: Mutex<()>,
}

struct Inner {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<Option<String>>>>,
}

impl Inner {
    fn shutdown(&self) -> Result<(), LogError> {
        // Dropping our sender lets the writer finish what is queued, then stop once the last
        // in-flight append has handed over its request.
        drop(lock(&self.sender).take());
        let Some(handle) = lock(&self.writer).take() else {
            return Ok(());
        };
        match handle.join() {
            Ok(None) => Ok(()),
            Ok(Some(failure)) => Err(LogError::WriterFailed(failure)),
            Err(_) => Err(LogError::WriterFailed("writer thread panicked".into())),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A handle on the log. Clones share one writer; the writer stops when `close` is called or the
/// last handle is dropped (dropping blocks until queued appends are durable).
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl Log {
    /// Opens (or creates) the log in `config.dir`, recovers it, and starts the writer thread.
    /// Blocking: call it before serving, or from `spawn_blocking`.
    ///
    /// Only one process may open a directory at a time; nothing enforces that yet.
    pub fn open(config: LogConfig) -> Result<(Log, RecoveryReport), LogError> {
        config.validate()?;
        if !config.dir.is_dir() {
            std::fs::create_dir_all(&config.dir).map_err(io_error(format!(
                "cannot create log directory {}",
                config.dir.display()
            )))?;
            // Make the new directory's own entry durable, not only the files in it.
            if let Some(parent) = config.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let recovered = segment::recover(&config.dir)?;
        let last = &recovered.last_segment;
        let file = OpenOptions::new()
            .append(true)
            .open(&last.path)
            .map_err(io_error(format!(
                "cannot open segment {}",
                last.path.display()
            )))?;

        let next_offset = recovered.report.next_offset.0;
        let shared = Arc::new(Shared {
            dir: config.dir.clone(),
            durable_next: AtomicU64::new(next_offset),
            stats: Counters::default(),
            retention: Mutex::new(()),
        });
        let writer = Writer {
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            max_batch_records: config.max_batch_records,
            file,
            segment_path: last.path.clone(),
            segment_size: recovered.last_segment_bytes,
            next_offset,
            shared: shared.clone(),
            failure: None,
            buffer: Vec::new(),
        };
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("durable-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error("cannot start the log writer thread"))?;
        let log = Log {
            inner: Arc::new(Inner {
                shared,
                sender: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
            }),
        };
        Ok((log, recovered.report))
    }

    /// Appends one record; resolves with its offset once it is durable.
    ///
    /// Dropping the future does not cancel the write: the record may become durable anyway.
    pub async fn append(&self, record: Vec<u8>) -> Result<Offset, LogError> {
        let offsets = self.append_batch(vec![record]).await?;
        Ok(offsets[0])
    }

    /// Appends records with consecutive offsets, made durable by the same `sync_data`; resolves
    /// once all of them are durable. A crash before then may leave a prefix of them on disk
    /// (never acknowledged).
    pub async fn append_batch(&self, records: Vec<Vec<u8>>) -> Result<Vec<Offset>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(record) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(LogError::RecordTooLarge {
                len: record.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let sender = lock(&self.inner.sender).clone().ok_or(LogError::Closed)?;
        let (done, answer) = oneshot::channel();
        sender
            .send(Request { records, done })
            .await
            .map_err(|_| LogError::Closed)?;
        drop(sender);
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Reads durable records from `from` on. Blocking (opens files and skips within a segment);
    /// call it from `spawn_blocking` in async code.
    pub fn read_from(&self, from: Offset) -> Result<LogReader, LogError> {
        LogReader::new(self.inner.shared.clone(), from)
    }

    /// One past the last durable record: the offset the next record gets once queued appends
    /// are done.
    pub fn next_offset(&self) -> Offset {
        Offset(self.inner.shared.durable_next.load(Ordering::Acquire))
    }

    /// Retention: removes whole segments all of whose records are below `offset`, oldest first.
    /// The last segment is never removed. Returns the first offset still on disk. Blocking.
    pub fn truncate_before(&self, offset: Offset) -> Result<Offset, LogError> {
        let shared = &self.inner.shared;
        let _guard = lock(&shared.retention);
        let limit = offset.0.min(shared.durable_next.load(Ordering::Acquire));
        let segments = segment::list_segments(&shared.dir)?;
        let mut start = segments.first().map_or(0, |s| s.base);
        let mut removed_any = false;
        for pair in segments.windows(2) {
            let (segment, following) = (&pair[0], &pair[1]);
            if following.base > limit {
                break;
            }
            // Oldest first, so a crash part way leaves a contiguous log.
            std::fs::remove_file(&segment.path).map_err(io_error(format!(
                "cannot remove segment {}",
                segment.path.display()
            )))?;
            removed_any = true;
            start = following.base;
        }
        if removed_any {
            segment::sync_dir(&shared.dir)?;
        }
        Ok(Offset(start))
    }

    pub fn stats(&self) -> LogStats {
        let counters = &self.inner.shared.stats;
        LogStats {
            records: counters.records.load(Ordering::Relaxed),
            appends: counters.appends.load(Ordering::Relaxed),
            batches: counters.batches.load(Ordering::Relaxed),
            fsyncs: counters.fsyncs.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            segments_rolled: counters.segments_rolled.load(Ordering::Relaxed),
        }
    }

    /// Stops the log for every handle: queued appends are completed, later ones fail with
    /// `LogError::Closed`. Blocks until the writer has stopped; returns its failure, if any.
    pub fn close(self) -> Result<(), LogError> {
        self.inner.shutdown()
    }
}
