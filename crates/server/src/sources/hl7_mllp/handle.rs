//! One message in, one answer out: parse, check the header, then an ORU^R01 becomes durable
//! observations and an ADT event a bed change in the store and the registry. Only then AA.
//! Anything refused is kept as a dead letter (raw bytes, the peer, the reason) before the AE
//! or AR goes out, and counted under its reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hl7::ack::{AckCode, build_ack};
use hl7::adt::{AdtEvent, AdtKind, map_adt};
use hl7::mllp::Frame;
use hl7::pcd01::{LocationRef, map_oru};
use hl7::{ErrorCode, Issue, Message, Severity};
use model::{AssociationTarget, BedId, PatientId, Timestamp};
use store::{PatientRecord, Store, StoreError};

use super::connection::SOURCE;
use crate::Stores;
use crate::pipeline::{Ingest, now};
use crate::record::DeadLetter;

/// Frames larger than this are parsed and mapped on the blocking pool, so a long waveform
/// message never holds up the runtime's other connections.
const LARGE_FRAME_BYTES: usize = 256 * 1024;

/// Runs CPU work inline when it is small, on the blocking pool when it is large.
async fn cpu<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if large {
        tokio::task::spawn_blocking(work).await.ok()
    } else {
        Some(work())
    }
}

pub struct Handler {
    ingest: Ingest,
    stores: Stores,
    next_control_id: AtomicU64,
}

/// What became of one message.
struct Outcome {
    code: AckCode,
    issues: Vec<Issue>,
}

impl Outcome {
    fn accepted(issues: Vec<Issue>) -> Outcome {
        Outcome {
            code: AckCode::Accept,
            issues,
        }
    }

    fn refused(code: AckCode, issues: Vec<Issue>) -> Outcome {
        Outcome { code, issues }
    }
}

impl Handler {
    pub fn new(ingest: Ingest, stores: Stores) -> Handler {
        Handler {
            ingest,
            stores,
            next_control_id: AtomicU64::new(1),
        }
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.ingest.metrics()
    }

