//! The store's errors. Messages are lowercase and never carry patient data (names, birth dates;
//! patient ids are left out too, as an MRN identifies a person).

use crate::waveform_codec::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database has schema version {found}, newer than this build knows ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("patient not found")]
    PatientNotFound,
    #[error("bed `{bed}` is occupied by another patient")]
    BedOccupied { bed: String },
    #[error("the patient has no open stay in a bed")]
    NotAdmitted,
    #[error("{what} at {at}ms is before the open range started at {from}ms")]
    BeforeOpenRange {
        what: &'static str,
        at: i64,
        from: i64,
    },
    #[error("log offset {0} does not fit a signed 64-bit integer")]
    OffsetTooLarge(u64),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    #[error("identifier {system}|{value} already names device `{device}`")]
    IdentifierTaken {
        system: String,
        value: String,
        device: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("waveform codec: {0}")]
    Codec(#[from] CodecError),
}
