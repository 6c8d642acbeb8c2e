//! Kill a process that is appending with SIGKILL, then check that every record it had been told
//! was durable is there. The child is this test binary re-run with an environment variable.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use durable_log::{Log, Offset};

use crate::{read_all, small_segments};

const CHILD_DIR_VAR: &str = "DURABLE_LOG_CRASH_CHILD_DIR";
const CHILD_TASKS: u64 = 4;
/// Bounded, so an orphaned child stops by itself.
const CHILD_RECORDS_PER_TASK: u64 = 20_000;
const SEGMENT_BYTES: u64 = 4096;
/// Acknowledgements to see before the kill.
const ACKS_BEFORE_KILL: usize = 1500;

/// The child's body; does nothing unless started by `acknowledged_records_survive_sigkill`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (log, _) = Log::open(small_segments(dir.as_ref(), SEGMENT_BYTES)).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..CHILD_TASKS {
            let log = log.clone();
            tasks.spawn(async move {
                for i in 0..CHILD_RECORDS_PER_TASK {
                    let payload = format!("task-{task}-record-{i}");
                    let offsets = if i % 3 == 0 {
                        // Some device messages carry several records.
                        let records = vec![payload.clone().into_bytes(), b"second".to_vec()];
                        log.append_batch(records).await.unwrap()
                    } else {
                        vec![log.append(payload.clone().into_bytes()).await.unwrap()]
                    };
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "ACK {} {payload}", offsets[0]).unwrap();
                    if let Some(second) = offsets.get(1) {
                        writeln!(stdout, "ACK {second} second").unwrap();
                    }
                    stdout.flush().unwrap();
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap();
        }
    });
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let mut acknowledged = BTreeMap::new();
    let mut parse = |line: String| -> usize {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (offset, payload) = rest.split_once(' ').unwrap();
            let offset: u64 = offset.parse().unwrap();
            let previous = acknowledged.insert(offset, payload.as_bytes().to_vec());
            assert!(previous.is_none(), "offset {offset} acknowledged twice");
        }
        acknowledged.len()
    };
    for line in lines.by_ref() {
        if parse(line.unwrap()) >= ACKS_BEFORE_KILL {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child finished before the kill");
    // Lines printed before the kill were acknowledged as well; read them to the end of the pipe.
    for line in lines {
        match line {
            Ok(line) => parse(line),
            Err(_) => break, // a line cut by the kill
        };
    }
    assert!(
        acknowledged.len() >= ACKS_BEFORE_KILL,
        "the child stopped early"
    );

    let (log, report) = Log::open(small_segments(dir.path(), SEGMENT_BYTES)).unwrap();
    let last_acknowledged = *acknowledged.keys().next_back().unwrap();
    assert!(report.next_offset > Offset(last_acknowledged));
    assert!(report.segments > 1, "the run should have rolled segments");
    let records: BTreeMap<u64, Vec<u8>> = read_all(&log, 0).into_iter().collect();
    for (offset, payload) in &acknowledged {
        assert_eq!(
            records.get(offset),
            Some(payload),
            "acknowledged offset {offset} lost or changed"
        );
    }
    // The log is usable after the crash.
    let next = report.next_offset;
    let offset = futures_lite_block_on(log.append(b"after the crash".to_vec())).unwrap();
    assert_eq!(offset, next);
}

/// Drives one future to completion on a throwaway runtime (this test is not async itself).
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}
