use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use durable_log::{Log, LogError, Offset};

use crate::{config, read_all, record, segment_files, small_segments};

async fn log_with_records(dir: &std::path::Path, n: u64, segment_bytes: u64) {
    let (log, _) = Log::open(small_segments(dir, segment_bytes)).unwrap();
    for i in 0..n {
        log.append(record(i)).await.unwrap();
    }
    log.close().unwrap();
}

#[tokio::test]
async fn partial_record_at_the_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path(), 10, 1 << 20).await;
    let segment = segment_files(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&segment).unwrap().len();

    // What a crash in the middle of a write leaves: a header and part of a payload.
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, b'p', b'a', b'r'])
        .unwrap();
    drop(file);

    let (log, report) = Log::open(config(dir.path())).unwrap();
    assert_eq!(report.records_recovered, 10);
    assert_eq!(report.truncated_bytes, 11);
    assert_eq!(report.truncated_segment.as_ref(), Some(&segment));
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), clean_len);
    let records = read_all(&log, 0);
    assert_eq!(records.len(), 10);
    assert_eq!(records[9], (9, record(9)));

    assert_eq!(log.append(record(10)).await.unwrap(), Offset(10));
    log.close().unwrap();
    let (log, report) = Log::open(config(dir.path())).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(read_all(&log, 0).len(), 11);
}

#[tokio::test]
async fn zeroed_or_damaged_last_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path(), 5, 1 << 20).await;
    let segment = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();

    // Flip a byte in the payload of the last record, then add zeros after it.
    let mut file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.seek(SeekFrom::Start(len - 1)).unwrap();
    file.write_all(b"X").unwrap();
    file.write_all(&[0u8; 64]).unwrap();
    drop(file);

    let (log, report) = Log::open(config(dir.path())).unwrap();
    assert_eq!(report.records_recovered, 4);
    assert_eq!(report.next_offset, Offset(4));
    assert_eq!(report.truncated_bytes, 21 + 64);
    assert_eq!(
        report.truncated_reason.as_deref(),
        Some("checksum mismatch")
    );
    assert_eq!(read_all(&log, 0).len(), 4);
}

#[tokio::test]
async fn corruption_in_an_earlier_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path(), 10, 50).await;
    let segments = segment_files(dir.path());
    assert!(segments.len() > 2);

    // Flip one payload byte of the second record in the first segment.
    let mut file = OpenOptions::new().write(true).open(&segments[0]).unwrap();
    file.seek(SeekFrom::Start(21 + 8 + 3)).unwrap();
    file.write_all(b"!").unwrap();
    drop(file);

    match Log::open(small_segments(dir.path(), 50)) {
        Err(LogError::Corrupt {
            segment,
            position,
            reason,
        }) => {
            assert_eq!(segment, segments[0]);
            assert_eq!(position, 21);
            assert_eq!(reason, "checksum mismatch");
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("expected a corruption error, the log opened"),
    }
    // Nothing was cut off while failing.
    assert_eq!(std::fs::metadata(&segments[0]).unwrap().len(), 42);
}

#[tokio::test]
async fn missing_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path(), 10, 50).await;
    let segments = segment_files(dir.path());
    std::fs::remove_file(&segments[2]).unwrap();
    assert!(matches!(
        Log::open(small_segments(dir.path(), 50)),
        Err(LogError::InvalidLayout(_))
    ));
}
