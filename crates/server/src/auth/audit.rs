//! The audit trail's writer: entries from the HTTP edge (every access to patient data, every
//! login and failed login, every change) go through an unbounded channel (an audit entry is
//! never dropped to save memory; they are small) to one task that appends them in batches, so
//! the hash chain has one writer. The store chains and checks them (`store::security`).
//! `record_durably` waits until its entry's batch is committed: the HTTP edge answers a request
//! only after its audit entry is in the store, so a crash cannot lose the record of a look that
//! was answered. Also the trail as FHIR R4 AuditEvent resources.

use serde_json::{Value, json};
use store::{AuditEntry, AuditRecord};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::Stores;

/// An entry, and who waits to hear that it is stored (`true`) or could not be (`false`).
type Item = (AuditEntry, Option<oneshot::Sender<bool>>);

#[derive(Clone)]
pub struct Audit {
    entries: mpsc::UnboundedSender<Item>,
}

impl Audit {
    /// The sender, and the task that writes what it is sent until `shutdown` (then drains).
    pub fn start(
        stores: Stores,
        shutdown: CancellationToken,
    ) -> (Audit, tokio::task::JoinHandle<()>) {
        let (entries, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_entries(receiver, stores, shutdown));
        (Audit { entries }, task)
    }

    /// Queues an entry without waiting for it to be stored.
    pub fn record(&self, entry: AuditEntry) {
        if self.entries.send((entry, None)).is_err() {
            tracing::error!("audit entry after the audit writer stopped");
        }
    }

    /// Appends an entry and returns once it is committed to the store; `false` if it could not
    /// be (the store failed, or the writer has stopped).
    pub async fn record_durably(&self, entry: AuditEntry) -> bool {
        let (stored, outcome) = oneshot::channel();
        if self.entries.send((entry, Some(stored))).is_err() {
            tracing::error!("audit entry after the audit writer stopped");
            return false;
        }
        outcome.await.unwrap_or(false)
    }
}

async fn write_entries(
    mut receiver: mpsc::UnboundedReceiver<Item>,
    stores: Stores,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            entry = receiver.recv() => match entry {
                Some(entry) => entry,
                None => return,
            },
            _ = shutdown.cancelled() => match receiver.try_recv() {
                Ok(entry) => entry,
                Err(_) => return,
            },
        };
        let mut items = vec![first];
        while let Ok(item) = receiver.try_recv() {
            items.push(item);
        }
        let (batch, waiting): (Vec<AuditEntry>, Vec<_>) = items.into_iter().unzip();
        let written = stores.write(move |store| store.append_audit(&batch)).await;
        let stored = matches!(written, Ok(Ok(())));
        if !stored {
            tracing::error!("writing the audit trail failed");
        }
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(stored);
        }
    }
}

/// One audit entry as a FHIR R4 AuditEvent (DICOM audit codes as FHIR's AuditEvent examples
/// use them: type `rest` RESTful operation, actions C/R/U/D/E, outcome 0/4/8).
pub fn audit_event(record: &AuditRecord) -> Value {
    let entry = &record.entry;
    let method = entry.what.split(' ').next().unwrap_or("");
    let action = match (entry.action.as_str(), method) {
        ("login" | "login_failed" | "logout" | "refresh", _) => "E",
        (_, "GET") => "R",
        (_, "POST") => "C",
        (_, "PUT" | "PATCH") => "U",
        (_, "DELETE") => "D",
        _ => "E",
    };
    let (type_code, type_display) = match entry.action.as_str() {
        "login" | "login_failed" | "logout" | "refresh" => ("110114", "User Authentication"),
        _ => ("rest", "Restful Operation"),
    };
    let outcome = match entry.outcome.as_str() {
        "success" => "0",
        status if status.starts_with('4') => "4",
        _ => "8",
    };
    let time = record::date::format_instant(entry.time_ms);
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": record.seq.to_string(),
        "type": {
            "system": if type_code == "rest" { "http://terminology.hl7.org/CodeSystem/audit-event-type" } else { "http://dicom.nema.org/resources/ontology/DCM" },
            "code": type_code, "display": type_display
        },
        "subtype": [{ "system": "urn:metaward:audit-action", "code": entry.action }],
        "action": action,
        "recorded": time,
        "outcome": outcome,
        "outcomeDesc": entry.outcome,
        "agent": [{
            "who": { "display": entry.actor },
            "role": entry.role.as_ref().map(|role| json!([{ "text": role }])),
            "requestor": true,
            "network": { "address": entry.source, "type": "2" }
        }],
        "source": { "observer": { "display": "metaward" } },
        "entity": [{ "what": { "display": entry.what } }],
        "extension": [
            { "url": "urn:metaward:audit-hash", "valueString": record.hash },
            { "url": "urn:metaward:audit-prev-hash", "valueString": record.prev_hash }
        ]
    });
    if event["agent"][0]["role"].is_null() {
        event["agent"][0]
            .as_object_mut()
            .expect("object")
            .remove("role");
    }
    if let Some(patient) = &entry.patient_id {
        event["entity"]
            .as_array_mut()
            .expect("array")
            .push(json!({ "what": { "reference": format!("Patient/{patient}") },
                          "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" } }));
    }
    event
}

/// The trail as a FHIR searchset Bundle.
pub fn audit_bundle(records: &[AuditRecord]) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": records.len(),
        "entry": records.iter().map(|record| json!({ "resource": audit_event(record) })).collect::<Vec<_>>(),
    })
}
