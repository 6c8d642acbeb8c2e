//! Write-back of device vitals to an external EMR as FHIR R4 Observations (docs/emr.md).
//!
//! A cursor over the durable log, kept in the store (`emr_cursor`, like the projector's
//! checkpoint): read the records after it, turn every numeric value attributed to a patient
//! into an Observation (`fhir::outbound`) with a stable identifier (`{source}/{offset}-{k}`),
//! send them as one transaction Bundle of conditional creates (`ifNoneExist` on that
//! identifier), and move the cursor past them only once the EMR answered 200. An outage, a
//! server error or a refused token is retried with exponential backoff from the same cursor, so
//! nothing is skipped; a batch the EMR kept but whose answer was lost is sent again and matches
//! its conditional creates, so nothing is doubled.
//!
//! When the EMR refuses the transaction for its content (400, 404, 409, 412, 422: a patient it
//! does not know, a value it will not take), retrying would block every later value behind it.
//! The same entries are then sent as a `batch`, each standing on its own: what the EMR takes is
//! delivered, and each value it refuses is kept here as a dead letter (source `emr_push`, with
//! the EMR's status and diagnostics, and the Observation as sent) before the cursor moves on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_log::{Log, Offset};
use serde_json::{Value, json};
use store::Store;
use tokio_util::sync::CancellationToken;

use super::http_client;
use crate::pipeline::{Ingest, now};
use crate::record::{DeadLetter, LogRecord};

/// The identifier system of Observations metaward sends from its devices.
pub const IDENTIFIER_SYSTEM: &str = "https://metaward.dev/fhir/NamingSystem/device-observation";
/// The cursor's name in `emr_cursor`.
pub const CURSOR: &str = "fhir_push";

#[derive(Clone, Debug)]
pub struct FhirPushConfig {
    /// The EMR's FHIR base, `http(s)://host:port/fhir`.
    pub base_url: String,
    pub token: Option<String>,
    /// For https: trust this CA (`[emr] ca_file`) instead of the public roots.
    pub trust: Option<http_client::Trust>,
    /// Names this metaward in identifiers, so two wards' log offsets never collide at the EMR.
    pub source: String,
    /// Log records per batch at most.
    pub max_records: usize,
    /// How often to look for new records when idle.
    pub poll: Duration,
    /// The first and the longest wait between failed attempts.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// How a value's patient is named to the EMR.
    pub link: crate::emr_patient::PatientLink,
}

impl FhirPushConfig {
    pub fn new(base_url: impl Into<String>) -> FhirPushConfig {
        FhirPushConfig {
            base_url: base_url.into(),
            token: None,
            trust: None,
            source: "metaward".into(),
            max_records: 256,
            poll: Duration::from_millis(500),
            backoff_first: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            link: Default::default(),
        }
    }
}

/// One batch read from the log: the entries to send and the cursor after them.
struct Batch {
    entries: Vec<Value>,
    next: u64,
}

/// The Observation sent for the `position`-th value of the log record at `offset`, or `None`
/// for what is not charted in an EMR: waveforms, values on no patient, artefacts.
pub fn pushed_observation(
    catalog: &model::Catalog,
    source: &str,
    offset: u64,
    position: usize,
    attributed: &twin::Attributed,
) -> Option<Value> {
    let observation = &attributed.observation;
    let patient = attributed.attribution.patient.as_ref()?;
    if !matches!(observation.value, model::ObservedValue::Numeric(v) if v.is_finite())
        || observation.quality.is_artefact()
    {
        return None;
    }
    let subject = fhir::outbound::Subject {
        patient: Some(patient.to_string()),
        room: None,
    };
    let mut resource = fhir::outbound::device_observation(catalog, "x", observation, &subject)?;
    let object = resource.as_object_mut()?;
    object.remove("id");
    // The EMR sets its own version and time; the profile stays.
    if let Some(meta) = object.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("lastUpdated");
        if meta.is_empty() {
            object.remove("meta");
        }
    }
    // The EMR does not hold our Device resources: a reference to one would dangle (and servers
    // that check references refuse it). The identifier says the value is metaward's.
    object.remove("device");
    object.insert(
        "identifier".into(),
        json!([{"system": IDENTIFIER_SYSTEM, "value": format!("{source}/{offset}-{position}")}]),
    );
    Some(resource)
}

