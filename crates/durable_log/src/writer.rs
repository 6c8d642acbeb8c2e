//! The single writer thread: group commit.
//!
//! It blocks for the first queued request, takes whatever else is queued (up to
//! `max_batch_records`), writes it all, calls `sync_data` once and only then answers every waiter.
//! It runs on a plain `std::thread` because writes and `fsync` block.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use crate::frame::{self, HEADER_BYTES};
use crate::segment::{io_error, segment_path, sync_dir};
use crate::{LogError, Offset, Shared};

pub(crate) struct Request {
    pub records: Vec<Vec<u8>>,
    pub done: oneshot::Sender<Result<Vec<Offset>, LogError>>,
}

pub(crate) struct Writer {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_batch_records: usize,
    pub file: File,
    pub segment_path: PathBuf,
    /// Bytes in the current segment that are written (and synced, between batches).
    pub segment_size: u64,
    /// Offset the next record gets.
    pub next_offset: u64,
    pub shared: Arc<Shared>,
    /// Set after the first failed write or sync; see `run`.
    pub failure: Option<String>,
    pub buffer: Vec<u8>,
}

impl Writer {
    /// Runs until every sender is dropped. Returns the failure that stopped accepting appends.
    ///
    /// After a failed write or `sync_data` the log stops accepting appends for good: after a
    /// failed fsync the kernel may have dropped the dirty pages, so retrying could acknowledge
    /// data that is not on disk. Reopening the log recovers from what the disk really holds.
    pub fn run(mut self, mut receiver: mpsc::Receiver<Request>) -> Option<String> {
        while let Some(first) = receiver.blocking_recv() {
            let mut n_records = first.records.len();
            let mut batch = vec![first];
            while n_records < self.max_batch_records {
                match receiver.try_recv() {
                    Ok(request) => {
                        n_records += request.records.len();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }

            if let Some(failure) = &self.failure {
                for request in batch {
                    let _ = request
                        .done
                        .send(Err(LogError::WriterFailed(failure.clone())));
                }
                continue;
            }

            match self.write_batch(&batch) {
                Ok(offsets) => {
                    // Publish the durable end before answering, so an acknowledged record is
                    // always visible to readers.
                    self.shared
                        .durable_next
                        .store(self.next_offset, Ordering::Release);
                    let stats = &self.shared.stats;
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats
                        .appends
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.records.fetch_add(n_records as u64, Ordering::Relaxed);
                    for (request, offsets) in batch.into_iter().zip(offsets) {
                        // The appender may have gone away (future dropped); its records are
                        // durable all the same.
                        let _ = request.done.send(Ok(offsets));
                    }
                }
                Err(error) => {
                    let failure = error_chain(&error);
                    self.failure = Some(failure.clone());
                    for request in batch {
                        let _ = request
                            .done
                            .send(Err(LogError::WriterFailed(failure.clone())));
                    }
                }
            }
        }
        self.failure
    }

    fn write_batch(&mut self, batch: &[Request]) -> Result<Vec<Vec<Offset>>, LogError> {
        self.buffer.clear();
        let mut offset = self.next_offset;
        let mut offsets_per_request = Vec::with_capacity(batch.len());
        for request in batch {
            let mut offsets = Vec::with_capacity(request.records.len());
            for record in &request.records {
                let frame_bytes = (HEADER_BYTES + record.len()) as u64;
                let used = self.segment_size + self.buffer.len() as u64;
                // A segment holds at least one record, however large.
                if used > 0 && used + frame_bytes > self.segment_bytes {
                    self.write_and_sync()?;
                    self.roll(offset)?;
                }
                frame::encode(record, &mut self.buffer);
                offsets.push(Offset(offset));
                offset += 1;
            }
            offsets_per_request.push(offsets);
        }
        self.write_and_sync()?;
        self.next_offset = offset;
        Ok(offsets_per_request)
    }

    fn write_and_sync(&mut self) -> Result<(), LogError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let context = || format!("cannot write segment {}", self.segment_path.display());
        self.file
            .write_all(&self.buffer)
            .map_err(io_error(context()))?;
        self.file.sync_data().map_err(io_error(context()))?;
        let stats = &self.shared.stats;
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.segment_size += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Starts a new segment whose first record is `base`. The previous one is already synced, so
    /// on disk every segment but the last is whole.
    fn roll(&mut self, base: u64) -> Result<(), LogError> {
        let path = segment_path(&self.dir, base);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(format!(
                "cannot create segment {}",
                path.display()
            )))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.segment_path = path;
        self.segment_size = 0;
        self.shared
            .stats
            .segments_rolled
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The error with its causes, so the reason (disk full, i/o error) reaches every waiter.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
