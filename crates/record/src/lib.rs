//! The medical record as FHIR R4 resources, kept generically: a resource is JSON
//! (`serde_json::Value`), and what the record knows about each type is data: which types exist
//! (`types`), which search parameters each type has and where their values are (`params`).
//!
//! This crate does no I/O and reads no clock. It decides; a [`RecordStore`] (the SQL store in
//! production, [`memory::MemoryRecord`] in tests) keeps. Bundle processing (`bundle`) takes the
//! bundle, the time and an id source as values and calls the store for lookups and writes, so
//! the same rules run over SQLite inside one SQL transaction or over memory.
//!
//! Errors are [`RecordError`]s, which carry the HTTP status and the FHIR issue code they map to,
//! so every edge reports them the same way (`outcome::operation_outcome`).

pub mod bundle;
pub mod date;
pub mod memory;
pub mod outcome;
pub mod params;
pub mod search;
pub mod store;
pub mod types;
pub mod validate;
pub mod ward;

pub use bundle::{
    BundleKind, EntryOutcome, EntryResult, ImportSummary, import_resource, process_bundle,
    process_entries, response_bundle, write_resource,
};
pub use outcome::RecordError;
pub use params::{IndexValue, ParamKind, SearchParamDef, index_values, search_params_of};
pub use search::{Clause, ClauseValue, SearchRequest, SortKey};
pub use store::{
    RecordStore, SearchPage, StoredResource, Write, with_version_meta, without_version_meta,
};
