//! `metaward import PATH...`: loads FHIR R4 JSON files (transaction, batch and collection
//! Bundles, single resources; a directory means its `*.json` files) into the medical record of
//! a data directory, with a progress bar on stderr and a summary at the end.
//!
//! It writes the data directory's SQL store directly rather than going through a server's HTTP
//! API: a bulk load needs no running server, skips JSON-over-HTTP, and each file is one SQL
//! transaction (a transaction Bundle is kept whole or not at all). SQLite's locking makes it
//! safe next to a server using the same directory (the server waits while a file commits), but
//! the intended use is before `serve`, or against another directory. Importing the same files
//! again creates nothing twice (see `record::bundle`).

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use record::ImportSummary;
use serde_json::Value;
use store::Store;

use crate::config::ListenArgs;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// FHIR R4 JSON files, or directories of them
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Data directory whose SQL store receives the record [default: ./metaward-data]
    #[arg(long, env = "METAWARD_DATA")]
    data: Option<PathBuf>,
    /// TOML configuration file (its `data` applies)
    #[arg(long, env = "METAWARD_CONFIG")]
    config: Option<PathBuf>,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    // The same layering as `serve`, so both find the same directory.
    let data_dir = ListenArgs {
        data: args.data,
        config: args.config,
        ..ListenArgs::default()
    }
    .resolve()?
    .data_dir;
    let files = collect_files(&args.paths)?;
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<ImportReport> {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let mut store =
            Store::open(data_dir.join("metaward.sqlite")).context("opening the SQL store")?;
        let mut bar = ProgressBar::new(&files);
        let report = import_files(&mut store, &files, &mut |done| bar.update(done));
        bar.finish();
        Ok(report)
    })
    .await??;
    print!("{}", report.summary.render());
    println!(
        "{} files, {} entries in {:.1} s ({:.0} entries/s)",
        report.files,
        report.entries,
        report.elapsed.as_secs_f64(),
        report.entries_per_second()
    );
    let rejected = report.summary.total(4);
    anyhow::ensure!(
        rejected == 0,
        "{rejected} entries were rejected (reasons above)"
    );
    Ok(())
}

/// What an import did.
pub struct ImportReport {
    pub summary: ImportSummary,
    pub files: usize,
    /// Bundle entries and single resources processed (whatever their outcome).
    pub entries: u64,
    pub elapsed: Duration,
}

impl ImportReport {
    pub fn entries_per_second(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Files to import: each path, or the `*.json` files of a directory (sorted, not recursive).
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{} is neither a file nor a directory", path.display());
        }
    }
    Ok(files)
}

/// Progress after each file: (files done, entries done).
pub struct Done {
    pub files: usize,
    pub bytes: u64,
    pub entries: u64,
}

/// Imports each file in its own SQL transaction. A file that cannot be read or is refused
/// whole is counted as rejected with its reason; the rest go on.
pub fn import_files(
    store: &mut Store,
    files: &[PathBuf],
    progress: &mut dyn FnMut(&Done),
) -> ImportReport {
    let started = Instant::now();
    let mut summary = ImportSummary::default();
    let mut done = Done {
        files: 0,
        bytes: 0,
        entries: 0,
    };
    for file in files {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match std::fs::read(file) {
            Err(error) => summary.reject(
                &["unknown".into()],
                &format!("{name}: cannot read: {error}"),
            ),
            Ok(bytes) => {
                done.bytes += bytes.len() as u64;
                done.entries += import_one(store, &name, &bytes, &mut summary);
            }
        }
        done.files += 1;
        progress(&done);
    }
    ImportReport {
        summary,
        files: files.len(),
        entries: done.entries,
        elapsed: started.elapsed(),
    }
}

/// Imports one file's JSON; returns how many entries (or resources) it held.
fn import_one(store: &mut Store, name: &str, bytes: &[u8], summary: &mut ImportSummary) -> u64 {
    let now_ms = server::pipeline::now().millis();
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            summary.reject(&["unknown".into()], &format!("{name}: not JSON: {error}"));
            return 0;
        }
    };
    let mut new_id = store::fhir_record::new_resource_id;
    if value["resourceType"] == "Bundle" {
        let types = record::bundle::entry_types(&value);
        match store.fhir_import_bundle(&value, now_ms, &mut new_id) {
            Ok((_, outcomes)) => {
                summary.add(&outcomes);
                follow_encounters(store, &outcomes);
            }
            Err(error) => summary.reject(&types, &format!("{name}: {}", describe(&error))),
        }
        types.len() as u64
    } else {
        let resource_type = value["resourceType"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        match store.fhir_import_resource(&value, now_ms, &mut new_id) {
            Ok(outcome) => {
                summary.add(std::slice::from_ref(&outcome));
                follow_encounters(store, &[outcome]);
            }
            Err(error) => {
                summary.reject(&[resource_type], &format!("{name}: {}", describe(&error)))
            }
        }
        1
    }
}

