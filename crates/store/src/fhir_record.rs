//! The medical record (FHIR R4 resources) in SQLite: versions, the current pointer, the search
//! index and identity keys (`schema/v4_fhir_record.sql`). The rules (what a bundle does, what a
//! search means) live in the `record` crate; this module keeps and finds.
//!
//! Every change runs in one SQL transaction: a transaction or collection Bundle commits whole or
//! not at all; a batch commits the entries that succeeded.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::Value;

use record::date::DateRange;
use record::params::{IndexValue, ParamKind, index_values, search_param};
use record::search::{ClauseValue, Prefix, SearchRequest, StringMode, TokenSystem};
use record::{
    BundleKind, EntryOutcome, RecordError, RecordStore, SearchPage, StoredResource, Write,
    with_version_meta,
};

use crate::Store;

fn sql_error(error: rusqlite::Error) -> RecordError {
    RecordError::store(format!("sqlite: {error}"))
}

/// A new server-assigned resource id: a random (version 4) UUID.
pub fn new_resource_id() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Store {
    /// Imports a Bundle (transaction, batch or collection) in one SQL transaction.
    pub fn fhir_import_bundle(
        &mut self,
        bundle: &Value,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<(BundleKind, Vec<EntryOutcome>), RecordError> {
        self.in_transaction(|record| record::process_bundle(record, bundle, now_ms, new_id))
    }

    /// Processes some entries of a Bundle of `kind` (a subset the server routes to the record).
    pub fn fhir_process_entries(
        &mut self,
        kind: BundleKind,
        entries: &[Value],
        now_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<Vec<EntryOutcome>, RecordError> {
        self.in_transaction(|record| record::process_entries(record, kind, entries, now_ms, new_id))
    }

    /// Imports one resource: an upsert by id when it has one, else an idempotent create.
    pub fn fhir_import_resource(
        &mut self,
        resource: &Value,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<EntryOutcome, RecordError> {
        self.in_transaction(|record| record::import_resource(record, resource, now_ms, new_id))
    }

    /// `POST /fhir/{type}` (`put_id` None) or `PUT /fhir/{type}/{id}`, with If-None-Exist and
    /// If-Match.
    pub fn fhir_write_resource(
        &mut self,
        put_id: Option<&str>,
        resource: &Value,
        if_none_exist: Option<&str>,
        if_match: Option<&str>,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<EntryOutcome, RecordError> {
        self.in_transaction(|record| {
            record::write_resource(
                record,
                put_id,
                resource,
                if_none_exist,
                if_match,
                now_ms,
                new_id,
            )
        })
    }

    /// Deletes a resource (a new version marked deleted). Returns the deletion, or `None` when
    /// there was nothing to delete.
    pub fn fhir_delete(
        &mut self,
        resource_type: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<StoredResource>, RecordError> {
        self.in_transaction(|record| match record.current(resource_type, id)? {
            Some(found) if !found.deleted => record
                .write(
                    Write::Delete {
                        resource_type: resource_type.to_owned(),
                        id: id.to_owned(),
                    },
                    now_ms,
                )
                .map(Some),
            _ => Ok(None),
        })
    }

    fn in_transaction<T>(
        &mut self,
        work: impl FnOnce(&mut SqlRecord<'_>) -> Result<T, RecordError>,
    ) -> Result<T, RecordError> {
        let tx = self.conn.transaction().map_err(sql_error)?;
        let result = work(&mut SqlRecord { conn: &tx });
        match result {
            Ok(value) => {
                tx.commit().map_err(sql_error)?;
                Ok(value)
            }
            // Dropping the transaction rolls it back.
            Err(error) => Err(error),
        }
    }

    /// The latest version of a resource (deleted or not).
    pub fn fhir_read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, RecordError> {
        SqlRecord { conn: &self.conn }.current(resource_type, id)
    }

    /// One version of a resource.
    pub fn fhir_vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, RecordError> {
        self.conn
            .query_row(
                "SELECT version, last_updated_ms, deleted, resource FROM fhir_resources
                 WHERE resource_type = ?1 AND id = ?2 AND version = ?3",
                params![resource_type, id, version],
                |row| stored_from_row(resource_type, id, row),
            )
            .optional()
            .map_err(sql_error)?
            .transpose()
    }

    /// Every version of a resource, newest first.
    pub fn fhir_history(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<StoredResource>, RecordError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT version, last_updated_ms, deleted, resource FROM fhir_resources
                 WHERE resource_type = ?1 AND id = ?2 ORDER BY version DESC",
            )
            .map_err(sql_error)?;
        let rows = statement
            .query_map(params![resource_type, id], |row| {
                stored_from_row(resource_type, id, row)
            })
            .map_err(sql_error)?;
        rows.map(|row| row.map_err(sql_error)?).collect()
    }

    /// Current, not deleted resources matching a search, sorted and paged.
    pub fn fhir_search(&self, request: &SearchRequest) -> Result<SearchPage, RecordError> {
        SqlRecord { conn: &self.conn }.search(request)
    }

    /// How many current, not deleted resources there are of each type.
    pub fn fhir_counts(&self) -> Result<Vec<(String, u64)>, RecordError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT resource_type, count(*) FROM fhir_current WHERE deleted = 0
                 GROUP BY resource_type ORDER BY resource_type",
            )
            .map_err(sql_error)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))
            .map_err(sql_error)?;
        rows.collect::<Result<_, _>>().map_err(sql_error)
    }
}

fn stored_from_row(
    resource_type: &str,
    id: &str,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<StoredResource, RecordError>> {
    let text: Option<String> = row.get(3)?;
    let resource = match text {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(&text)
            .map_err(|error| RecordError::store(format!("stored resource is not JSON: {error}"))),
    };
    let (version, last_updated, deleted): (i64, i64, bool) =
        (row.get(0)?, row.get(1)?, row.get(2)?);
    Ok(resource.map(|resource| StoredResource {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version,
        last_updated,
        deleted,
        resource,
    }))
}

/// The record over one connection (inside a transaction when it writes).
pub struct SqlRecord<'c> {
    conn: &'c Connection,
}

impl RecordStore for SqlRecord<'_> {
    fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, RecordError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT r.version, r.last_updated_ms, r.deleted, r.resource
                 FROM fhir_current c JOIN fhir_resources r
                   ON r.resource_type = c.resource_type AND r.id = c.id AND r.version = c.version
                 WHERE c.resource_type = ?1 AND c.id = ?2",
            )
            .map_err(sql_error)?;
        statement
            .query_row(params![resource_type, id], |row| {
                stored_from_row(resource_type, id, row)
            })
            .optional()
            .map_err(sql_error)?
            .transpose()
    }

    fn search(&mut self, request: &SearchRequest) -> Result<SearchPage, RecordError> {
        let mut sql_where = String::from("c.resource_type = ? AND c.deleted = 0");
        let mut args: Vec<SqlValue> = vec![SqlValue::Text(request.resource_type.clone())];
        for clause in &request.clauses {
            let kind = search_param(&request.resource_type, &clause.param).map(|def| def.kind);
            let mut alternatives = Vec::new();
            for value in &clause.values {
                alternatives.push(condition(
                    &request.resource_type,
                    &clause.param,
                    kind,
                    value,
                    &mut args,
                ));
            }
            sql_where.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
        }
        let total: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) FROM fhir_current c WHERE {sql_where}"),
                params_from_iter(args.iter()),
                |row| row.get(0),
            )
            .map_err(sql_error)?;
        if request.count == 0 {
            return Ok(SearchPage {
                total: total as usize,
                resources: Vec::new(),
            });
        }
        let mut order = Vec::new();
        let mut order_args: Vec<SqlValue> = Vec::new();
        for key in &request.sort {
            let direction = if key.descending { "DESC" } else { "ASC" };
            match key.param.as_str() {
                "_id" => order.push(format!("c.id {direction}")),
                "_lastUpdated" => order.push(format!("c.last_updated_ms {direction}")),
                param => {
                    let kind = search_param(&request.resource_type, param).map(|def| def.kind);
                    let expression = match kind {
                        Some(ParamKind::Date) => {
                            "(SELECT min(+d.low_ms) FROM fhir_index_date d WHERE d.resource_type = c.resource_type AND d.id = c.id AND d.param = ?)"
                        }
                        _ => {
                            "(SELECT min(+s.value) FROM fhir_index_string s WHERE s.resource_type = c.resource_type AND s.id = c.id AND s.param = ?)"
                        }
                    };
                    // Resources without a value sort after those with one (ascending). The
                    // unary `+` keeps SQLite from answering `min` by walking the value index
                    // of every resource; it looks up this resource's values instead.
                    order.push(format!("{expression} IS NULL {direction}"));
                    order.push(format!("{expression} {direction}"));
                    order_args.push(SqlValue::Text(param.to_owned()));
                    order_args.push(SqlValue::Text(param.to_owned()));
                }
            }
        }
        order.push("c.last_updated_ms ASC".into());
        order.push("c.id ASC".into());
        let sql = format!(
            "SELECT c.id, r.version, r.last_updated_ms, r.deleted, r.resource
             FROM fhir_current c JOIN fhir_resources r
               ON r.resource_type = c.resource_type AND r.id = c.id AND r.version = c.version
             WHERE {sql_where} ORDER BY {} LIMIT ? OFFSET ?",
            order.join(", ")
        );
        let mut all_args = args;
        all_args.extend(order_args);
        all_args.push(SqlValue::Integer(request.count as i64));
        all_args.push(SqlValue::Integer(request.offset as i64));
        let mut statement = self.conn.prepare(&sql).map_err(sql_error)?;
        let rows = statement
            .query_map(params_from_iter(all_args.iter()), |row| {
                let id: String = row.get(0)?;
                let text: Option<String> = row.get(4)?;
                Ok((id, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, text))
            })
            .map_err(sql_error)?;
        let mut resources = Vec::new();
        for row in rows {
            let (id, version, last_updated, text) = row.map_err(sql_error)?;
            let resource =
                serde_json::from_str(text.as_deref().unwrap_or("null")).map_err(|error| {
                    RecordError::store(format!("stored resource is not JSON: {error}"))
                })?;
            resources.push(StoredResource {
                resource_type: request.resource_type.clone(),
                id,
                version,
                last_updated,
                deleted: false,
                resource,
            });
        }
        Ok(SearchPage {
            total: total as usize,
            resources,
        })
    }

    fn find_identity(
        &mut self,
        resource_type: &str,
        key: &str,
    ) -> Result<Option<String>, RecordError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT id FROM fhir_identity WHERE resource_type = ?1 AND key = ?2")
            .map_err(sql_error)?;
        statement
            .query_row(params![resource_type, key], |row| row.get(0))
            .optional()
            .map_err(sql_error)
    }

    fn write(&mut self, write: Write, now_ms: i64) -> Result<StoredResource, RecordError> {
        let conn = self.conn;
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
        let previous: Option<i64> = conn
            .prepare_cached("SELECT version FROM fhir_current WHERE resource_type = ?1 AND id = ?2")
            .and_then(|mut s| {
                s.query_row(params![resource_type, id], |row| row.get(0))
                    .optional()
            })
            .map_err(sql_error)?;
        let version = previous.map_or(1, |v| v + 1);
        let deleted = resource.is_none();
        let resource = resource.map(|r| with_version_meta(r, &id, version, now_ms));
        let text = resource.as_ref().map(Value::to_string);
        conn.prepare_cached(
            "INSERT INTO fhir_resources (resource_type, id, version, last_updated_ms, deleted, resource)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| s.execute(params![resource_type, id, version, now_ms, deleted, text]))
        .map_err(sql_error)?;
        conn.prepare_cached(
            "INSERT INTO fhir_current (resource_type, id, version, last_updated_ms, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (resource_type, id) DO UPDATE SET
               version = excluded.version, last_updated_ms = excluded.last_updated_ms,
               deleted = excluded.deleted",
        )
        .and_then(|mut s| s.execute(params![resource_type, id, version, now_ms, deleted]))
        .map_err(sql_error)?;
        // The index describes current versions only: out with the old values, in with the new.
        if previous.is_some() {
            for table in [
                "fhir_index_token",
                "fhir_index_string",
                "fhir_index_date",
                "fhir_index_reference",
            ] {
                conn.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE resource_type = ?1 AND id = ?2"
                ))
                .and_then(|mut s| s.execute(params![resource_type, id]))
                .map_err(sql_error)?;
            }
        }
        if let Some(resource) = &resource {
            index(conn, &resource_type, &id, resource).map_err(sql_error)?;
        }
        for key in keys {
            conn.prepare_cached(
                "INSERT INTO fhir_identity (resource_type, key, id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (resource_type, key) DO UPDATE SET id = excluded.id",
            )
            .and_then(|mut s| s.execute(params![resource_type, key, id]))
            .map_err(sql_error)?;
        }
        Ok(StoredResource {
            resource_type,
            id,
            version,
            last_updated: now_ms,
            deleted,
            resource: resource.unwrap_or(Value::Null),
        })
    }
}

