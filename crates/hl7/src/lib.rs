//! HL7 v2 as metaward speaks it: a lenient parser that returns what it understood (escapes and
//! the character sets of MSH-18), MLLP framing, IHE PCD-01 ORU^R01 device results mapped to the
//! core model's observations through the metric catalog, ADT events that move patients between
//! beds, and the acknowledgment (ACK with MSA and ERR) that answers each message.
//!
//! This crate does no I/O and reads no clock: bytes and time in, values and bytes out. Every
//! problem it finds names its place (segment, occurrence, field) for the ERR segment.
//!
//! A parser of our own rather than `hl7-parser`: we need field positions for every complaint,
//! MSH-18 character sets before the text is split, and escapes resolved per subcomponent; that
//! is a few hundred lines, and it stays ours to fuzz.

pub mod ack;
pub mod adt;
pub mod message;
pub mod mllp;
pub mod pcd01;
pub mod time;

pub use message::{Charset, Delimiters, Message, ParseError, Segment};

/// HL7 table 0357, the error condition codes an ERR segment carries (ERR-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersionId,
    UnknownKeyIdentifier,
    ApplicationInternalError,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "100",
            ErrorCode::RequiredFieldMissing => "101",
            ErrorCode::DataType => "102",
            ErrorCode::TableValueNotFound => "103",
            ErrorCode::UnsupportedMessageType => "200",
            ErrorCode::UnsupportedEventCode => "201",
            ErrorCode::UnsupportedProcessingId => "202",
            ErrorCode::UnsupportedVersionId => "203",
            ErrorCode::UnknownKeyIdentifier => "204",
            ErrorCode::ApplicationInternalError => "207",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }

    /// A short stable label for metrics and dead letters.
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "segment_sequence",
            ErrorCode::RequiredFieldMissing => "required_field_missing",
            ErrorCode::DataType => "data_type",
            ErrorCode::TableValueNotFound => "table_value_not_found",
            ErrorCode::UnsupportedMessageType => "unsupported_message_type",
            ErrorCode::UnsupportedEventCode => "unsupported_event_code",
            ErrorCode::UnsupportedProcessingId => "unsupported_processing_id",
            ErrorCode::UnsupportedVersionId => "unsupported_version_id",
            ErrorCode::UnknownKeyIdentifier => "unknown_key_identifier",
            ErrorCode::ApplicationInternalError => "internal_error",
        }
    }
}

/// Where a problem is: ERR-2 (segment id, its occurrence in the message, field, component).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: String,
    pub position: usize,
    pub field: usize,
    pub component: Option<usize>,
}

impl Location {
    pub fn field(segment: &str, position: usize, field: usize) -> Location {
        Location {
            segment: segment.to_owned(),
            position,
            field,
            component: None,
        }
    }
}

/// ERR-4, HL7 table 0516.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The message is refused.
    Error,
    /// The message is accepted, but part of it was not used; the sender should know.
    Warning,
}

/// One thing the receiver has to say about a message.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub location: Option<Location>,
    pub code: ErrorCode,
    pub severity: Severity,
    /// For the sender's interface engineer; never carries patient data.
    pub text: String,
}

impl Issue {
    pub fn error(location: Option<Location>, code: ErrorCode, text: impl Into<String>) -> Issue {
        Issue {
            location,
            code,
            severity: Severity::Error,
            text: text.into(),
        }
    }

    pub fn warning(location: Option<Location>, code: ErrorCode, text: impl Into<String>) -> Issue {
        Issue {
            location,
            code,
            severity: Severity::Warning,
            text: text.into(),
        }
    }
}

impl From<ParseError> for Issue {
    fn from(error: ParseError) -> Issue {
        Issue::error(error.location, error.code, error.text)
    }
}
