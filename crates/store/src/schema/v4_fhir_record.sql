-- metaward store: the medical record as FHIR R4 resources (issue 4).
--
-- Kept generically, as FHIR servers do: every version of every resource is a row of
-- `fhir_resources` holding its JSON; `fhir_current` points at each resource's latest version;
-- the `fhir_index_*` tables hold the search parameter values of current, not deleted versions
-- (extracted by the `record` crate from its table of search parameters), and `fhir_identity`
-- the keys that make an import idempotent (a resource's first identifier, a hash of its content).
--
-- For analysts: `json_extract(resource, '$.code.coding[0].code')` reads into a resource; join
-- `fhir_current` to see only the latest versions. Times are epoch milliseconds (`_ms`), UTC.
-- The ward's patients (`patients`) are separate today: a FHIR Patient with the ward patient's
-- id is how a later step links them.

CREATE TABLE fhir_resources (
    resource_type   TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    last_updated_ms INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0,
    -- The resource as served, with id and meta.versionId/lastUpdated; NULL for a deletion.
    resource        TEXT,
    PRIMARY KEY (resource_type, id, version)
) WITHOUT ROWID;

CREATE TABLE fhir_current (
    resource_type   TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    last_updated_ms INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resource_type, id)
) WITHOUT ROWID;
CREATE INDEX fhir_current_by_updated ON fhir_current (resource_type, last_updated_ms);

-- token: code, Coding, CodeableConcept, Identifier, boolean; `system` NULL when there is none.
CREATE TABLE fhir_index_token (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    system        TEXT,
    code          TEXT NOT NULL
);
CREATE INDEX fhir_index_token_by_value ON fhir_index_token (resource_type, param, code);
CREATE INDEX fhir_index_token_by_resource ON fhir_index_token (resource_type, id, param);

-- string: lowercased.
CREATE TABLE fhir_index_string (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         TEXT NOT NULL
);
CREATE INDEX fhir_index_string_by_value ON fhir_index_string (resource_type, param, value);
CREATE INDEX fhir_index_string_by_resource ON fhir_index_string (resource_type, id, param);

-- date: the inclusive range of epoch milliseconds the value covers (a day, a Period, ...).
CREATE TABLE fhir_index_date (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    param         TEXT    NOT NULL,
    low_ms        INTEGER NOT NULL,
    high_ms       INTEGER NOT NULL
);
CREATE INDEX fhir_index_date_by_value ON fhir_index_date (resource_type, param, low_ms);
CREATE INDEX fhir_index_date_by_resource ON fhir_index_date (resource_type, id, param);

-- reference: to a resource of this record, as Type/id.
CREATE TABLE fhir_index_reference (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL
);
CREATE INDEX fhir_index_reference_by_target ON fhir_index_reference (resource_type, param, target_id);
CREATE INDEX fhir_index_reference_by_resource ON fhir_index_reference (resource_type, id, param);

CREATE TABLE fhir_identity (
    resource_type TEXT NOT NULL,
    key           TEXT NOT NULL,
    id            TEXT NOT NULL,
    PRIMARY KEY (resource_type, key)
) WITHOUT ROWID;