fn index(
    conn: &Connection,
    resource_type: &str,
    id: &str,
    resource: &Value,
) -> rusqlite::Result<()> {
    for (param, value) in index_values(resource) {
        match value {
            IndexValue::Token { system, code } => conn
                .prepare_cached(
                    "INSERT INTO fhir_index_token (resource_type, id, param, system, code) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![resource_type, id, param, system, code])?,
            IndexValue::String(value) => conn
                .prepare_cached(
                    "INSERT INTO fhir_index_string (resource_type, id, param, value) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![resource_type, id, param, value])?,
            IndexValue::Date(range) => conn
                .prepare_cached(
                    "INSERT INTO fhir_index_date (resource_type, id, param, low_ms, high_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![resource_type, id, param, range.low, range.high])?,
            IndexValue::Reference { target_type, target_id } => conn
                .prepare_cached(
                    "INSERT INTO fhir_index_reference (resource_type, id, param, target_type, target_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![resource_type, id, param, target_type, target_id])?,
        };
    }
    Ok(())
}

/// The SQL for one value of a clause (the same meaning as `ClauseValue::matches`), pushing
/// its parameters onto `args` in the order of its placeholders.
///
/// Index conditions are `c.id IN (SELECT id FROM fhir_index_… WHERE type, param, value)` so
/// that SQLite can start from the value's index (a patient's observations) instead of probing
/// every resource of the type.
fn condition(
    resource_type: &str,
    param: &str,
    kind: Option<ParamKind>,
    value: &ClauseValue,
    args: &mut Vec<SqlValue>,
) -> String {
    let text = |args: &mut Vec<SqlValue>, value: &str| args.push(SqlValue::Text(value.to_owned()));
    // `filter` is built after the type and param placeholders, so its own arguments follow.
    let in_index = |args: &mut Vec<SqlValue>,
                    table: &str,
                    negate: bool,
                    filter: &dyn Fn(&mut Vec<SqlValue>) -> String| {
        text(args, resource_type);
        text(args, param);
        let filter = filter(args);
        format!(
            "c.id {}IN (SELECT x.id FROM {table} x WHERE x.resource_type = ? AND x.param = ? AND {filter})",
            if negate { "NOT " } else { "" }
        )
    };
    match value {
        ClauseValue::Id(id) => {
            text(args, id);
            "c.id = ?".into()
        }
        ClauseValue::LastUpdated(prefix, range) => date_condition(
            *prefix,
            "c.last_updated_ms",
            "c.last_updated_ms",
            range,
            args,
        ),
        ClauseValue::Missing(missing) => {
            let table = match kind {
                Some(ParamKind::Token) => "fhir_index_token",
                Some(ParamKind::String) => "fhir_index_string",
                Some(ParamKind::Date) => "fhir_index_date",
                Some(ParamKind::Reference) => "fhir_index_reference",
                // `_id` is never missing.
                None => return if *missing { "0".into() } else { "1".into() },
            };
            in_index(args, table, *missing, &|_| "1".into())
        }
        ClauseValue::Token {
            system,
            code,
            negate,
        } => in_index(args, "fhir_index_token", *negate, &|args| {
            let mut filter = Vec::new();
            if let Some(code) = code {
                filter.push("x.code = ?");
                text(args, code);
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => filter.push("x.system IS NULL"),
                TokenSystem::Is(system) => {
                    filter.push("x.system = ?");
                    text(args, system);
                }
            }
            if filter.is_empty() {
                filter.push("1");
            }
            filter.join(" AND ")
        }),
        ClauseValue::String { value, mode } => {
            in_index(args, "fhir_index_string", false, &|args| {
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                match mode {
                    StringMode::Exact => {
                        text(args, value);
                        "x.value = ?".into()
                    }
                    StringMode::StartsWith => {
                        text(args, &format!("{escaped}%"));
                        "x.value LIKE ? ESCAPE '\\'".into()
                    }
                    StringMode::Contains => {
                        text(args, &format!("%{escaped}%"));
                        "x.value LIKE ? ESCAPE '\\'".into()
                    }
                }
            })
        }
        ClauseValue::Date(prefix, range) => in_index(args, "fhir_index_date", false, &|args| {
            date_condition(*prefix, "x.low_ms", "x.high_ms", range, args)
        }),
        ClauseValue::Reference { target_type, id } => {
            in_index(args, "fhir_index_reference", false, &|args| {
                text(args, id);
                match target_type {
                    Some(target_type) => {
                        text(args, target_type);
                        "x.target_id = ? AND x.target_type = ?".into()
                    }
                    None => "x.target_id = ?".into(),
                }
            })
        }
    }
}

/// A prefix over a resource range [`low`, `high`] and the parameter's `range`, as
/// `Prefix::matches` defines it; the bounds are bound in placeholder order.
fn date_condition(
    prefix: Prefix,
    low: &str,
    high: &str,
    range: &DateRange,
    args: &mut Vec<SqlValue>,
) -> String {
    let mut bind = |value: i64| {
        args.push(SqlValue::Integer(value));
        "?"
    };
    match prefix {
        Prefix::Eq => format!(
            "({low} >= {} AND {high} <= {})",
            bind(range.low),
            bind(range.high)
        ),
        Prefix::Ne => format!(
            "NOT ({low} >= {} AND {high} <= {})",
            bind(range.low),
            bind(range.high)
        ),
        Prefix::Gt => format!("{high} > {}", bind(range.high)),
        Prefix::Lt => format!("{low} < {}", bind(range.low)),
        Prefix::Ge => format!(
            "({high} > {} OR ({low} >= {} AND {high} <= {}))",
            bind(range.high),
            bind(range.low),
            bind(range.high)
        ),
        Prefix::Le => format!(
            "({low} < {} OR ({low} >= {} AND {high} <= {}))",
            bind(range.low),
            bind(range.low),
            bind(range.high)
        ),
        Prefix::Sa => format!("{low} > {}", bind(range.high)),
        Prefix::Eb => format!("{high} < {}", bind(range.low)),
    }
}
