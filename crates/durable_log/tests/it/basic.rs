use std::collections::HashMap;

use durable_log::{Log, LogError, Offset};
use tokio::task::JoinSet;

use crate::{config, read_all, record, segment_files, small_segments};

#[tokio::test]
async fn append_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = Log::open(config(dir.path())).unwrap();
    assert_eq!(report.records_recovered, 0);
    assert_eq!(report.next_offset, Offset(0));

    assert_eq!(log.append(b"first".to_vec()).await.unwrap(), Offset(0));
    let offsets = log
        .append_batch(vec![b"second".to_vec(), Vec::new(), b"fourth".to_vec()])
        .await
        .unwrap();
    assert_eq!(offsets, vec![Offset(1), Offset(2), Offset(3)]);
    assert_eq!(log.append_batch(Vec::new()).await.unwrap(), Vec::new());
    assert_eq!(log.next_offset(), Offset(4));

    let records = read_all(&log, 0);
    let expected: Vec<(u64, Vec<u8>)> = vec![
        (0, b"first".to_vec()),
        (1, b"second".to_vec()),
        (2, Vec::new()),
        (3, b"fourth".to_vec()),
    ];
    assert_eq!(records, expected);
    assert_eq!(read_all(&log, 2), expected[2..].to_vec());
    assert!(read_all(&log, 4).is_empty());
    assert!(matches!(
        log.read_from(Offset(5)),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    let stats = log.stats();
    assert_eq!(stats.records, 4);
    assert_eq!(stats.appends, 2);
    log.close().unwrap();
}

#[tokio::test]
async fn reopen_after_clean_close_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(config(dir.path())).unwrap();
    for i in 0..10 {
        log.append(record(i)).await.unwrap();
    }
    log.close().unwrap();

    let (log, report) = Log::open(config(dir.path())).unwrap();
    assert_eq!(report.records_recovered, 10);
    assert_eq!(report.next_offset, Offset(10));
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(log.append(record(10)).await.unwrap(), Offset(10));
    drop(log); // dropping the last handle stops the writer too

    let (log, report) = Log::open(config(dir.path())).unwrap();
    assert_eq!(report.records_recovered, 11);
    let records = read_all(&log, 0);
    assert_eq!(records.len(), 11);
    for (i, (offset, payload)) in records.into_iter().enumerate() {
        assert_eq!(offset, i as u64);
        assert_eq!(payload, record(i as u64));
    }
}

#[tokio::test]
async fn append_after_close_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(config(dir.path())).unwrap();
    let other_handle = log.clone();
    log.append(record(0)).await.unwrap();
    log.close().unwrap();
    assert!(matches!(
        other_handle.append(record(1)).await,
        Err(LogError::Closed)
    ));
    // Reading what is durable still works through the remaining handle.
    assert_eq!(read_all(&other_handle, 0).len(), 1);
}

