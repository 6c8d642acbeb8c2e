//! The record in memory: a second, small implementation of [`RecordStore`] over maps, which
//! runs the same bundle rules in the unit tests of this crate and answers searches with
//! [`ClauseValue::matches`], the reference semantics the SQL store's queries must agree with.

use std::collections::HashMap;

use serde_json::Value;

use crate::outcome::RecordError;
use crate::params::{self, IndexValue, ParamKind};
use crate::search::SearchRequest;
use crate::store::{RecordStore, SearchPage, StoredResource, Write, with_version_meta};

#[derive(Debug, Default, Clone)]
pub struct MemoryRecord {
    /// (type, id) → every version, oldest first.
    versions: HashMap<(String, String), Vec<StoredResource>>,
    identities: HashMap<(String, String), String>,
}

impl MemoryRecord {
    pub fn new() -> MemoryRecord {
        MemoryRecord::default()
    }

    /// Every version of a resource, oldest first.
    pub fn history(&self, resource_type: &str, id: &str) -> &[StoredResource] {
        self.versions
            .get(&(resource_type.to_owned(), id.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// How many current, not deleted resources of a type there are.
    pub fn count(&self, resource_type: &str) -> usize {
        self.live(resource_type).count()
    }

    fn live<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a StoredResource> {
        self.versions
            .iter()
            .filter(move |((t, _), _)| t == resource_type)
            .filter_map(|(_, versions)| versions.last())
            .filter(|current| !current.deleted)
    }
}

impl RecordStore for MemoryRecord {
    fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, RecordError> {
        Ok(self.history(resource_type, id).last().cloned())
    }

    fn search(&mut self, request: &SearchRequest) -> Result<SearchPage, RecordError> {
        let mut matches: Vec<(&StoredResource, Vec<(&'static str, IndexValue)>)> = self
            .live(&request.resource_type)
            .map(|found| (found, params::index_values(&found.resource)))
            .filter(|(found, values)| {
                request.clauses.iter().all(|clause| {
                    let of_param: Vec<&IndexValue> = values
                        .iter()
                        .filter(|(name, _)| *name == clause.param)
                        .map(|(_, value)| value)
                        .collect();
                    clause
                        .values
                        .iter()
                        .any(|value| value.matches(&found.id, found.last_updated, &of_param))
                })
            })
            .collect();
        matches.sort_by_cached_key(|(found, values)| OrderKey::of(request, found, values));
        Ok(SearchPage {
            total: matches.len(),
            resources: matches
                .into_iter()
                .skip(request.offset)
                .take(request.count)
                .map(|(found, _)| found.clone())
                .collect(),
        })
    }

    fn find_identity(
        &mut self,
        resource_type: &str,
        key: &str,
    ) -> Result<Option<String>, RecordError> {
        Ok(self
            .identities
            .get(&(resource_type.to_owned(), key.to_owned()))
            .cloned())
    }

    fn write(&mut self, write: Write, now_ms: i64) -> Result<StoredResource, RecordError> {
        let (resource_type, id, resource, keys) = match write {
            Write::Put {
                resource,
                identity_keys,
            } => (
                resource["resourceType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                resource["id"].as_str().unwrap_or_default().to_owned(),
                Some(resource),
                identity_keys,
            ),
            Write::Delete { resource_type, id } => (resource_type, id, None, Vec::new()),
        };
        let versions = self
            .versions
            .entry((resource_type.clone(), id.clone()))
            .or_default();
        let version = versions.last().map_or(1, |last| last.version + 1);
        let stored = StoredResource {
            resource_type: resource_type.clone(),
            id: id.clone(),
            version,
            last_updated: now_ms,
            deleted: resource.is_none(),
            resource: resource.map_or(Value::Null, |r| with_version_meta(r, &id, version, now_ms)),
        };
        versions.push(stored.clone());
        for key in keys {
            self.identities
                .insert((resource_type.clone(), key), id.clone());
        }
        Ok(stored)
    }
}

/// Where a resource comes in a search's results: the request's `_sort` keys, then last update,
/// then id. The reference order the SQL store's ORDER BY follows, and what merges a page of the
/// record with results found elsewhere (device observations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// Each `_sort` key's value and whether it is descending.
    keys: Vec<((i64, String), bool)>,
    last_updated: i64,
    id: String,
}

impl OrderKey {
    pub fn of(
        request: &SearchRequest,
        found: &StoredResource,
        values: &[(&'static str, IndexValue)],
    ) -> OrderKey {
        OrderKey {
            keys: request
                .sort
                .iter()
                .map(|key| (sort_value(found, values, &key.param), key.descending))
                .collect(),
            last_updated: found.last_updated,
            id: found.id.clone(),
        }
    }
}

impl Ord for OrderKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        for ((mine, descending), (theirs, _)) in self.keys.iter().zip(&other.keys) {
            let ordering = mine.cmp(theirs);
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering.is_ne() {
                return ordering;
            }
        }
        (self.last_updated, &self.id).cmp(&(other.last_updated, &other.id))
    }
}

impl PartialOrd for OrderKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What a resource sorts by for a parameter: the lowest date or the first string.
fn sort_value(
    found: &StoredResource,
    values: &[(&'static str, IndexValue)],
    param: &str,
) -> (i64, String) {
    match param {
        "_id" => (0, found.id.clone()),
        "_lastUpdated" => (found.last_updated, String::new()),
        _ => {
            let kind = params::search_param(&found.resource_type, param).map(|def| def.kind);
            let mut best: Option<(i64, String)> = None;
            for (name, value) in values {
                if *name != param {
                    continue;
                }
                let candidate = match (kind, value) {
                    (Some(ParamKind::Date), IndexValue::Date(range)) => (range.low, String::new()),
                    (Some(ParamKind::String), IndexValue::String(text)) => (0, text.clone()),
                    _ => continue,
                };
                if best.as_ref().is_none_or(|b| candidate < *b) {
                    best = Some(candidate);
                }
            }
            // Resources without a value sort last, as SQL's NULLs do in the SQL store (ascending).
            best.unwrap_or((i64::MAX, String::new()))
        }
    }
}
