//! Integration tests of the durable log: one test binary, modules by concern.

mod basic;
mod crash;
mod recovery;

use std::path::{Path, PathBuf};

use durable_log::{Log, LogConfig, Offset};

pub fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir)
}

pub fn small_segments(dir: &Path, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..LogConfig::new(dir)
    }
}

pub fn read_all(log: &Log, from: u64) -> Vec<(u64, Vec<u8>)> {
    log.read_from(Offset(from))
        .unwrap()
        .map(|item| {
            let (offset, payload) = item.unwrap();
            (offset.0, payload)
        })
        .collect()
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

pub fn record(i: u64) -> Vec<u8> {
    format!("record-{i:06}").into_bytes()
}
