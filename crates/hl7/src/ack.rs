//! The acknowledgment (original mode): `MSH`, `MSA` (AA, AE or AR and the message's MSH-10),
//! and one `ERR` per issue naming its segment, occurrence, field and reason (HL7 table 0357).
//! Written in the version and character set of the message it answers, so the sender's parser
//! reads it as it reads its own; before v2.5 ERR-1 carries the location and code.

use model::Timestamp;

use crate::message::{Charset, Delimiters, Message, escape};
use crate::time::format_dtm;
use crate::{Issue, Severity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept: the data is durable.
    Accept,
    /// Application error: the message was understood but something in it is wrong.
    Error,
    /// Application reject: the message cannot be processed at all (type, version, framing).
    Reject,
}

impl AckCode {
    pub fn code(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// Versions we answer in; anything else is answered in 2.6, the PCD-01 version.
const VERSIONS: [&str; 11] = [
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8",
];

pub fn build_ack(
    original: Option<&Message>,
    code: AckCode,
    issues: &[Issue],
    control_id: &str,
    now: Timestamp,
) -> Vec<u8> {
    let d = Delimiters::default();
    let version = original
        .map(Message::version)
        .filter(|v| VERSIONS.contains(v))
        .unwrap_or("2.6");
    let charset = original.map(|m| m.charset).unwrap_or(Charset::Undeclared);
    let echo = |field: usize| -> String {
        original
            .map(|m| {
                m.msh()
                    .components(field)
                    .iter()
                    .map(|sub| {
                        sub.iter()
                            .map(|s| escape(s, d))
                            .collect::<Vec<_>>()
                            .join("&")
                    })
                    .collect::<Vec<_>>()
                    .join("^")
            })
            .unwrap_or_default()
    };
    let trigger = original.map(|m| m.message_type().1).unwrap_or("");
    // From v2.3.1 MSH-9 names the structure too; hl7apy's strict level wants it even when
    // the trigger is unknown (an unreadable message): `ACK^^ACK`.
    let message_type = match version {
        "2.1" | "2.2" | "2.3" if trigger.is_empty() => "ACK".to_owned(),
        "2.1" | "2.2" | "2.3" => format!("ACK^{}", escape(trigger, d)),
        _ => format!("ACK^{}^ACK", escape(trigger, d)),
    };
    let processing = original
        .map(|m| m.msh().value(11))
        .filter(|p| !p.is_empty())
        .unwrap_or("P");
    let mut msh = vec![
        "MSH".to_owned(),
        "^~\\&".to_owned(),
        "metaward".to_owned(),
        String::new(),
        echo(3),
        echo(4),
        format_dtm(now),
        String::new(),
        message_type,
        escape(control_id, d),
        escape(processing, d),
        version.to_owned(),
    ];
    if charset != Charset::Undeclared {
        msh.resize(17, String::new());
        msh.push(charset.code().to_owned());
    }
    let mut segments = vec![msh.join("|")];
    let answered = original.map(Message::control_id).unwrap_or("");
    segments.push(format!("MSA|{}|{}", code.code(), escape(answered, d)));
    let modern = !matches!(version, "2.1" | "2.2" | "2.3" | "2.3.1" | "2.4");
    for issue in issues {
        let location = issue
            .location
            .as_ref()
            .map(|l| {
                let mut parts = vec![escape(&l.segment, d), l.position.to_string()];
                if l.field > 0 {
                    parts.push(l.field.to_string());
                    if modern {
                        parts.push("1".into());
                        if let Some(component) = l.component {
                            parts.push(component.to_string());
                        }
                    }
                }
                parts
            })
            .unwrap_or_default();
        let text = escape(&issue.text, d);
        let severity = match issue.severity {
            Severity::Error => "E",
            Severity::Warning => "W",
        };
        if modern {
            segments.push(format!(
                "ERR||{}|{}^{}^HL70357|{severity}|||{text}",
                location.join("^"),
                issue.code.code(),
                issue.code.text(),
            ));
        } else {
            let mut eld = location;
            eld.resize(3, String::new());
            eld.push(format!(
                "{}&{}&HL70357",
                issue.code.code(),
                issue.code.text()
            ));
            segments.push(format!("ERR|{}", eld.join("^")));
        }
    }
    let mut text = segments.join("\r");
    text.push('\r');
    charset.encode(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, Location};

    #[test]
    fn an_accept_echoes_the_control_id_and_addresses_the_sender() {
        let message = Message::parse(
            b"MSH|^~\\&|GW^0011^EUI-64|ICU|||20240101||ORU^R01^ORU_R01|MSG-1|P|2.6||||||8859/1\r",
        )
        .unwrap();
        let ack = build_ack(Some(&message), AckCode::Accept, &[], "A1", Timestamp(0));
        assert_eq!(
            String::from_utf8(ack).unwrap(),
            "MSH|^~\\&|metaward||GW^0011^EUI-64|ICU|19700101000000.000+0000||ACK^R01^ACK|A1|P|2.6||||||8859/1\rMSA|AA|MSG-1\r"
        );
    }

    #[test]
    fn errors_name_segment_field_and_reason() {
        let message = Message::parse(b"MSH|^~\\&|GW||||20240101||ORU^R01|M|P|2.6\r").unwrap();
        let issue = Issue::error(
            Some(Location::field("OBX", 5, 6)),
            ErrorCode::TableValueNotFound,
            "unit a|b",
        );
        let ack = String::from_utf8(build_ack(
            Some(&message),
            AckCode::Error,
            std::slice::from_ref(&issue),
            "A2",
            Timestamp(0),
        ))
        .unwrap();
        assert!(
            ack.ends_with(
                "MSA|AE|M\rERR||OBX^5^6^1|103^Table value not found^HL70357|E|||unit a\\F\\b\r"
            ),
            "{ack}"
        );
        let old = Message::parse(b"MSH|^~\\&|GW||||20240101||ORU^R01|M|P|2.3.1\r").unwrap();
        let ack = String::from_utf8(build_ack(
            Some(&old),
            AckCode::Error,
            &[issue],
            "A3",
            Timestamp(0),
        ))
        .unwrap();
        assert!(
            ack.ends_with("ERR|OBX^5^6^103&Table value not found&HL70357\r"),
            "{ack}"
        );
    }
}
