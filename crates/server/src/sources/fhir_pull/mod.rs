//! Pull from an external EMR (docs/emr.md): every interval, for each patient in a bed, ask the
//! EMR's FHIR R4 API for what changed since the last poll (`_lastUpdated=ge…`) among their
//! Conditions, AllergyIntolerances, MedicationRequests, MedicationStatements and laboratory
//! Observations, and keep each resource in our record under the EMR's id (an upsert: the same
//! content again is "unchanged"). The twin then shows it (`record_ward`).
//!
//! Patients are linked by id: the EMR's `Patient/X` is the ward patient X, as everywhere in
//! metaward. A watermark per patient and type (`emr_pull_watermark`) moves only after the
//! resources are kept, so an outage or a restart asks again from where it stood.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Stores;
use crate::pipeline::now;
use crate::sinks::http_client;
use crate::ward::Ward;

#[derive(Clone, Debug)]
pub struct FhirPullConfig {
    /// The EMR's FHIR base, `http://host:port/fhir`.
    pub base_url: String,
    pub token: Option<String>,
    pub interval: Duration,
}

/// What is pulled for each patient: the type and the search that selects it.
pub const PULLED: &[(&str, &str)] = &[
    ("Condition", "patient={id}"),
    ("AllergyIntolerance", "patient={id}"),
    ("MedicationRequest", "patient={id}"),
    ("MedicationStatement", "patient={id}"),
    ("Observation", "patient={id}&category=laboratory"),
];

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Every resource of a search, following `next` links.
async fn search_all(config: &FhirPullConfig, first_path: String) -> anyhow::Result<Vec<Value>> {
    let (authority, base_path) = http_client::split_base_url(&config.base_url)?;
    let mut path = Some(first_path);
    let mut resources = Vec::new();
    let mut pages = 0;
    while let Some(current) = path.take() {
        pages += 1;
        if pages > 100 {
            anyhow::bail!("more than 100 pages for one patient's search");
        }
        let response = http_client::request(
            &authority,
            "GET",
            &current,
            config.token.as_deref(),
            None,
            Duration::from_secs(30),
        )
        .await?;
        if response.status != 200 {
            anyhow::bail!("the emr answered {} to a search", response.status);
        }
        let bundle: Value = serde_json::from_slice(&response.body)?;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "include" {
                continue;
            }
            resources.push(entry["resource"].clone());
        }
        // A next link is absolute; we follow it only on the same server.
        path = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["relation"] == "next")
            .and_then(|link| link["url"].as_str())
            .and_then(|url| {
                let rest = url.strip_prefix("http://")?;
                let slash = rest.find('/')?;
                (rest[..slash] == authority && rest[slash..].starts_with(&base_path))
                    .then(|| rest[slash..].to_owned())
            });
    }
    Ok(resources)
}

/// One poll of one patient: returns how many resources were written.
async fn pull_patient(
    config: &FhirPullConfig,
    stores: &Stores,
    ward: &Arc<Ward>,
    patient_id: &str,
) -> anyhow::Result<usize> {
    let (_, base_path) = http_client::split_base_url(&config.base_url)?;
    let mut written = 0;
    for (resource_type, query) in PULLED {
        let watermark = {
            let (patient, kind) = (patient_id.to_owned(), (*resource_type).to_owned());
            stores
                .read(move |store| store.emr_pull_watermark(&patient, &kind))
                .await
                .map_err(|e| anyhow::anyhow!(e.message))??
        };
        let mut path = format!(
            "{base_path}/{resource_type}?{}&_count=1000",
            query.replace("{id}", &encode(patient_id))
        );
        if let Some(since) = watermark {
            path.push_str(&format!(
                "&_lastUpdated=ge{}",
                encode(&record::date::format_instant(since))
            ));
        }
        let resources = search_all(config, path).await?;
        if resources.is_empty() {
            continue;
        }
        let (patient, kind, ward) = (
            patient_id.to_owned(),
            (*resource_type).to_owned(),
            ward.clone(),
        );
        let count = stores
            .write(move |store| -> anyhow::Result<usize> {
                let mut changed = Vec::new();
                let mut newest = None;
                for resource in &resources {
                    if let Some(updated) = resource["meta"]["lastUpdated"]
                        .as_str()
                        .and_then(record::date::parse)
                    {
                        newest = newest.max(Some(updated.low));
                    }
                    // Kept under the EMR's id: a collection entry with an id is an upsert.
                    let outcome = store
                        .fhir_import_resource(
                            resource,
                            now().millis(),
                            &mut store::fhir_record::new_resource_id,
                        )
                        .map_err(|error| anyhow::anyhow!("keeping a pulled {kind}: {error}"))?;
                    if matches!(
                        outcome.result,
                        record::EntryResult::Created | record::EntryResult::Updated
                    ) && let Some(id) = outcome.id
                    {
                        changed.push((outcome.resource_type, id));
                    }
                }
                if let Some(newest) = newest {
                    store.set_emr_pull_watermark(&patient, &kind, newest)?;
                }
                crate::record_ward::after_record_change(store, &ward, &changed, now())?;
                Ok(changed.len())
            })
            .await
            .map_err(|e| anyhow::anyhow!(e.message))??;
        written += count;
    }
    Ok(written)
}

/// The task: polls every `interval` until `shutdown`.
pub async fn run(
    config: FhirPullConfig,
    stores: Stores,
    ward: Arc<Ward>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(config.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let admitted: Vec<String> = ward
            .directory()
            .patients
            .iter()
            .filter(|patient| patient.bed_id.is_some())
            .map(|patient| patient.id.clone())
            .collect();
        for patient in admitted {
            match pull_patient(&config, &stores, &ward, &patient).await {
                Ok(0) => {}
                Ok(written) => tracing::info!(written, "pulled record changes from the emr"),
                Err(error) => {
                    // Logged without the patient: the next poll asks again from the watermark.
                    tracing::warn!(%error, "pulling from the emr failed; retrying next interval");
                }
            }
        }
    }
}
