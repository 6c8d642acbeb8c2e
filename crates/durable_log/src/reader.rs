//! Reading durable records back, for replay.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::frame::{self, Frame};
use crate::segment::{io_error, list_segments, segment_path};
use crate::{LogError, Offset, Shared};

/// A blocking iterator of `(offset, payload)` over durable records, in offset order.
///
/// It yields only records that are durable (acknowledged or about to be), never a record that a
/// crash could still take away. When it reaches the durable end it returns `None`; calling
/// `next` again later yields records appended since, so it can follow the log.
/// Run it on a blocking thread (`spawn_blocking`), not on an async task.
pub struct LogReader {
    shared: Arc<Shared>,
    next_offset: u64,
    segment: Option<(PathBuf, BufReader<File>)>,
    position: u64,
    failed: bool,
}

fn open_segment(path: &Path) -> Result<BufReader<File>, LogError> {
    let file =
        File::open(path).map_err(io_error(format!("cannot open segment {}", path.display())))?;
    Ok(BufReader::with_capacity(1 << 16, file))
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>, from: Offset) -> Result<LogReader, LogError> {
        let durable_next = shared.durable_next.load(Ordering::Acquire);
        if from.0 > durable_next {
            return Err(LogError::OffsetOutOfRange {
                requested: from,
                end: Offset(durable_next),
            });
        }
        let segments = list_segments(&shared.dir)?;
        let start = segments.first().map_or(0, |s| s.base);
        if from.0 < start {
            return Err(LogError::OffsetTruncated {
                requested: from,
                start: Offset(start),
            });
        }
        let segment = segments
            .iter()
            .rev()
            .find(|s| s.base <= from.0)
            .ok_or_else(|| {
                LogError::InvalidLayout(format!("no segment holds offset {}", from.0))
            })?;
        let mut reader = LogReader {
            next_offset: segment.base,
            segment: Some((segment.path.clone(), open_segment(&segment.path)?)),
            shared,
            position: 0,
            failed: false,
        };
        // No index yet: skip forward within the segment (at most one segment of reading).
        while reader.next_offset < from.0 {
            match reader.next() {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => unreachable!("records below the durable end are always readable"),
            }
        }
        Ok(reader)
    }

    /// The offset of the record the next call to `next` yields.
    pub fn next_offset(&self) -> Offset {
        Offset(self.next_offset)
    }

    fn read_next(&mut self) -> Result<(Offset, Vec<u8>), LogError> {
        // Two rounds at most: the end of one segment, then the start of the next.
        for _ in 0..2 {
            let (path, reader) = match &mut self.segment {
                Some(segment) => segment,
                None => unreachable!("reader always holds a segment"),
            };
            let frame = frame::decode(reader)
                .map_err(io_error(format!("cannot read segment {}", path.display())))?;
            match frame {
                Frame::Record(payload) => {
                    let offset = Offset(self.next_offset);
                    self.next_offset += 1;
                    self.position += (frame::HEADER_BYTES + payload.len()) as u64;
                    return Ok((offset, payload));
                }
                Frame::End => {
                    // The record is durable, so it is in the segment that starts with it.
                    let path = segment_path(&self.shared.dir, self.next_offset);
                    let reader = open_segment(&path)?;
                    self.segment = Some((path, reader));
                    self.position = 0;
                }
                Frame::Torn(reason) => {
                    return Err(LogError::Corrupt {
                        segment: path.clone(),
                        position: self.position,
                        reason,
                    });
                }
            }
        }
        Err(LogError::InvalidLayout(format!(
            "durable record {} is in no segment",
            self.next_offset
        )))
    }
}

impl Iterator for LogReader {
    type Item = Result<(Offset, Vec<u8>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next_offset >= self.shared.durable_next.load(Ordering::Acquire) {
            return None;
        }
        let item = self.read_next();
        // After an error the position in the file is unknown: stop rather than guess.
        self.failed = item.is_err();
        Some(item)
    }
}