/// Encounters imported at one of the ward's beds admit and discharge, as through `/fhir`
/// (`server::record_ward`); the server reads the beds and the record when it starts.
fn follow_encounters(store: &mut Store, outcomes: &[record::EntryOutcome]) {
    let encounters: Vec<String> = outcomes
        .iter()
        .filter(|outcome| outcome.resource_type == "Encounter")
        .filter(|outcome| {
            matches!(
                outcome.result,
                record::EntryResult::Created | record::EntryResult::Updated
            )
        })
        .filter_map(|outcome| outcome.id.clone())
        .collect();
    if let Err(error) =
        server::record_ward::apply_encounters(store, &encounters, server::pipeline::now())
    {
        tracing::error!(%error, "imported encounters could not be applied to the beds");
    }
}

fn describe(error: &record::RecordError) -> String {
    match &error.expression {
        Some(at) => format!("{} (HTTP {}, {at})", error.message, error.status),
        None => format!("{} (HTTP {})", error.message, error.status),
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal (logs and CI
/// output stay clean), at most ten times a second.
struct ProgressBar {
    enabled: bool,
    total_files: usize,
    total_bytes: u64,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl ProgressBar {
    fn new(files: &[PathBuf]) -> ProgressBar {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            total_files: files.len(),
            total_bytes: files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum(),
            started: Instant::now(),
            last_drawn: None,
        }
    }

    fn update(&mut self, done: &Done) {
        if !self.enabled
            || (done.files < self.total_files
                && self
                    .last_drawn
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(100)))
        {
            return;
        }
        self.last_drawn = Some(Instant::now());
        const WIDTH: usize = 30;
        let fraction = done.bytes as f64 / self.total_bytes.max(1) as f64;
        let filled = ((fraction * WIDTH as f64) as usize).min(WIDTH);
        let rate = done.entries as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r[{}{}] {:>3.0}%  {}/{} files  {} entries  {:.0}/s ",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            fraction * 100.0,
            done.files,
            self.total_files,
            done.entries,
            rate
        );
        let _ = stderr.flush();
    }

    fn finish(&self) {
        if self.enabled && self.last_drawn.is_some() {
            eprintln!();
        }
    }
}

/// `metaward bench --import DIR`: imports `dir` into a fresh store twice (the second time
/// everything is found unchanged) and prints entries per second for each pass, then times a
/// search per patient.
pub async fn bench(dir: &Path) -> anyhow::Result<()> {
    let files = collect_files(&[dir.to_path_buf()])?;
    anyhow::ensure!(!files.is_empty(), "no *.json files in {}", dir.display());
    let data = std::env::temp_dir().join(format!("metaward-bench-import-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let (first, second, (n_searches, search_seconds)) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || -> anyhow::Result<(ImportReport, ImportReport, (usize, f64))> {
            let mut store = Store::open(data.join("metaward.sqlite"))?;
            let first = import_files(&mut store, &files, &mut |_| {});
            let second = import_files(&mut store, &files, &mut |_| {});
            let searches = time_searches(&store)?;
            Ok((first, second, searches))
        }
    })
    .await??;
    let _ = std::fs::remove_dir_all(&data);
    println!("metric                               value");
    println!("files                                {}", first.files);
    println!("entries                              {}", first.entries);
    println!(
        "import entries/s (first)             {:.0}",
        first.entries_per_second()
    );
    println!(
        "re-import entries/s (unchanged)      {:.0}",
        second.entries_per_second()
    );
    println!(
        "rejected                             {}",
        first.summary.total(4)
    );
    let searches_per_second = n_searches as f64 / search_seconds.max(1e-9);
    println!("searches/s (a patient's latest obs.) {searches_per_second:.0}");
    println!(
        "{}",
        serde_json::json!({
            "import_files": first.files,
            "import_entries": first.entries,
            "import_entries_per_s": first.entries_per_second(),
            "reimport_entries_per_s": second.entries_per_second(),
            "created": first.summary.total(0),
            "rejected": first.summary.total(4),
            "reimport_created": second.summary.total(0),
            "searches": n_searches,
            "searches_per_s": searches_per_second,
        })
    );
    Ok(())
}

/// Times, for every Patient, the search a chart opens with: the patient's newest 50
/// Observations with the patient included (`patient=…&_sort=-date&_count=50&_include=…`).
fn time_searches(store: &Store) -> anyhow::Result<(usize, f64)> {
    let all = record::SearchRequest::parse("Patient", &[("_count".into(), "1000".into())])?;
    let patients = store.fhir_search(&all)?.resources;
    let started = Instant::now();
    for patient in &patients {
        let query = [
            ("patient".to_owned(), patient.id.clone()),
            ("_sort".to_owned(), "-date".to_owned()),
            ("_count".to_owned(), "50".to_owned()),
        ];
        let request = record::SearchRequest::parse("Observation", &query)?;
        let page = store.fhir_search(&request)?;
        anyhow::ensure!(page.resources.len() <= 50, "page larger than asked");
    }
    Ok((patients.len(), started.elapsed().as_secs_f64()))
}
