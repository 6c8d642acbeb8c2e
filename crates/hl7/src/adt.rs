//! ADT events that move patients between beds: A01 admit, A02 transfer, A03 discharge, A08
//! update patient information. The server applies them to the store and the ward's registry,
//! which is what attribution by bed (PV1-3) relies on.

use model::Timestamp;

use crate::message::Message;
use crate::pcd01::{LocationRef, PatientRef, location_of_pv1, patient_of_pid};
use crate::time::{parse_date, parse_dtm};
use crate::{ErrorCode, Issue};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdtKind {
    Admit,
    Transfer,
    Discharge,
    Update,
}

impl AdtKind {
    pub fn of_trigger(trigger: &str) -> Option<AdtKind> {
        match trigger {
            "A01" => Some(AdtKind::Admit),
            "A02" => Some(AdtKind::Transfer),
            "A03" => Some(AdtKind::Discharge),
            "A08" => Some(AdtKind::Update),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdtEvent {
    pub kind: AdtKind,
    pub patient: PatientRef,
    /// "Given Family" from PID-5; empty when not sent.
    pub name: String,
    /// `YYYY-MM-DD` from PID-7.
    pub birth_date: Option<String>,
    /// FHIR administrative gender from PID-8 (HL7 table 0001).
    pub sex: String,
    /// PV1-3, the bed the patient is in after the event.
    pub location: Option<LocationRef>,
    /// EVN-6 (event occurred), else EVN-2 (recorded), else MSH-7.
    pub time: Option<Timestamp>,
}

pub fn map_adt(message: &Message) -> Result<AdtEvent, Vec<Issue>> {
    let mut issues = Vec::new();
    let (_, trigger, _) = message.message_type();
    let Some(kind) = AdtKind::of_trigger(trigger) else {
        return Err(vec![Issue::error(
            Some(message.msh().location(9)),
            ErrorCode::UnsupportedEventCode,
            format!("ADT event `{trigger}` is not one we apply (A01, A02, A03, A08)"),
        )]);
    };
    let Some(pid) = message.first("PID") else {
        return Err(vec![Issue::error(
            None,
            ErrorCode::SegmentSequence,
            "an ADT message needs a PID segment",
        )]);
    };
    let patient = patient_of_pid(pid);
    if patient.is_none() {
        issues.push(Issue::error(
            Some(pid.location(3)),
            ErrorCode::RequiredFieldMissing,
            "PID-3 names no patient identifier",
        ));
    }
    let pv1 = message.first("PV1");
    let location = pv1.map(location_of_pv1).filter(|l| !l.is_empty());
    if matches!(kind, AdtKind::Admit | AdtKind::Transfer) && location.is_none() {
        issues.push(Issue::error(
            Some(
                pv1.map(|pv1| pv1.location(3))
                    .unwrap_or(crate::Location::field("PV1", 0, 3)),
            ),
            ErrorCode::RequiredFieldMissing,
            "PV1-3 must name the bed for an admission or a transfer",
        ));
    }
    let evn = message.first("EVN");
    let mut time = None;
    for (segment, field) in [(evn, 6), (evn, 2), (Some(message.msh()), 7)] {
        let Some(segment) = segment else { continue };
        let text = segment.value(field);
        if text.is_empty() {
            continue;
        }
        match parse_dtm(text) {
            Some(t) => {
                time = Some(t);
                break;
            }
            None => issues.push(Issue::error(
                Some(segment.location(field)),
                ErrorCode::DataType,
                format!("{}-{field} is not a valid date/time", segment.name),
            )),
        }
    }
    let birth = pid.value(7);
    let birth_date = parse_date(birth);
    if !birth.is_empty() && birth_date.is_none() {
        issues.push(Issue::error(
            Some(pid.location(7)),
            ErrorCode::DataType,
            "PID-7 is not a valid date",
        ));
    }
    let sex = match pid.value(8).trim() {
        "M" => "male",
        "F" => "female",
        "O" | "A" => "other",
        _ => "unknown",
    };
    let family = pid.get(5, 1).trim();
    let given = pid.get(5, 2).trim();
    let name = [given, family]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match patient {
        Some(patient) if issues.is_empty() => Ok(AdtEvent {
            kind,
            patient,
            name,
            birth_date,
            sex: sex.to_owned(),
            location,
            time,
        }),
        _ => Err(issues),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r").as_bytes()).unwrap()
    }

    #[test]
    fn an_admission_names_patient_bed_and_time() {
        let message = parse(
            "MSH|^~\\&|ADT|H|||20240101120000||ADT^A01^ADT_A01|a1|P|2.5\n\
EVN|A01|20240101115900||||20240101115500+0000\n\
PID|||MRN7^^^H^MR||Doe^Jane||19770404|F\nPV1||I|ICU^3001^b1\n",
        );
        let event = map_adt(&message).unwrap();
        assert_eq!(event.kind, AdtKind::Admit);
        assert_eq!(event.patient.id, "MRN7");
        assert_eq!(event.name, "Jane Doe");
        assert_eq!(event.birth_date.as_deref(), Some("1977-04-04"));
        assert_eq!(event.sex, "female");
        assert_eq!(event.location.unwrap().bed, "b1");
        assert_eq!(event.time, parse_dtm("20240101115500+0000"));
    }

    #[test]
    fn what_an_event_needs_is_required() {
        let no_bed = parse("MSH|^~\\&|ADT|H|||20240101||ADT^A02|a2|P|2.5\nPID|||MRN7\nPV1||I\n");
        let issues = map_adt(&no_bed).unwrap_err();
        assert_eq!(issues[0].location.as_ref().unwrap().field, 3);
        let discharge = parse("MSH|^~\\&|ADT|H|||20240101||ADT^A03|a3|P|2.5\nPID|||MRN7\n");
        assert_eq!(map_adt(&discharge).unwrap().kind, AdtKind::Discharge);
        let other = parse("MSH|^~\\&|ADT|H|||20240101||ADT^A40|a4|P|2.5\nPID|||MRN7\n");
        assert_eq!(
            map_adt(&other).unwrap_err()[0].code,
            ErrorCode::UnsupportedEventCode
        );
    }
}