    /// Handles one frame; returns the acknowledgment to send, if there is anyone to answer.
    /// `facilities`: the sending facilities (MSH-4) the peer may send for (its certificate's,
    /// `access`); `None`: any.
    pub async fn handle_frame(
        &self,
        frame: Frame,
        peer: SocketAddr,
        facilities: Option<&[String]>,
    ) -> Option<Vec<u8>> {
        let received = now();
        self.ingest.metrics().received(SOURCE);
        let bytes = match frame {
            Frame::Message(bytes) => bytes,
            Frame::Malformed { bytes, reason } => {
                // No well-formed frame, no message to answer: counted and kept, nothing sent.
                tracing::warn!(%peer, %reason, "malformed mllp framing");
                self.keep(peer, received, reason.label(), reason.to_string(), bytes)
                    .await;
                return None;
            }
        };
        let large = bytes.len() > LARGE_FRAME_BYTES;
        let Some((bytes, parsed)) = cpu(large, move || {
            let parsed = Message::parse(&bytes);
            (bytes, parsed)
        })
        .await
        else {
            let issue = Issue::error(
                None,
                ErrorCode::ApplicationInternalError,
                "the message could not be read",
            );
            return Some(self.ack(None, AckCode::Error, &[issue], received));
        };
        let message = match parsed {
            Ok(message) => Arc::new(message),
            Err(error) => {
                let issue = Issue::from(error);
                tracing::warn!(%peer, error = %issue.text, "unreadable hl7 message");
                let reason = format!("parse_{}", issue.code.label());
                self.keep(peer, received, &reason, issue.text.clone(), bytes)
                    .await;
                return Some(self.ack(None, AckCode::Reject, &[issue], received));
            }
        };
        if let Some(allowed) = facilities {
            let msh = message.msh();
            let facility = msh.value(4);
            if !allowed.iter().any(|allowed| allowed == facility) {
                let issue = Issue::error(
                    Some(msh.location(4)),
                    ErrorCode::TableValueNotFound,
                    format!(
                        "this peer's certificate may send for the facilities {} only, not MSH-4 `{facility}`",
                        allowed.join(", ")
                    ),
                );
                tracing::warn!(%peer, "hl7 message for a facility its certificate does not cover");
                if !self
                    .keep(
                        peer,
                        received,
                        "facility_not_allowed",
                        issue.text.clone(),
                        bytes,
                    )
                    .await
                {
                    return Some(self.not_kept_ack(message.as_ref(), received));
                }
                return Some(self.ack(Some(message.as_ref()), AckCode::Reject, &[issue], received));
            }
        }
        let outcome = self.process(&message, large, received).await;
        if outcome.code != AckCode::Accept {
            let first_error = outcome
                .issues
                .iter()
                .find(|issue| issue.severity == Severity::Error);
            let reason = first_error.map(|i| i.code.label()).unwrap_or("refused");
            let detail = outcome
                .issues
                .iter()
                .map(|issue| issue.text.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(%peer, reason, "refused hl7 message");
            if !self.keep(peer, received, reason, detail, bytes).await {
                return Some(self.not_kept_ack(message.as_ref(), received));
            }
        }
        Some(self.ack(
            Some(message.as_ref()),
            outcome.code,
            &outcome.issues,
            received,
        ))
    }

    fn ack(
        &self,
        message: Option<&Message>,
        code: AckCode,
        issues: &[Issue],
        time: Timestamp,
    ) -> Vec<u8> {
        let n = self.next_control_id.fetch_add(1, Ordering::Relaxed);
        let control_id = format!("MW{}-{n}", time.millis());
        build_ack(message, code, issues, &control_id, time)
    }

    /// AE when refused input could not even be kept: the sender must send it again.
    fn not_kept_ack(&self, message: &Message, received: Timestamp) -> Vec<u8> {
        let internal = Issue::error(
            None,
            ErrorCode::ApplicationInternalError,
            "the message could not be kept; send it again",
        );
        self.ack(Some(message), AckCode::Error, &[internal], received)
    }

    /// Keeps refused input durably; false if even that failed.
    async fn keep(
        &self,
        peer: SocketAddr,
        received: Timestamp,
        reason: &str,
        detail: String,
        raw: Vec<u8>,
    ) -> bool {
        let dead = DeadLetter {
            source: SOURCE.into(),
            origin: peer.to_string(),
            received_ms: received.millis(),
            reason: reason.into(),
            detail,
            raw,
        };
        match self.ingest.dead_letter(dead).await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%error, "could not keep a refused hl7 message");
                false
            }
        }
    }

    async fn process(&self, message: &Arc<Message>, large: bool, received: Timestamp) -> Outcome {
        let msh = message.msh();
        if !message.version().starts_with("2.") {
            return Outcome::refused(
                AckCode::Reject,
                vec![Issue::error(
                    Some(msh.location(12)),
                    ErrorCode::UnsupportedVersionId,
                    "MSH-12 must be an HL7 v2 version (2.x)",
                )],
            );
        }
        if msh.value(11) != "P" {
            return Outcome::refused(
                AckCode::Reject,
                vec![Issue::error(
                    Some(msh.location(11)),
                    ErrorCode::UnsupportedProcessingId,
                    "only production messages (MSH-11 P) are stored on patients",
                )],
            );
        }
        if message.control_id().is_empty() {
            return Outcome::refused(
                AckCode::Reject,
                vec![Issue::error(
                    Some(msh.location(10)),
                    ErrorCode::RequiredFieldMissing,
                    "MSH-10 message control id is required",
                )],
            );
        }
        match message.message_type() {
            ("ORU", "R01", _) => self.observations(message, large, received).await,
            ("ADT", trigger, _) if AdtKind::of_trigger(trigger).is_some() => {
                self.admission(message, received).await
            }
            ("ADT", _, _) => Outcome::refused(
                AckCode::Reject,
                vec![Issue::error(
                    Some(msh.location(9)),
                    ErrorCode::UnsupportedEventCode,
                    "ADT events accepted: A01, A02, A03, A08",
                )],
            ),
            _ => Outcome::refused(
                AckCode::Reject,
                vec![Issue::error(
                    Some(msh.location(9)),
                    ErrorCode::UnsupportedMessageType,
                    "messages accepted: ORU^R01 (IHE PCD-01) and ADT^A01, A02, A03, A08",
                )],
            ),
        }
    }

    async fn observations(
        &self,
        message: &Arc<Message>,
        large: bool,
        received: Timestamp,
    ) -> Outcome {
        let ward = self.ingest.ward().clone();
        let catalog = ward.catalog;
        let shared = message.clone();
        let Some(result) = cpu(large, move || map_oru(&shared, catalog, received)).await else {
            return Outcome::refused(
                AckCode::Error,
                vec![Issue::error(
                    None,
                    ErrorCode::ApplicationInternalError,
                    "the message could not be mapped",
                )],
            );
        };
        let mut issues = result.issues;
        if issues.iter().any(|i| i.severity == Severity::Error) {
            return Outcome::refused(AckCode::Error, issues);
        }
        // The patient the message names; else the bed it names, if we know that bed; else the
        // device's own association decides. Nothing is guessed.
        let subject = match (&result.patient, &result.location) {
            (Some(patient), _) => Some(AssociationTarget::Patient(PatientId::new(&patient.id))),
            (None, Some(location)) => {
                let bed = ward.read_registry(|registry| {
                    bed_candidates(location)
                        .into_iter()
                        .find(|bed| registry.room_of_bed(bed).is_some())
                });
                if bed.is_none() {
                    issues.push(Issue::warning(
                        message.first("PV1").map(|pv1| pv1.location(3)),
                        ErrorCode::UnknownKeyIdentifier,
                        "PV1-3 names no bed we know; the device's association applies",
                    ));
                }
                bed.map(AssociationTarget::Bed)
            }
            (None, None) => None,
        };
        let observations = result
            .mapped
            .into_iter()
            .map(|mapped| mapped.observation)
            .collect();
        match self
            .ingest
            .accept_message(SOURCE, observations, received, subject)
            .await
        {
            Ok(_) => {
                let not_in_catalog = issues
                    .iter()
                    .filter(|issue| {
                        issue.code == ErrorCode::TableValueNotFound
                            && issue
                                .location
                                .as_ref()
                                .is_some_and(|l| l.segment == "OBX" && l.field == 3)
                    })
                    .count();
                if not_in_catalog > 0 {
                    self.ingest
                        .metrics()
                        .not_stored(SOURCE, "not_in_catalog", not_in_catalog);
                }
                Outcome::accepted(issues)
            }
            Err(error) => {
                tracing::error!(%error, "could not make an hl7 message durable");
                Outcome::refused(
                    AckCode::Error,
                    vec![Issue::error(
                        None,
                        ErrorCode::ApplicationInternalError,
                        "the data could not be made durable; send it again",
                    )],
                )
            }
        }
    }

    async fn admission(&self, message: &Message, received: Timestamp) -> Outcome {
        let event = match map_adt(message) {
            Ok(event) => event,
            Err(issues) => return Outcome::refused(AckCode::Error, issues),
        };
        let pv1_location = message.first("PV1").map(|pv1| pv1.location(3));
        let ward = self.ingest.ward().clone();
        let applied = self
            .stores
            .write(move |store| -> Result<Vec<Issue>, Issue> {
                // Bed stays live in the store, not in the log, and the store runs with
                // `synchronous = NORMAL` (its device data can be replayed from the log). An ADT
                // change is answered AA only once on disk, so its commits sync the WAL.
                let durable = |store: &Store, mode: &str| {
                    store
                        .connection()
                        .pragma_update(None, "synchronous", mode)
                        .map_err(|error| internal(StoreError::from(error)))
                };
                durable(store, "FULL")?;
                let applied = apply_adt(store, &event, received, pv1_location);
                durable(store, "NORMAL")?;
                let warnings = applied?;
                crate::setup::reload(&ward, store).map_err(internal)?;
                Ok(warnings)
            })
            .await;
        match applied {
            Ok(Ok(warnings)) => {
                self.ingest.metrics().accepted(SOURCE, 0, 0);
                Outcome::accepted(warnings)
            }
            Ok(Err(issue)) => Outcome::refused(AckCode::Error, vec![issue]),
            Err(error) => {
                tracing::error!(error = %error.message, "adt store task failed");
                Outcome::refused(
                    AckCode::Error,
                    vec![Issue::error(
                        None,
                        ErrorCode::ApplicationInternalError,
                        "the event could not be stored; send it again",
                    )],
                )
            }
        }
    }
}

