//! What bundle processing needs from a store: read the current version, search, find a
//! resource by an identity key (import idempotence), and write a new version. The SQL store
//! implements it over one SQL transaction; `memory::MemoryRecord` over maps.

use serde_json::Value;

use crate::outcome::RecordError;
use crate::search::SearchRequest;

/// One version of a resource as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Epoch milliseconds.
    pub last_updated: i64,
    pub deleted: bool,
    /// The resource with `id`, `meta.versionId` and `meta.lastUpdated` set; `Null` when deleted.
    pub resource: Value,
}

/// A change to the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create or update: `resource` has its `resourceType` and `id`; the store sets the version
    /// and `meta`, indexes it, and remembers `identity_keys` as pointing to it.
    Put {
        resource: Value,
        identity_keys: Vec<String>,
    },
    /// A new version that says the resource is deleted.
    Delete { resource_type: String, id: String },
}

/// A page of search results and the number of all matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchPage {
    pub total: usize,
    pub resources: Vec<StoredResource>,
}

pub trait RecordStore {
    /// The latest version of a resource, deleted or not.
    fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, RecordError>;
    /// Current, not deleted resources matching `request`, sorted and paged as it says.
    fn search(&mut self, request: &SearchRequest) -> Result<SearchPage, RecordError>;
    /// The id a previous write recorded under `key` for `resource_type`.
    fn find_identity(
        &mut self,
        resource_type: &str,
        key: &str,
    ) -> Result<Option<String>, RecordError>;
    /// Writes a new version at `now_ms` and returns it.
    fn write(&mut self, write: Write, now_ms: i64) -> Result<StoredResource, RecordError>;
}

/// `resource` with `id` and the version's `meta.versionId` and `meta.lastUpdated`, as served.
pub fn with_version_meta(mut resource: Value, id: &str, version: i64, last_updated: i64) -> Value {
    resource["id"] = Value::String(id.to_owned());
    if !resource["meta"].is_object() {
        resource["meta"] = Value::Object(Default::default());
    }
    resource["meta"]["versionId"] = Value::String(version.to_string());
    resource["meta"]["lastUpdated"] = Value::String(crate::date::format_instant(last_updated));
    resource
}

/// `resource` without what a version adds (`meta.versionId`, `meta.lastUpdated`), to compare
/// content across versions.
pub fn without_version_meta(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.as_object_mut().expect("object").remove("meta");
        }
    }
    resource
}