#[tokio::test]
async fn oversized_record_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(config(dir.path())).unwrap();
    let too_big = vec![0u8; durable_log::MAX_RECORD_BYTES + 1];
    assert!(matches!(
        log.append(too_big).await,
        Err(LogError::RecordTooLarge { .. })
    ));
    assert_eq!(log.next_offset(), Offset(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_fsyncs() {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(config(dir.path())).unwrap();

    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let log = log.clone();
        tasks.spawn(async move {
            // Each task keeps its records in flight together, as a source with many devices does.
            let mut appends = JoinSet::new();
            for i in 0..PER_TASK {
                let log = log.clone();
                let payload = format!("task-{task}-record-{i}").into_bytes();
                appends.spawn(async move {
                    let offset = log.append(payload.clone()).await.unwrap();
                    (offset.0, payload)
                });
            }
            let mut acknowledged = Vec::new();
            while let Some(result) = appends.join_next().await {
                acknowledged.push(result.unwrap());
            }
            acknowledged
        });
    }
    let mut acknowledged = HashMap::new();
    while let Some(result) = tasks.join_next().await {
        for (offset, payload) in result.unwrap() {
            assert!(
                acknowledged.insert(offset, payload).is_none(),
                "offset given twice"
            );
        }
    }

    let total = TASKS * PER_TASK;
    assert_eq!(acknowledged.len() as u64, total);
    let stats = log.stats();
    assert_eq!(stats.records, total);
    eprintln!("group commit: {stats:?}");
    assert!(
        stats.fsyncs * 4 <= total,
        "group commit did not group: {} fsyncs for {total} records",
        stats.fsyncs
    );

    let records = tokio::task::spawn_blocking({
        let log = log.clone();
        move || read_all(&log, 0)
    })
    .await
    .unwrap();
    assert_eq!(records.len() as u64, total);
    for (index, (offset, payload)) in records.into_iter().enumerate() {
        assert_eq!(offset, index as u64, "records read out of order");
        assert_eq!(acknowledged[&offset], payload);
    }
    log.close().unwrap();
}

#[tokio::test]
async fn segments_roll_and_retention_removes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    // record(i) is 13 bytes, a frame 21: two frames fit in 50 bytes, a third does not.
    let (log, _) = Log::open(small_segments(dir.path(), 50)).unwrap();
    for i in 0..10 {
        assert_eq!(log.append(record(i)).await.unwrap(), Offset(i));
    }
    let names: Vec<String> = segment_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [0, 2, 4, 6, 8]
            .map(|base| format!("{base:020}.seg"))
            .to_vec()
    );
    assert_eq!(log.stats().segments_rolled, 4);
    let records = read_all(&log, 3);
    assert_eq!(records.first().unwrap().0, 3);
    assert_eq!(records.len(), 7);

    // A record larger than a segment gets a segment of its own.
    let big = vec![7u8; 100];
    assert_eq!(log.append(big.clone()).await.unwrap(), Offset(10));
    assert_eq!(log.append(record(11)).await.unwrap(), Offset(11));
    assert_eq!(read_all(&log, 10)[0].1, big);

    assert_eq!(log.truncate_before(Offset(5)).unwrap(), Offset(4));
    assert_eq!(segment_files(dir.path()).len(), 5);
    assert!(matches!(
        log.read_from(Offset(3)),
        Err(LogError::OffsetTruncated {
            start: Offset(4),
            ..
        })
    ));
    assert_eq!(read_all(&log, 4).len(), 8);
    log.close().unwrap();

    let (log, report) = Log::open(small_segments(dir.path(), 50)).unwrap();
    assert_eq!(report.start_offset, Offset(4));
    assert_eq!(report.next_offset, Offset(12));
    assert_eq!(log.append(record(12)).await.unwrap(), Offset(12));
}

#[tokio::test]
async fn reader_follows_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(small_segments(dir.path(), 50)).unwrap();
    log.append(record(0)).await.unwrap();
    let mut reader = log.read_from(Offset(0)).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().0, Offset(0));
    assert!(reader.next().is_none());
    for i in 1..6 {
        log.append(record(i)).await.unwrap();
    }
    let rest: Vec<u64> = reader.by_ref().map(|r| r.unwrap().0.0).collect();
    assert_eq!(rest, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn failed_write_stops_appends_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(small_segments(dir.path(), 50)).unwrap();
    log.append(record(0)).await.unwrap();
    log.append(record(1)).await.unwrap();
    // The next record rolls to segment 2; a file already there makes the roll fail.
    std::fs::write(dir.path().join(format!("{:020}.seg", 2)), b"").unwrap();

    assert!(matches!(
        log.append(record(2)).await,
        Err(LogError::WriterFailed(_))
    ));
    assert!(matches!(
        log.append(record(3)).await,
        Err(LogError::WriterFailed(_))
    ));
    assert_eq!(log.next_offset(), Offset(2));
    assert_eq!(read_all(&log, 0).len(), 2);
    assert!(matches!(log.close(), Err(LogError::WriterFailed(_))));
}

#[tokio::test]
async fn close_completes_queued_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(config(dir.path())).unwrap();
    let mut appends = JoinSet::new();
    for i in 0..200 {
        let log = log.clone();
        appends.spawn(async move { (i, log.append(record(i)).await) });
    }
    // Close from a blocking thread while appends are in flight.
    let closer = log.clone();
    drop(log);
    tokio::task::spawn_blocking(move || closer.close())
        .await
        .unwrap()
        .unwrap();

    let mut acknowledged = Vec::new();
    while let Some(result) = appends.join_next().await {
        match result.unwrap() {
            (i, Ok(offset)) => acknowledged.push((offset.0, record(i))),
            (_, Err(LogError::Closed)) => {}
            (_, Err(other)) => panic!("unexpected error {other}"),
        }
    }
    let (log, _) = Log::open(config(dir.path())).unwrap();
    let records = read_all(&log, 0);
    for (offset, payload) in acknowledged {
        assert_eq!(records[offset as usize], (offset, payload));
    }
}
