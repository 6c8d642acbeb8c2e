//! Bundle processing: transaction (all or nothing), batch (each entry on its own) and
//! collection (all or nothing, each resource an upsert), and single resources, following FHIR
//! R4 http.html#transaction:
//!
//! - entries run in the spec's order (DELETE, POST, PUT, GET) after every identity is resolved;
//! - a `fullUrl` (`urn:uuid:…` or absolute) referenced elsewhere in the bundle is rewritten to
//!   the `Type/id` it resolved to; a `urn:uuid:` that no entry declares is an error;
//! - a conditional reference (`Patient?identifier=sys|val`) is replaced by the one resource it
//!   finds, and fails the entry when it finds none or several (412);
//! - `ifNoneExist` on POST and `Type?query` URLs on PUT and DELETE are conditional operations;
//! - `ifMatch` (`W/"3"`) must name the current version (412 otherwise).
//!
//! Import is idempotent, so that importing the same bundle twice creates nothing twice:
//! a POST without `ifNoneExist` first looks for a resource it created before, by identity keys
//! recorded at every write: the type's first `identifier` (system and value), else a hash of the
//! resource's content as given (without `id` and `meta`). Found by identifier with different
//! content, the resource is updated (a new version); found with the same content, nothing is
//! written. A PUT with the same content as the current version writes nothing either.
//!
//! The processing is given a store and the time and does no I/O of its own; a caller that
//! holds a transaction commits it when `process_entries` returns `Ok` and rolls back otherwise.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::outcome::{RecordError, status_line};
use crate::search::SearchRequest;
use crate::store::{RecordStore, StoredResource, Write, without_version_meta};
use crate::types;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
    Collection,
}

impl BundleKind {
    pub fn of(bundle: &Value) -> Result<BundleKind, RecordError> {
        match bundle["type"].as_str() {
            Some("transaction") => Ok(BundleKind::Transaction),
            Some("batch") => Ok(BundleKind::Batch),
            Some("collection") => Ok(BundleKind::Collection),
            Some(other) => Err(RecordError::unprocessable(format!(
                "Bundle.type `{other}` cannot be imported: send a transaction, batch or collection"
            ))
            .at("Bundle.type")),
            None => Err(RecordError::invalid("Bundle.type is missing").at("Bundle.type")),
        }
    }

