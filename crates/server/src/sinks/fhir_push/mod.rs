//! Write-back of device vitals to an external EMR as FHIR R4 Observations (docs/emr.md).
//!
//! A cursor over the durable log, kept in the store (`emr_cursor`, like the projector's
//! checkpoint): read the records after it, turn every numeric value attributed to a patient
//! into an Observation (`fhir::outbound`) with a stable identifier (`{source}/{offset}-{k}`),
//! send them as one transaction Bundle of conditional creates (`ifNoneExist` on that
//! identifier), and move the cursor past them only once the EMR answered 200. An outage or a
//! refusal is retried with exponential backoff from the same cursor, so nothing is skipped;
//! a batch the EMR kept but whose answer was lost is sent again and matches its conditional
//! creates, so nothing is doubled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_log::{Log, Offset};
use serde_json::{Value, json};
use store::Store;
use tokio_util::sync::CancellationToken;

use super::http_client;
use crate::pipeline::now;
use crate::record::LogRecord;

/// The identifier system of Observations metaward sends from its devices.
pub const IDENTIFIER_SYSTEM: &str = "https://metaward.dev/fhir/NamingSystem/device-observation";
/// The cursor's name in `emr_cursor`.
pub const CURSOR: &str = "fhir_push";

#[derive(Clone, Debug)]
pub struct FhirPushConfig {
    /// The EMR's FHIR base, `http://host:port/fhir`.
    pub base_url: String,
    pub token: Option<String>,
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

/// Sends one transaction Bundle; Ok when the EMR answered 200 with a transaction-response.
async fn send(config: &FhirPushConfig, entries: Vec<Value>) -> anyhow::Result<()> {
    let (authority, path) = http_client::split_base_url(&config.base_url)?;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let body = serde_json::to_vec(&bundle)?;
    let response = http_client::request(
        &authority,
        "POST",
        if path.is_empty() { "/" } else { &path },
        config.token.as_deref(),
        Some(&body),
        Duration::from_secs(30),
    )
    .await?;
    if response.status != 200 {
        anyhow::bail!("the emr answered {}", response.status);
    }
    let answer: Value = serde_json::from_slice(&response.body)?;
    if answer["type"] != "transaction-response" {
        anyhow::bail!("the emr did not answer with a transaction-response");
    }
    Ok(())
}

fn store_call<T>(store: &Mutex<Store>, call: impl FnOnce(&mut Store) -> T) -> T {
    call(&mut store.lock().expect("store lock"))
}

/// The task: follows the log from the cursor until `shutdown`.
pub async fn run(
    config: FhirPushConfig,
    log: Log,
    store: Arc<Mutex<Store>>,
    catalog: &'static model::Catalog,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
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
            Ok(())
        } else {
            send(&config, batch.entries).await
        };
        match delivered {
            Ok(()) => {
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