/// PV1-3 to our bed ids, most specific first: the bed component, then a location given as a
/// single component (some senders put the bed id in point of care alone).
fn bed_candidates(location: &LocationRef) -> Vec<BedId> {
    let mut candidates = Vec::new();
    if !location.bed.is_empty() {
        candidates.push(BedId::new(&location.bed));
    }
    if location.room.is_empty() && location.bed.is_empty() && !location.point_of_care.is_empty() {
        candidates.push(BedId::new(&location.point_of_care));
    }
    candidates
}

fn internal(error: StoreError) -> Issue {
    tracing::error!(%error, "adt store write failed");
    Issue::error(
        None,
        ErrorCode::ApplicationInternalError,
        "the event could not be stored; send it again",
    )
}

/// Applies an ADT event to the store, as a hospital's ADT system is the truth of who lies where.
fn apply_adt(
    store: &mut Store,
    event: &AdtEvent,
    received: Timestamp,
    pv1_location: Option<hl7::Location>,
) -> Result<Vec<Issue>, Issue> {
    let mut warnings = Vec::new();
    let at = event.time.unwrap_or(received);
    let patient_id = PatientId::new(&event.patient.id);
    let known_beds: Vec<BedId> = store
        .layout()
        .map_err(internal)?
        .into_iter()
        .flat_map(|layout| layout.rooms)
        .flat_map(|room| room.beds)
        .map(|bed| bed.id)
        .collect();
    let bed = match &event.location {
        Some(location) => {
            let found = bed_candidates(location)
                .into_iter()
                .find(|bed| known_beds.contains(bed));
            if found.is_none() && event.kind != AdtKind::Discharge {
                return Err(Issue::error(
                    pv1_location.clone(),
                    ErrorCode::UnknownKeyIdentifier,
                    "PV1-3 names no bed of this ward (see docs/hl7.md for the bed mapping)",
                ));
            }
            found
        }
        None => None,
    };
    // Demographics: what the message says, what we had where it says nothing; conditions are
    // the record's, never touched by ADT.
    let existing = store.patient(&patient_id).map_err(internal)?;
    let record = PatientRecord {
        id: patient_id.clone(),
        name: if event.name.is_empty() {
            existing
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| event.patient.id.clone())
        } else {
            event.name.clone()
        },
        birth_date: event
            .birth_date
            .clone()
            .or_else(|| existing.as_ref().and_then(|p| p.birth_date.clone())),
        sex: if event.sex == "unknown" {
            existing
                .as_ref()
                .map(|p| p.sex.clone())
                .unwrap_or_else(|| "unknown".into())
        } else {
            event.sex.clone()
        },
        conditions: existing.map(|p| p.conditions).unwrap_or_default(),
    };
    store.upsert_patient(&record).map_err(internal)?;
    let occupancy = store.current_occupancy().map_err(internal)?;
    let stay_error = |error: StoreError| match error {
        StoreError::BeforeOpenRange { .. } => Issue::error(
            None,
            ErrorCode::DataType,
            "the event time is before the patient's current stay began",
        ),
        other => internal(other),
    };
    match event.kind {
        AdtKind::Admit | AdtKind::Transfer | AdtKind::Update => {
            let Some(bed) = bed else {
                return Ok(warnings);
            };
            let _ = &pv1_location;
            let already = occupancy
                .iter()
                .any(|(b, p, _)| *b == bed && *p == patient_id);
            if !already {
                // The bed's previous occupant leaves it: the ADT feed says who lies there now.
                if let Some((_, other, _)) = occupancy.iter().find(|(b, _, _)| *b == bed) {
                    store.discharge(other, at).map_err(stay_error)?;
                    tracing::info!(bed = %bed, "adt moved a patient into an occupied bed; its stay there ended");
                }
                store.admit(&patient_id, &bed, at).map_err(stay_error)?;
            }
        }
        AdtKind::Discharge => match store.discharge(&patient_id, at) {
            Ok(()) => {}
            Err(StoreError::NotAdmitted) => warnings.push(Issue::warning(
                None,
                ErrorCode::UnknownKeyIdentifier,
                "the patient was not in a bed; nothing to discharge",
            )),
            Err(error) => return Err(stay_error(error)),
        },
    }
    Ok(warnings)
}