    fn response_type(self) -> &'static str {
        match self {
            BundleKind::Transaction | BundleKind::Collection => "transaction-response",
            BundleKind::Batch => "batch-response",
        }
    }
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryResult {
    Created,
    Updated,
    /// Found as it was (conditional create match, or the same content imported again).
    Unchanged,
    /// `existed`: whether there was a resource to delete (deleting nothing succeeds too).
    Deleted {
        existed: bool,
    },
    /// A GET entry's answer: the resource or a searchset Bundle.
    Read(Value),
    Rejected(RecordError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntryOutcome {
    /// The entry's position in the bundle (or in the subset handed in).
    pub index: usize,
    pub resource_type: String,
    pub id: Option<String>,
    pub version: Option<i64>,
    pub last_updated: Option<i64>,
    pub result: EntryResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

#[derive(Debug, Clone)]
struct Entry {
    index: usize,
    full_url: Option<String>,
    method: Method,
    resource_type: String,
    /// `Type/id` target of PUT, DELETE, GET.
    id: Option<String>,
    /// `Type?query` of a conditional PUT, DELETE or GET (search).
    query: Option<Vec<(String, String)>>,
    resource: Option<Value>,
    if_none_exist: Option<Vec<(String, String)>>,
    if_match: Option<i64>,
    /// Identity keys of the resource as given (before references are rewritten).
    identity_keys: Vec<String>,
}

/// How an entry's target was resolved before execution.
#[derive(Debug, Clone)]
enum Target {
    /// Create with this new id.
    Create(String),
    /// A conditional create found this resource: nothing to write.
    Found(String),
    /// An earlier import's resource (identity key) or a PUT's existing id: update if changed.
    Existing(String),
    /// Delete these ids.
    Delete(Vec<String>),
    /// GET: nothing to resolve.
    Read,
}

/// Processes a whole Bundle. For a transaction or a collection, `Err` means nothing may be
/// kept: the caller rolls back. For a batch, each entry's failure is in its outcome.
pub fn process_bundle(
    store: &mut dyn RecordStore,
    bundle: &Value,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<(BundleKind, Vec<EntryOutcome>), RecordError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(RecordError::invalid("expected a Bundle").at("resourceType"));
    }
    let kind = BundleKind::of(bundle)?;
    let entries = match &bundle["entry"] {
        Value::Array(entries) => entries.as_slice(),
        Value::Null => &[],
        _ => return Err(RecordError::invalid("Bundle.entry must be an array").at("Bundle.entry")),
    };
    let outcomes = process_entries(store, kind, entries, now_ms, new_id)?;
    Ok((kind, outcomes))
}

/// Processes `entries` (Bundle.entry JSON) as a bundle of `kind`. The entries may be a subset
/// of a bundle (the server hands device observations to the ingest pipeline and the rest here);
/// outcome indexes are positions in `entries`.
pub fn process_entries(
    store: &mut dyn RecordStore,
    kind: BundleKind,
    entries: &[Value],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<EntryOutcome>, RecordError> {
    match kind {
        BundleKind::Transaction | BundleKind::Collection => {
            let parsed = entries
                .iter()
                .enumerate()
                .map(|(index, entry)| parse_entry(kind, index, entry))
                .collect::<Result<Vec<_>, _>>()?;
            run_all_or_nothing(store, parsed, now_ms, new_id)
        }
        BundleKind::Batch => {
            let mut outcomes = Vec::with_capacity(entries.len());
            for (index, entry) in entries.iter().enumerate() {
                let result = parse_entry(kind, index, entry)
                    .and_then(|parsed| run_all_or_nothing(store, vec![parsed], now_ms, new_id));
                match result {
                    Ok(mut one) => outcomes.append(&mut one),
                    Err(error) if error.status >= 500 && error.code == "exception" => {
                        return Err(error);
                    }
                    Err(error) => outcomes.push(EntryOutcome {
                        index,
                        resource_type: entry_type(entry),
                        id: None,
                        version: None,
                        last_updated: None,
                        result: EntryResult::Rejected(error),
                    }),
                }
            }
            Ok(outcomes)
        }
    }
}

/// Imports one resource on its own: an upsert by id when it has one, else a create that finds
/// an earlier import of the same resource (see the module docs).
pub fn import_resource(
    store: &mut dyn RecordStore,
    resource: &Value,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<EntryOutcome, RecordError> {
    let entry = json!({ "resource": resource });
    let parsed = parse_entry(BundleKind::Collection, 0, &entry).map_err(|mut e| {
        e.expression = single_expression(e.expression.take(), resource);
        e
    })?;
    let mut outcomes = run_all_or_nothing(store, vec![parsed], now_ms, new_id)?;
    Ok(outcomes.remove(0))
}

/// Creates (POST /fhir/{type}) or updates (PUT /fhir/{type}/{id}) one resource, with the
/// request's conditional headers.
pub fn write_resource(
    store: &mut dyn RecordStore,
    method_put: Option<&str>,
    resource: &Value,
    if_none_exist: Option<&str>,
    if_match: Option<&str>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<EntryOutcome, RecordError> {
    let resource_type = resource["resourceType"].as_str().unwrap_or_default();
    let mut request = json!({
        "method": if method_put.is_some() { "PUT" } else { "POST" },
        "url": match method_put { Some(id) => format!("{resource_type}/{id}"), None => resource_type.to_owned() },
    });
    if let Some(query) = if_none_exist {
        request["ifNoneExist"] = json!(query);
    }
    if let Some(etag) = if_match {
        request["ifMatch"] = json!(etag);
    }
    let entry = json!({ "resource": resource, "request": request });
    let parsed = parse_entry(BundleKind::Transaction, 0, &entry).map_err(|mut e| {
        e.expression = single_expression(e.expression.take(), resource);
        e
    })?;
    let mut outcomes = run_all_or_nothing(store, vec![parsed], now_ms, new_id)?;
    Ok(outcomes.remove(0))
}

/// An error's location for a resource sent on its own: `Observation.code`, not
/// `Bundle.entry[0].resource.code`.
fn single_expression(expression: Option<String>, resource: &Value) -> Option<String> {
    let resource_type = resource["resourceType"].as_str().unwrap_or("resource");
    let expression = expression?;
    let inner = expression.strip_prefix("Bundle.entry[0]")?;
    inner
        .strip_prefix(".resource.")
        .map(|element| format!("{resource_type}.{element}"))
}

fn entry_type(entry: &Value) -> String {
    entry["resource"]["resourceType"]
        .as_str()
        .or_else(|| {
            entry["request"]["url"]
                .as_str()
                .map(|url| url.split(['/', '?']).next().unwrap_or(url))
        })
        .unwrap_or("unknown")
        .to_owned()
}

fn parse_entry(kind: BundleKind, index: usize, entry: &Value) -> Result<Entry, RecordError> {
    let at = |what: &str| format!("Bundle.entry[{index}]{what}");
    let full_url = entry["fullUrl"].as_str().map(str::to_owned);
    let resource = match &entry["resource"] {
        Value::Null => None,
        Value::Object(_) => Some(entry["resource"].clone()),
        _ => {
            return Err(
                RecordError::invalid("entry.resource must be a resource").at(at(".resource"))
            );
        }
    };
    let check_resource = |resource: &Option<Value>| -> Result<(), RecordError> {
        if let Some(resource) = resource {
            let resource_type = resource["resourceType"].as_str().ok_or_else(|| {
                RecordError::invalid("resource has no resourceType")
                    .at(at(".resource.resourceType"))
            })?;
            if !types::is_storable_type(resource_type) {
                return Err(RecordError::unprocessable(format!(
                    "`{resource_type}` is not a FHIR R4 resource type the record keeps"
                ))
                .at(at(".resource.resourceType")));
            }
            if let Some(id) = resource.get("id")
                && !id.as_str().is_some_and(types::is_valid_id)
            {
                return Err(
                    RecordError::invalid("resource id must match [A-Za-z0-9-.]{1,64}")
                        .at(at(".resource.id")),
                );
            }
            crate::validate::check_required(resource).map_err(|error| {
                let element = error
                    .expression
                    .as_deref()
                    .and_then(|e| e.split_once('.'))
                    .map_or(String::new(), |(_, element)| element.to_owned());
                let expression = at(&format!(".resource.{element}"));
                error.at(expression)
            })?;
        }

        Ok(())
    };
    if kind == BundleKind::Collection {
        check_resource(&resource)?;
        let resource = resource.ok_or_else(|| {
            RecordError::invalid("a collection entry needs a resource").at(at(".resource"))
        })?;
        let resource_type = resource["resourceType"]
            .as_str()
            .expect("checked")
            .to_owned();
        let id = resource["id"].as_str().map(str::to_owned);
        return Ok(Entry {
            identity_keys: identity_keys(&resource),
            index,
            full_url,
            method: if id.is_some() {
                Method::Put
            } else {
                Method::Post
            },
            resource_type,
            id,
            query: None,
            resource: Some(resource),
            if_none_exist: None,
            if_match: None,
        });
    }

    let request = &entry["request"];
    let method = match request["method"].as_str() {
        Some("GET") | Some("HEAD") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        Some("PATCH") => {
            return Err(
                RecordError::not_supported("PATCH is not supported").at(at(".request.method"))
            );
        }
        _ => {
            return Err(RecordError::invalid(
                "entry.request.method must be GET, POST, PUT or DELETE",
            )
            .at(at(".request.method")));
        }
    };
    let url = request["url"].as_str().ok_or_else(|| {
        RecordError::invalid("entry.request.url is missing").at(at(".request.url"))
    })?;
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(parse_query(query))),
        None => (url, None),
    };
    let mut segments = path.trim_matches('/').split('/');
    let resource_type = segments.next().unwrap_or_default().to_owned();
    let id = segments.next().map(str::to_owned);
    if segments.next().is_some()
        || resource_type.starts_with('$')
        || id.as_deref().is_some_and(|id| id.starts_with('$'))
    {
        return Err(RecordError::not_supported(format!(
            "`{url}`: operations and history in a bundle are not supported"
        ))
        .at(at(".request.url")));
    }
    if !types::is_storable_type(&resource_type) {
        return Err(RecordError::unprocessable(format!(
            "`{resource_type}` is not a FHIR R4 resource type the record keeps"
        ))
        .at(at(".request.url")));
    }
    if let Some(id) = &id
        && !types::is_valid_id(id)
    {
        return Err(
            RecordError::invalid("the id in request.url must match [A-Za-z0-9-.]{1,64}")
                .at(at(".request.url")),
        );
    }
    check_resource(&resource)?;
    match method {
        Method::Post | Method::Put => {
            let Some(resource) = &resource else {
                return Err(RecordError::invalid("POST and PUT entries need a resource")
                    .at(at(".resource")));
            };
            if resource["resourceType"] != resource_type.as_str() {
                return Err(
                    RecordError::invalid("resource type differs from request.url")
                        .at(at(".request.url")),
                );
            }
            if method == Method::Post && (id.is_some() || query.is_some()) {
                return Err(
                    RecordError::invalid("POST request.url is the resource type")
                        .at(at(".request.url")),
                );
            }
            if method == Method::Put {
                if id.is_none() && query.is_none() {
                    return Err(
                        RecordError::invalid("PUT request.url is Type/id or Type?query")
                            .at(at(".request.url")),
                    );
                }
                if let (Some(id), Some(body_id)) = (&id, resource["id"].as_str())
                    && id != body_id
                {
                    return Err(RecordError::invalid(
                        "resource id differs from the id in request.url",
                    )
                    .at(at(".resource.id")));
                }
            }
        }
        Method::Delete if id.is_none() && query.is_none() => {
            return Err(
                RecordError::invalid("DELETE request.url is Type/id or Type?query")
                    .at(at(".request.url")),
            );
        }
        _ => {}
    }
    let if_match = match request["ifMatch"].as_str() {
        None => None,
        Some(etag) => Some(parse_etag(etag).ok_or_else(|| {
            RecordError::invalid("ifMatch must be a version ETag like W/\"3\"")
                .at(at(".request.ifMatch"))
        })?),
    };
    Ok(Entry {
        identity_keys: resource.as_ref().map(identity_keys).unwrap_or_default(),
        index,
        full_url,
        method,
        resource_type,
        id,
        query,
        resource,
        if_none_exist: request["ifNoneExist"]
            .as_str()
            .map(|q| parse_query(q.trim_start_matches('?'))),
        if_match,
    })
}

/// `W/"3"` or `"3"` or `3` as version 3.
pub fn parse_etag(etag: &str) -> Option<i64> {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// Decodes a URL query (`a=b&c=d`, percent-encoding, `+` as space) into pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The identity keys of a resource for import idempotence: its first identifier with a value,
/// and a hash of its content as given.
pub fn identity_keys(resource: &Value) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(identifier) = resource["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|id| id["value"].is_string()))
    {
        keys.push(format!(
            "identifier|{}|{}",
            identifier["system"].as_str().unwrap_or_default(),
            identifier["value"].as_str().unwrap_or_default()
        ));
    }
    let mut canonical = String::new();
    write_canonical(resource, &mut canonical, true);
    let digest = Sha256::digest(canonical.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    keys.push(format!("content|{hex}"));
    keys
}

/// JSON with object keys sorted, whatever order the map keeps them in.
/// `top`: leave out the resource's own `id` and `meta` (not content).
fn write_canonical(value: &Value, out: &mut String, top: bool) {
    match value {
        Value::Object(object) => {
            let sorted: BTreeMap<&String, &Value> = object
                .iter()
                .filter(|(key, _)| !(top && (*key == "id" || *key == "meta")))
                .collect();
            out.push('{');
            for (position, (key, value)) in sorted.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out, false);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_canonical(item, out, false);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn search_ids(
    store: &mut dyn RecordStore,
    resource_type: &str,
    query: &[(String, String)],
) -> Result<Vec<String>, RecordError> {
    let mut request = SearchRequest::parse(resource_type, query)?;
    // A condition without criteria would match any resource of the type.
    if request.clauses.is_empty() {
        return Err(RecordError::invalid(format!(
            "a conditional {resource_type} search needs search parameters"
        )));
    }
    // Two are enough to tell "one" from "several".
    request.count = 2;
    request.offset = 0;
    Ok(store
        .search(&request)?
        .resources
        .into_iter()
        .map(|found| found.id)
        .collect())
}

fn run_all_or_nothing(
    store: &mut dyn RecordStore,
    mut entries: Vec<Entry>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<EntryOutcome>, RecordError> {
    let at = |index: usize| format!("Bundle.entry[{index}]");
    let rank = |method: Method| match method {
        Method::Delete => 0,
        Method::Post => 1,
        Method::Put => 2,
        Method::Get => 3,
    };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&position| rank(entries[position].method));

    // 1. Resolve every target, and what each fullUrl stands for.
    let mut targets: Vec<Option<Target>> = vec![None; entries.len()];
    let mut full_urls: HashMap<String, String> = HashMap::new();
    let mut written: HashSet<String> = HashSet::new();
    // Identity keys of this bundle's POSTs, so that a second entry with the same identifier or
    // content is the same resource, as it will be when the bundle is imported again.
    let mut claimed: HashMap<(String, String), String> = HashMap::new();
    for &position in &order {
        let entry = &entries[position];
        let fail = |error: RecordError| error.at(at(entry.index));
        let target = match entry.method {
            Method::Get => Target::Read,
            Method::Delete => match (&entry.id, &entry.query) {
                (Some(id), _) => Target::Delete(vec![id.clone()]),
                (None, Some(query)) => {
                    let ids = search_ids(store, &entry.resource_type, query).map_err(fail)?;
                    if ids.len() > 1 {
                        return Err(fail(RecordError::precondition_failed(
                            "conditional delete matches more than one resource",
                        )));
                    }
                    Target::Delete(ids)
                }
                (None, None) => unreachable!("checked when parsed"),
            },
            Method::Post => {
                if let Some(query) = &entry.if_none_exist {
                    let ids = search_ids(store, &entry.resource_type, query).map_err(fail)?;
                    match ids.as_slice() {
                        [] => Target::Create(new_id()),
                        [one] => Target::Found(one.clone()),
                        _ => {
                            return Err(fail(RecordError::precondition_failed(
                                "ifNoneExist matches more than one resource",
                            )));
                        }
                    }
                } else if let Some(id) = entry.identity_keys.iter().find_map(|key| {
                    claimed
                        .get(&(entry.resource_type.clone(), key.clone()))
                        .cloned()
                }) {
                    Target::Found(id)
                } else {
                    let mut existing = None;
                    for key in &entry.identity_keys {
                        if let Some(id) = store
                            .find_identity(&entry.resource_type, key)
                            .map_err(fail)?
                        {
                            existing = Some(id);
                            break;
                        }
                    }
                    let target = match existing {
                        Some(id) => Target::Existing(id),
                        None => Target::Create(new_id()),
                    };
                    if let Target::Existing(id) | Target::Create(id) = &target {
                        for key in &entry.identity_keys {
                            claimed.insert((entry.resource_type.clone(), key.clone()), id.clone());
                        }
                    }
                    target
                }
            }
            Method::Put => match (&entry.id, &entry.query) {
                (Some(id), _) => Target::Existing(id.clone()),
                (None, Some(query)) => {
                    let ids = search_ids(store, &entry.resource_type, query).map_err(fail)?;
                    match ids.as_slice() {
                        [] => {
                            let resource = entry.resource.as_ref().expect("checked");
                            Target::Existing(
                                resource["id"]
                                    .as_str()
                                    .map_or_else(&mut *new_id, str::to_owned),
                            )
                        }
                        [one] => Target::Existing(one.clone()),
                        _ => {
                            return Err(fail(RecordError::precondition_failed(
                                "conditional update matches more than one resource",
                            )));
                        }
                    }
                }
                (None, None) => unreachable!("checked when parsed"),
            },
        };
        let resolved_id = match &target {
            Target::Create(id) | Target::Found(id) | Target::Existing(id) => Some(id.clone()),
            Target::Delete(ids) if ids.len() == 1 => Some(ids[0].clone()),
            _ => None,
        };
        if let Some(id) = &resolved_id {
            let key = format!("{}/{id}", entry.resource_type);
            if !matches!(target, Target::Found(_)) && !written.insert(key.clone()) {
                return Err(fail(RecordError::invalid(format!(
                    "two entries change the same resource {}",
                    entry.resource_type
                ))));
            }
            if let Some(full_url) = &entry.full_url {
                full_urls.insert(full_url.clone(), key);
            }
        }
        targets[position] = Some(target);
    }

    // 2. Rewrite references: fullUrls of this bundle, then conditional references.
    for entry in entries.iter_mut() {
        let index = entry.index;
        if let Some(resource) = entry.resource.as_mut() {
            rewrite_references(store, resource, &full_urls).map_err(|error| error.at(at(index)))?;
        }
    }

    // 3. Execute, in the spec's order; outcomes are reported in the bundle's order.
    let mut outcomes: Vec<Option<EntryOutcome>> = vec![None; entries.len()];
    for &position in &order {
        let entry = &mut entries[position];
        let target = targets[position].take().expect("resolved");
        let index = entry.index;
        let outcome = execute(store, entry, target, now_ms).map_err(|error| error.at(at(index)))?;
        outcomes[position] = Some(outcome);
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.expect("executed"))
        .collect())
}

fn rewrite_references(
    store: &mut dyn RecordStore,
    value: &mut Value,
    full_urls: &HashMap<String, String>,
) -> Result<(), RecordError> {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                {
                    if let Some(resolved) = full_urls.get(reference.as_str()) {
                        *reference = resolved.clone();
                    } else if reference.starts_with("urn:uuid:")
                        || reference.starts_with("urn:oid:")
                    {
                        return Err(RecordError::invalid(
                            "a reference names a urn that no entry of the bundle declares as its fullUrl",
                        ));
                    } else if let Some((resource_type, query)) = reference.split_once('?')
                        && types::is_storable_type(resource_type)
                    {
                        let ids = search_ids(store, resource_type, &parse_query(query))?;
                        match ids.as_slice() {
                            [one] => *reference = format!("{resource_type}/{one}"),
                            [] => {
                                return Err(RecordError::precondition_failed(format!(
                                    "conditional reference to {resource_type} finds no resource"
                                )));
                            }
                            _ => {
                                return Err(RecordError::precondition_failed(format!(
                                    "conditional reference to {resource_type} finds more than one resource"
                                )));
                            }
                        }
                    }
                } else {
                    rewrite_references(store, child, full_urls)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(store, item, full_urls)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn execute(
    store: &mut dyn RecordStore,
    entry: &mut Entry,
    target: Target,
    now_ms: i64,
) -> Result<EntryOutcome, RecordError> {
    let outcome =
        |id: Option<String>, stored: Option<&StoredResource>, result: EntryResult| EntryOutcome {
            index: entry.index,
            resource_type: entry.resource_type.clone(),
            id,
            version: stored.map(|s| s.version),
            last_updated: stored.map(|s| s.last_updated),
            result,
        };
    match target {
        Target::Read => {
            if let Some(id) = &entry.id {
                return Ok(match store.current(&entry.resource_type, id)? {
                    Some(found) if !found.deleted => {
                        let resource = found.resource.clone();
                        outcome(Some(id.clone()), Some(&found), EntryResult::Read(resource))
                    }
                    Some(found) => outcome(
                        Some(id.clone()),
                        Some(&found),
                        EntryResult::Rejected(RecordError::gone(format!(
                            "{} was deleted",
                            entry.resource_type
                        ))),
                    ),
                    None => outcome(
                        Some(id.clone()),
                        None,
                        EntryResult::Rejected(RecordError::not_found(format!(
                            "no such {}",
                            entry.resource_type
                        ))),
                    ),
                });
            }
            let query = entry.query.clone().unwrap_or_default();
            let result = match SearchRequest::parse(&entry.resource_type, &query) {
                Ok(request) => {
                    let page = store.search(&request)?;
                    EntryResult::Read(json!({
                        "resourceType": "Bundle", "type": "searchset", "total": page.total,
                        "entry": page.resources.iter().map(|found| json!({
                            "fullUrl": format!("{}/{}", found.resource_type, found.id),
                            "resource": found.resource, "search": { "mode": "match" }
                        })).collect::<Vec<_>>()
                    }))
                }
                Err(error) => EntryResult::Rejected(error),
            };
            Ok(outcome(None, None, result))
        }
        Target::Delete(ids) => {
            let mut existed = false;
            let mut last = None;
            for id in &ids {
                if store
                    .current(&entry.resource_type, id)?
                    .is_some_and(|found| !found.deleted)
                {
                    existed = true;
                    last = Some(store.write(
                        Write::Delete {
                            resource_type: entry.resource_type.clone(),
                            id: id.clone(),
                        },
                        now_ms,
                    )?);
                }
            }
            Ok(outcome(
                ids.first().cloned(),
                last.as_ref(),
                EntryResult::Deleted { existed },
            ))
        }
        Target::Found(id) => {
            let found = store.current(&entry.resource_type, &id)?;
            Ok(outcome(Some(id), found.as_ref(), EntryResult::Unchanged))
        }
        Target::Create(id) | Target::Existing(id) => {
            // Each entry executes once: its resource moves into the store.
            let mut resource = entry.resource.take().expect("POST and PUT have a resource");
            resource["id"] = Value::String(id.clone());
            let current = store
                .current(&entry.resource_type, &id)?
                .filter(|found| !found.deleted);
            if let Some(wanted) = entry.if_match {
                match &current {
                    Some(found) if found.version == wanted => {}
                    Some(found) => {
                        return Err(RecordError::precondition_failed(format!(
                            "ifMatch names version {wanted} but the current version is {}",
                            found.version
                        )));
                    }
                    None => {
                        return Err(RecordError::precondition_failed(format!(
                            "ifMatch names version {wanted} of a {} that does not exist",
                            entry.resource_type
                        )));
                    }
                }
            }
            if let Some(found) = &current
                && without_version_meta(&found.resource) == without_version_meta(&resource)
            {
                return Ok(outcome(Some(id), Some(found), EntryResult::Unchanged));
            }
            let stored = store.write(
                Write::Put {
                    resource,
                    identity_keys: entry.identity_keys.clone(),
                },
                now_ms,
            )?;
            let result = if current.is_some() {
                EntryResult::Updated
            } else {
                EntryResult::Created
            };
            Ok(outcome(Some(id), Some(&stored), result))
        }
    }
}

/// The transaction-response or batch-response Bundle for `outcomes`.
pub fn response_bundle(kind: BundleKind, outcomes: &[EntryOutcome]) -> Value {
    let entries: Vec<Value> = outcomes
        .iter()
        .map(|outcome| {
            let status = match &outcome.result {
                EntryResult::Created => 201,
                EntryResult::Updated | EntryResult::Unchanged | EntryResult::Read(_) => 200,
                EntryResult::Deleted { .. } => 204,
                EntryResult::Rejected(error) => error.status,
            };
            let mut response = json!({ "status": status_line(status) });
            if let (Some(id), Some(version)) = (&outcome.id, outcome.version)
                && !matches!(
                    outcome.result,
                    EntryResult::Rejected(_) | EntryResult::Deleted { .. }
                )
            {
                response["location"] =
                    json!(format!("{}/{id}/_history/{version}", outcome.resource_type));
                response["etag"] = json!(format!("W/\"{version}\""));
            }
            if let Some(last_updated) = outcome.last_updated {
                response["lastModified"] = json!(crate::date::format_instant(last_updated));
            }
            let mut entry = json!({ "response": response });
            match &outcome.result {
                EntryResult::Rejected(error) => {
                    entry["response"]["outcome"] = error.to_operation_outcome()
                }
                EntryResult::Read(resource) => entry["resource"] = resource.clone(),
                _ => {}
            }
            entry
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": kind.response_type(), "entry": entries })
}

/// Counts of what imports did, by resource type, and the reasons of rejections.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportSummary {
    /// type → [created, updated, unchanged, deleted, rejected]
    pub by_type: BTreeMap<String, [u64; 5]>,
    /// reason → count
    pub rejections: BTreeMap<String, u64>,
}

impl ImportSummary {
    pub fn add(&mut self, outcomes: &[EntryOutcome]) {
        for outcome in outcomes {
            let column = match &outcome.result {
                EntryResult::Created => 0,
                EntryResult::Updated => 1,
                EntryResult::Unchanged | EntryResult::Read(_) => 2,
                EntryResult::Deleted { .. } => 3,
                EntryResult::Rejected(error) => {
                    *self.rejections.entry(error.to_string()).or_default() += 1;
                    4
                }
            };
            self.by_type
                .entry(outcome.resource_type.clone())
                .or_default()[column] += 1;
        }
    }

    /// A whole bundle (transaction, collection) or file refused: every entry is rejected.
    pub fn reject(&mut self, resource_types: &[String], reason: &str) {
        *self.rejections.entry(reason.to_owned()).or_default() += 1;
        for resource_type in resource_types {
            self.by_type.entry(resource_type.clone()).or_default()[4] += 1;
        }
    }

    pub fn total(&self, column: usize) -> u64 {
        self.by_type.values().map(|counts| counts[column]).sum()
    }

    /// A table for people: one row per type, then the rejection reasons.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "type", "created", "updated", "unchanged", "deleted", "rejected"
        );
        for (resource_type, c) in &self.by_type {
            out.push_str(&format!(
                "{resource_type:<28} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                c[0], c[1], c[2], c[3], c[4]
            ));
        }
        out.push_str(&format!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "total",
            self.total(0),
            self.total(1),
            self.total(2),
            self.total(3),
            self.total(4)
        ));
        for (reason, count) in &self.rejections {
            out.push_str(&format!("rejected ({count}): {reason}\n"));
        }
        out
    }
}

/// The resource types of a bundle's entries (for reporting a refused bundle).
pub fn entry_types(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map_or_else(Vec::new, |entries| entries.iter().map(entry_type).collect())
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