fn read_batch(
    log: &Log,
    catalog: &model::Catalog,
    config: &FhirPushConfig,
    from: u64,
) -> anyhow::Result<Batch> {
    let mut reader = log.read_from(Offset(from))?;
    let mut entries = Vec::new();
    let mut next = from;
    for item in reader.by_ref().take(config.max_records) {
        let (offset, bytes) = item?;
        next = offset.0 + 1;
        let Ok(record) = LogRecord::decode(&bytes) else {
            continue;
        };
        if matches!(record, LogRecord::DeadLetter(_)) {
            continue;
        }
        let values = record
            .into_observation_records()
            .into_iter()
            .flat_map(|record| record.observations);
        for (position, attributed) in values.enumerate() {
            let Some(mut resource) =
                pushed_observation(catalog, &config.source, offset.0, position, &attributed)
            else {
                continue;
            };
            if let Some(patient) = &attributed.attribution.patient {
                resource["subject"]["reference"] =
                    json!(config.link.subject_reference(patient.as_str()));
            }
            let identifier = &resource["identifier"][0];
            let if_none_exist = format!(
                "identifier={}|{}",
                IDENTIFIER_SYSTEM,
                identifier["value"].as_str().unwrap_or_default()
            );
            entries.push(json!({
                "resource": resource,
                "request": {"method": "POST", "url": "Observation", "ifNoneExist": if_none_exist},
            }));
        }
    }
    Ok(Batch { entries, next })
}

/// Why a transaction was not delivered.
#[derive(Debug)]
enum NotDelivered {
    /// The EMR refused its content: retrying the same transaction cannot succeed.
    Refused(u16),
    /// An outage, a server error, a refused token: worth retrying as it is.
    Retry(anyhow::Error),
}

/// A value the EMR refused in a batch: the entry as sent and why.
struct RefusedValue {
    entry: Value,
    status: String,
    diagnostics: String,
}

/// POSTs one Bundle of `kind` and returns the EMR's answer Bundle.
async fn post_bundle(
    config: &FhirPushConfig,
    kind: &str,
    entries: &[Value],
) -> Result<Value, NotDelivered> {
    let retry = |error: anyhow::Error| NotDelivered::Retry(error);
    let (authority, path) = http_client::split_url_with(&config.base_url, config.trust.as_ref())
        .map_err(|e| retry(e.into()))?;
    let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
    let body = serde_json::to_vec(&bundle).map_err(|e| retry(e.into()))?;
    let response = http_client::request(
        &authority,
        "POST",
        if path.is_empty() { "/" } else { &path },
        config.token.as_deref(),
        Some(&body),
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| retry(e.into()))?;
    match response.status {
        200 => {}
        status @ (400 | 404 | 409 | 412 | 422) => return Err(NotDelivered::Refused(status)),
        status => return Err(retry(anyhow::anyhow!("the emr answered {status}"))),
    }
    let answer: Value = serde_json::from_slice(&response.body).map_err(|e| retry(e.into()))?;
    if answer["type"] != format!("{kind}-response") {
        return Err(retry(anyhow::anyhow!(
            "the emr did not answer with a {kind}-response"
        )));
    }
    Ok(answer)
}

/// Sends the entries as a transaction; when the EMR refuses it for its content, as a batch,
/// returning the values it refused one by one.
async fn send(config: &FhirPushConfig, entries: Vec<Value>) -> anyhow::Result<Vec<RefusedValue>> {
    match post_bundle(config, "transaction", &entries).await {
        Ok(_) => return Ok(Vec::new()),
        Err(NotDelivered::Retry(error)) => return Err(error),
        Err(NotDelivered::Refused(status)) => {
            tracing::warn!(
                status,
                entries = entries.len(),
                "the emr refused a transaction; sending its values one by one"
            );
        }
    }
    let answer = match post_bundle(config, "batch", &entries).await {
        Ok(answer) => answer,
        Err(NotDelivered::Retry(error)) => return Err(error),
        Err(NotDelivered::Refused(status)) => {
            anyhow::bail!("the emr refused a batch as a whole ({status})")
        }
    };
    let answers = answer["entry"].as_array().cloned().unwrap_or_default();
    if answers.len() != entries.len() {
        anyhow::bail!(
            "the emr answered {} entries for a batch of {}",
            answers.len(),
            entries.len()
        );
    }
    Ok(entries
        .into_iter()
        .zip(answers)
        .filter_map(|(entry, answer)| {
            let status = answer["response"]["status"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if status.starts_with('2') {
                return None;
            }
            let diagnostics = answer["response"]["outcome"]["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            Some(RefusedValue {
                entry,
                status,
                diagnostics,
            })
        })
        .collect())
}

