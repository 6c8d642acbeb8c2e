//! Pull from an external EMR (docs/emr.md): every interval, for each patient in a bed, ask the
//! EMR's FHIR R4 API for what changed since the last poll (`_lastUpdated=ge…`) among their
//! Conditions, AllergyIntolerances, MedicationRequests, MedicationStatements and laboratory
//! Observations, and keep each resource in our record under the EMR's id (an upsert: the same
//! content again is "unchanged"). The twin then shows it (`record_ward`).
//!
//! Patients are linked by id (the EMR's `Patient/X` is the ward patient X) or, when configured,
//! by identifier (`emr_patient`): then the EMR's Patient is found first, and references to it in
//! what is kept are rewritten to the ward patient. A watermark per patient and type (`emr_pull_watermark`) moves only after the
//! resources are kept, so an outage or a restart asks again from where it stood.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Stores;
use crate::emr_patient::{EmrPatient, PatientLink, rewrite_patient_references};
use crate::pipeline::{Ingest, now};
use crate::record::DeadLetter;
use crate::sinks::http_client;
use crate::ward::Ward;

#[derive(Clone, Debug)]
pub struct FhirPullConfig {
    /// The EMR's FHIR base, `http(s)://host:port/fhir`.
    pub base_url: String,
    pub token: Option<String>,
    pub interval: Duration,
    /// For https: trust this CA (`[emr] ca_file`) instead of the public roots.
    pub trust: Option<http_client::Trust>,
    /// How a ward patient is found at the EMR.
    pub link: PatientLink,
}

/// What is pulled for each patient: the type and the search that selects it.
pub const PULLED: &[(&str, &str)] = &[
    ("Condition", "patient={id}"),
    ("AllergyIntolerance", "patient={id}"),
    ("MedicationRequest", "patient={id}"),
    ("MedicationStatement", "patient={id}"),
    ("Observation", "patient={id}&category=laboratory"),
];

use crate::emr_patient::encode;

/// Every resource of a search, following `next` links.
async fn search_all(config: &FhirPullConfig, first_path: String) -> anyhow::Result<Vec<Value>> {
    let (authority, base_path) =
        http_client::split_url_with(&config.base_url, config.trust.as_ref())?;
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
                let (next, next_path) = http_client::split_base_url(url).ok()?;
                (next.host == authority.host
                    && next.port == authority.port
                    && next.is_https() == authority.is_https()
                    && next_path.starts_with(&base_path))
                .then_some(next_path)
            });
    }
    Ok(resources)
}

/// The source label in metrics and dead letters.
pub const SOURCE: &str = "emr_pull";

/// A resource the record refused, to be kept as a dead letter.
struct Refused {
    reason: &'static str,
    detail: String,
    raw: Vec<u8>,
}

/// One poll of one patient: returns how many resources were written.
async fn pull_patient(
    config: &FhirPullConfig,
    stores: &Stores,
    ingest: &Ingest,
    patient_id: &str,
) -> anyhow::Result<usize> {
    let ward = ingest.ward();
    let (_, base_path) = http_client::split_base_url(&config.base_url)?;
    let emr_id = match config
        .link
        .resolve(
            &config.base_url,
            config.trust.as_ref(),
            config.token.as_deref(),
            patient_id,
        )
        .await?
    {
        EmrPatient::Found(id) => id,
        // Not (yet) registered at the EMR: nothing to pull; asked again next poll.
        EmrPatient::Unknown => return Ok(0),
        EmrPatient::Ambiguous(count) => {
            tracing::warn!(
                count,
                "several emr patients share a ward patient's identifier; not pulling until they are merged"
            );
            return Ok(0);
        }
    };
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
            query.replace("{id}", &encode(&emr_id))
        );
        if let Some(since) = watermark {
            path.push_str(&format!(
                "&_lastUpdated=ge{}",
                encode(&record::date::format_instant(since))
            ));
        }
        let origin = format!("GET {path}");
        let mut resources = search_all(config, path).await?;
        if emr_id != patient_id {
            for resource in &mut resources {
                rewrite_patient_references(resource, &emr_id, patient_id);
            }
        }
        if resources.is_empty() {
            continue;
        }
        for _ in &resources {
            ingest.metrics().received(SOURCE);
        }
        let (patient, kind, ward) = (
            patient_id.to_owned(),
            (*resource_type).to_owned(),
            ward.clone(),
        );
        let (count, kept, refused) = stores
            .write(
                move |store| -> anyhow::Result<(usize, usize, Vec<Refused>)> {
                    let mut changed = Vec::new();
                    let mut newest = None;
                    let mut refused = Vec::new();
                    let mut kept = 0;
                    for resource in &resources {
                        if let Some(updated) = resource["meta"]["lastUpdated"]
                            .as_str()
                            .and_then(record::date::parse)
                        {
                            newest = newest.max(Some(updated.low));
                        }
                        // Kept under the EMR's id: a collection entry with an id is an upsert. A
                        // resource the record refuses is kept as a dead letter, not retried forever.
                        let outcome = match store.fhir_import_resource(
                            resource,
                            now().millis(),
                            &mut store::fhir_record::new_resource_id,
                        ) {
                            Ok(outcome) => outcome,
                            Err(error) if error.status < 500 => {
                                refused.push(Refused {
                                    reason: error.code,
                                    detail: format!("a pulled {kind}: {error}"),
                                    raw: resource.to_string().into_bytes(),
                                });
                                continue;
                            }
                            Err(error) => anyhow::bail!("keeping a pulled {kind}: {error}"),
                        };
                        kept += 1;
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
                    Ok((changed.len(), kept, refused))
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!(e.message))??;
        written += count;
        // received = accepted + rejected, as for every source.
        if kept > 0 {
            ingest.metrics().accepted(SOURCE, kept, 0);
        }
        for refusal in refused {
            let dead = DeadLetter {
                source: SOURCE.into(),
                origin: origin.clone(),
                received_ms: now().millis(),
                reason: refusal.reason.into(),
                detail: refusal.detail,
                raw: refusal.raw,
            };
            if let Err(error) = ingest.dead_letter(dead).await {
                tracing::error!(%error, "could not keep a refused pulled resource");
            }
        }
    }
    Ok(written)
}

/// The task: polls every `interval` until `shutdown`.
pub async fn run(
    config: FhirPullConfig,
    stores: Stores,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let ward: Arc<Ward> = ingest.ward().clone();
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
            // Only ids a FHIR Patient can have (the link is by id; a comma would OR two).
            .filter(|patient| record::types::is_valid_id(&patient.id))
            .map(|patient| patient.id.clone())
            .collect();
        for patient in admitted {
            match pull_patient(&config, &stores, &ingest, &patient).await {
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
