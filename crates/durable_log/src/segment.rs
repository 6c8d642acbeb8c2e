//! Segment files: naming, listing, and the recovery scan done on open.
//!
//! A segment is named by the offset of its first record, zero-padded to 20 digits
//! (`00000000000000000042.seg`), so the file that follows a segment ending before offset `n` is
//! always `n.seg`, and a directory listing sorted by name is sorted by offset.

use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::frame::{self, Frame, HEADER_BYTES};
use crate::{LogError, Offset, RecoveryReport};

const SEGMENT_EXTENSION: &str = "seg";

#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    /// Offset of the first record in the segment.
    pub base: u64,
    pub path: PathBuf,
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SEGMENT_EXTENSION}"))
}

pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

/// Segments in `dir`, sorted by base offset. Files that are not segments are left alone.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let entries = fs::read_dir(dir).map_err(io_error(format!(
        "cannot list log directory {}",
        dir.display()
    )))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(format!(
            "cannot list log directory {}",
            dir.display()
        )))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXTENSION) {
            continue;
        }
        let base = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| s.len() == 20)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                LogError::InvalidLayout(format!(
                    "segment file name {} is not a 20-digit offset",
                    path.display()
                ))
            })?;
        segments.push(SegmentFile { base, path });
    }
    segments.sort_by_key(|s| s.base);
    Ok(segments)
}

/// Makes a file creation or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!(
            "cannot sync log directory {}",
            dir.display()
        )))
}

/// The state of the log after recovery, handed to the writer.
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub last_segment: SegmentFile,
    pub last_segment_bytes: u64,
}

/// Scans every segment, checking every checksum and that segments are contiguous.
///
/// Damage at the end of the last segment is what a crash during a write leaves: it was never
/// acknowledged (acknowledgement follows `sync_data`), so it is cut off and reported. Damage
/// anywhere else is an error: those bytes were synced, and skipping them would lose data silently.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, LogError> {
    let mut segments = list_segments(dir)?;
    if segments.is_empty() {
        let path = segment_path(dir, 0);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(format!(
                "cannot create segment {}",
                path.display()
            )))?;
        sync_dir(dir)?;
        segments.push(SegmentFile { base: 0, path });
    }

    let start_offset = segments[0].base;
    let mut next_offset = start_offset;
    let mut records_recovered = 0u64;
    let mut truncated_bytes = 0u64;
    let mut truncated_segment = None;
    let mut last_segment_bytes = 0u64;
    let last_index = segments.len() - 1;

    for (index, segment) in segments.iter().enumerate() {
        if segment.base != next_offset {
            return Err(LogError::InvalidLayout(format!(
                "segment {} starts at offset {} but the previous segments end before offset {}",
                segment.path.display(),
                segment.base,
                next_offset
            )));
        }
        let file = File::open(&segment.path).map_err(io_error(format!(
            "cannot open segment {}",
            segment.path.display()
        )))?;
        let file_bytes = file
            .metadata()
            .map_err(io_error(format!(
                "cannot stat segment {}",
                segment.path.display()
            )))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut position = 0u64;
        loop {
            let frame = frame::decode(&mut reader).map_err(io_error(format!(
                "cannot read segment {}",
                segment.path.display()
            )))?;
            match frame {
                Frame::Record(payload) => {
                    position += (HEADER_BYTES + payload.len()) as u64;
                    next_offset += 1;
                    records_recovered += 1;
                }
                Frame::End => break,
                Frame::Torn(reason) if index == last_index => {
                    let file =
                        OpenOptions::new()
                            .write(true)
                            .open(&segment.path)
                            .map_err(io_error(format!(
                                "cannot open segment {}",
                                segment.path.display()
                            )))?;
                    file.set_len(position)
                        .and_then(|()| file.sync_all())
                        .map_err(io_error(format!(
                            "cannot truncate torn tail of segment {}",
                            segment.path.display()
                        )))?;
                    truncated_bytes = file_bytes - position;
                    truncated_segment = Some((segment.path.clone(), reason));
                    break;
                }
                Frame::Torn(reason) => {
                    return Err(LogError::Corrupt {
                        segment: segment.path.clone(),
                        position,
                        reason,
                    });
                }
            }
        }
        if index == last_index {
            last_segment_bytes = position;
        }
    }

    let (truncated_segment, truncated_reason) = match truncated_segment {
        Some((path, reason)) => (Some(path), Some(reason)),
        None => (None, None),
    };
    Ok(Recovered {
        report: RecoveryReport {
            segments: segments.len(),
            start_offset: Offset(start_offset),
            next_offset: Offset(next_offset),
            records_recovered,
            truncated_bytes,
            truncated_segment,
            truncated_reason,
        },
        last_segment: segments[last_index].clone(),
        last_segment_bytes,
    })
}