/// Keeps each refused value as a dead letter (durable in the log before the cursor moves).
async fn keep_refused(
    ingest: &Ingest,
    config: &FhirPushConfig,
    refused: Vec<RefusedValue>,
) -> anyhow::Result<()> {
    for value in refused {
        let code = value.status.split(' ').next().unwrap_or("").to_owned();
        let dead = DeadLetter {
            source: SOURCE.into(),
            origin: format!("{}/Observation", config.base_url),
            received_ms: now().millis(),
            reason: format!("emr_refused_{code}"),
            detail: format!("the emr answered {}: {}", value.status, value.diagnostics),
            raw: serde_json::to_vec(&value.entry["resource"])?,
        };
        ingest.dead_letter(dead).await?;
    }
    Ok(())
}

/// The source label of refused write-backs in dead letters and metrics.
pub const SOURCE: &str = "emr_push";

fn store_call<T>(store: &Mutex<Store>, call: impl FnOnce(&mut Store) -> T) -> T {
    call(&mut store.lock().expect("store lock"))
}

/// The task: follows the log from the cursor until `shutdown`.
pub async fn run(
    config: FhirPushConfig,
    log: Log,
    store: Arc<Mutex<Store>>,
    catalog: &'static model::Catalog,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let metrics = ingest.metrics().clone();
    let mut backoff = config.backoff_first;
    loop {
        let cursor = {
            let (store, log) = (store.clone(), log.clone());
            tokio::task::spawn_blocking(move || {
                store_call(&store, |store| -> anyhow::Result<u64> {
                    Ok(match store.emr_cursor(CURSOR)? {
                        Some(offset) => offset,
                        // Enabled now: what arrives from now on is sent, not the whole past.
                        None => {
                            let start = log.next_offset().0;
                            store.set_emr_cursor(CURSOR, start, now().millis())?;
                            start
                        }
                    })
                })
            })
            .await
        };
        let cursor = match cursor {
            Ok(Ok(cursor)) => cursor,
            other => {
                tracing::error!(problem = ?other.err().map(|e| e.to_string()), "emr push cannot read its cursor");
                if sleep_or_stop(&shutdown, config.backoff_max).await {
                    return;
                }
                continue;
            }
        };
        if cursor >= log.next_offset().0 {
            if sleep_or_stop(&shutdown, config.poll).await {
                return;
            }
            continue;
        }
        let batch = {
            let (log, config) = (log.clone(), config.clone());
            tokio::task::spawn_blocking(move || read_batch(&log, catalog, &config, cursor)).await
        };
        let batch = match batch {
            Ok(Ok(batch)) => batch,
            other => {
                tracing::error!(problem = ?other.err().map(|e| e.to_string()), "emr push cannot read the log");
                if sleep_or_stop(&shutdown, config.backoff_max).await {
                    return;
                }
                continue;
            }
        };
        let n_entries = batch.entries.len();
        let delivered = if batch.entries.is_empty() {
            Ok(Vec::new())
        } else {
            send(&config, batch.entries).await
        };
        // Refused values are kept before the cursor passes them; if they cannot be, the batch
        // is sent again (what the EMR took matches its conditional creates).
        let delivered = match delivered {
            Ok(refused) if refused.is_empty() => Ok(0),
            Ok(refused) => {
                let count = refused.len();
                keep_refused(&ingest, &config, refused)
                    .await
                    .map(|()| count)
            }
            Err(error) => Err(error),
        };
        match delivered {
            Ok(n_refused) => {
                let n_entries = n_entries - n_refused;
                backoff = config.backoff_first;
                let (store, next) = (store.clone(), batch.next);
                let moved = tokio::task::spawn_blocking(move || {
                    store_call(&store, |store| {
                        store.set_emr_cursor(CURSOR, next, now().millis())
                    })
                })
                .await;
                if !matches!(moved, Ok(Ok(()))) {
                    tracing::error!("emr push could not move its cursor; the batch will be resent");
                }
                metrics.emr_pushed(n_entries);
            }
            Err(error) => {
                tracing::warn!(%error, entries = n_entries, retry_in_ms = backoff.as_millis() as u64, "emr push failed; retrying");
                metrics.emr_push_failed();
                if sleep_or_stop(&shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(config.backoff_max);
            }
        }
    }
}

/// Waits `duration`; true if the server is shutting down.
async fn sleep_or_stop(shutdown: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.cancelled() => true,
    }
}
