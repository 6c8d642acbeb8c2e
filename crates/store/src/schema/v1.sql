-- metaward store, schema version 1.
--
-- This database is a *projection*: device data (vitals, waveforms) is rebuilt from the durable
-- log, starting after the offset kept in `checkpoint`. Layout, patients, devices, bed occupancy
-- and device associations are written by configuration, the EMR sync and the server.
--
-- Conventions, for analysts writing SQL against it:
--   * every time is an INTEGER of milliseconds since the Unix epoch, UTC, in a column ending `_ms`;
--   * a time range [from_ms, to_ms) includes its start and excludes its end; `to_ms IS NULL`
--     means "still open" (the patient is still in the bed, the device is still associated);
--   * ids are the opaque strings the source gave (ward configuration, EMR, device serial/EUI-64);
--   * metric keys are keys of the metric catalog (`heart_rate`, `spo2`, `ecg_ii`, ...), values
--     are in the catalog's UCUM unit;
--   * body regions are avatar region keys (`heart`, `finger_left`, `lung_right`, ...);
--   * booleans are INTEGER 0/1.

-- The ward layout: wards hold rooms, rooms hold beds. Coordinates are metres on the floor plane
-- (x to the right, z towards the viewer), as the 3D ward draws them; a room's (x, z) is its corner,
-- a bed's (x, z) is within its room; `rotation` turns a bed about the vertical axis.
CREATE TABLE wards (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE rooms (
    id      TEXT PRIMARY KEY,
    ward_id TEXT NOT NULL REFERENCES wards (id),
    name    TEXT NOT NULL,
    x       REAL NOT NULL,
    z       REAL NOT NULL,
    width   REAL NOT NULL,
    depth   REAL NOT NULL
);
CREATE INDEX rooms_by_ward ON rooms (ward_id);

CREATE TABLE beds (
    id       TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL REFERENCES rooms (id),
    label    TEXT NOT NULL,
    x        REAL NOT NULL,
    z        REAL NOT NULL,
    rotation REAL NOT NULL
);
CREATE INDEX beds_by_room ON beds (room_id);

-- Patients as the EMR knows them, and their conditions (diagnoses). `sex` is the FHIR
-- administrative gender (male, female, other, unknown). A condition's `body_site` is an avatar
-- region key when the record or the diagnosis-to-region table gives one.
CREATE TABLE patients (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    birth_date TEXT CHECK (birth_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    sex        TEXT NOT NULL
);

CREATE TABLE conditions (
    patient_id TEXT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL, -- the order the record lists them in
    system     TEXT NOT NULL,    -- code system URI, e.g. http://snomed.info/sct
    code       TEXT NOT NULL,
    display    TEXT NOT NULL,
    body_site  TEXT,
    PRIMARY KEY (patient_id, seq)
);

-- Who lay in which bed when. A transfer ends one stay and starts the next at the same instant.
-- At most one open stay per patient and per bed (the partial unique indexes below).
CREATE TABLE bed_occupancy (
    id         INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (id),
    bed_id     TEXT NOT NULL REFERENCES beds (id),
    from_ms    INTEGER NOT NULL,
    to_ms      INTEGER,
    CHECK (to_ms IS NULL OR to_ms >= from_ms)
);
CREATE INDEX bed_occupancy_by_bed ON bed_occupancy (bed_id, from_ms);
CREATE INDEX bed_occupancy_by_patient ON bed_occupancy (patient_id, from_ms);
CREATE UNIQUE INDEX bed_occupancy_open_per_patient ON bed_occupancy (patient_id) WHERE to_ms IS NULL;
CREATE UNIQUE INDEX bed_occupancy_open_per_bed ON bed_occupancy (bed_id) WHERE to_ms IS NULL;

-- Devices. `placement` is the body region a wearable is worn on, when known.
-- `first_seen_ms`/`last_seen_ms` are the first and last time data from it was received.
CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL
                  CHECK (kind IN ('bedside_monitor', 'wearable', 'environmental_sensor', 'gateway')),
    model         TEXT NOT NULL,
    placement     TEXT,
    first_seen_ms INTEGER,
    last_seen_ms  INTEGER
);

-- Which device measured for which bed, patient or room, when. A device has at most one open
-- association; associating it anew ends the previous one at the same instant.
CREATE TABLE associations (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    target_kind TEXT NOT NULL CHECK (target_kind IN ('bed', 'patient', 'room')),
    target_id   TEXT NOT NULL,
    from_ms     INTEGER NOT NULL,
    to_ms       INTEGER,
    CHECK (to_ms IS NULL OR to_ms >= from_ms)
);
CREATE INDEX associations_by_device ON associations (device_id, from_ms);
CREATE INDEX associations_by_target ON associations (target_kind, target_id, from_ms);
CREATE UNIQUE INDEX associations_open_per_device ON associations (device_id) WHERE to_ms IS NULL;

-- Numeric observations, one row each, attributed upstream to a patient, bed and/or room
-- (patient data has a patient_id, room sensor data a room_id). Flagged values are kept:
-- `implausible` (outside the catalog's plausible range) and `device_flagged` (the device said so).
-- No foreign keys: this table is a projection of the log and must accept whatever the log holds.
-- (log_offset, device_id, metric, device_time_ms) is unique, so replaying the log is idempotent.
CREATE TABLE vitals (
    log_offset     INTEGER NOT NULL,
    device_id      TEXT NOT NULL,
    patient_id     TEXT,
    room_id        TEXT,
    bed_id         TEXT,
    metric         TEXT NOT NULL,
    value          REAL,          -- NULL when the device sent no number (NaN)
    device_time_ms INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL,
    body_site      TEXT,
    implausible    INTEGER NOT NULL DEFAULT 0,
    device_flagged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (log_offset, device_id, metric, device_time_ms)
) WITHOUT ROWID;
CREATE INDEX vitals_by_patient ON vitals (patient_id, metric, device_time_ms) WHERE patient_id IS NOT NULL;
CREATE INDEX vitals_by_room ON vitals (room_id, metric, device_time_ms) WHERE room_id IS NOT NULL;

-- Waveforms, in chunks as the device sent them (never one row per sample). `data` holds
-- `n_samples` samples starting at `start_ms`, `rate_hz` apart, encoded as `encoding` says:
--   'delta-varint': each sample quantized to a multiple of `resolution` (in the metric's unit),
--                   delta to the previous one (the first to 0), zigzag, LEB128 varint;
--   'f32le':        raw little-endian f32 samples (used when a chunk holds a gap, NaN or
--                   infinite, or the metric is not in the catalog; `resolution` is then 0).
-- Decode with the store's `waveform_codec` (or any language: the format is that small).
-- `end_ms` is `start_ms` plus the chunk's duration, so overlap queries need no decoding.
CREATE TABLE waveform_chunks (
    log_offset     INTEGER NOT NULL,
    device_id      TEXT NOT NULL,
    patient_id     TEXT,
    room_id        TEXT,
    bed_id         TEXT,
    metric         TEXT NOT NULL,
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL,
    rate_hz        REAL NOT NULL,
    n_samples      INTEGER NOT NULL,
    encoding       TEXT NOT NULL CHECK (encoding IN ('delta-varint', 'f32le')),
    resolution     REAL NOT NULL, -- in the metric's unit
    data           BLOB NOT NULL,
    body_site      TEXT,
    implausible    INTEGER NOT NULL DEFAULT 0,
    device_flagged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (log_offset, device_id, metric, start_ms)
) WITHOUT ROWID;
CREATE INDEX waveform_chunks_by_patient ON waveform_chunks (patient_id, metric, start_ms) WHERE patient_id IS NOT NULL;

-- How far the log has been applied: replay resumes at `log_offset`; every log record before it is
-- in `vitals`/`waveform_chunks`. Advanced in the same transaction as the rows themselves, so after
-- a crash the store holds exactly the records before the checkpoint, and never goes backwards.
CREATE TABLE checkpoint (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    log_offset INTEGER NOT NULL
);
INSERT INTO checkpoint (id, log_offset) VALUES (1, 0);

-- Input the server refused but kept, because it was acknowledged (MQTT PUBACK, HL7 ACK AE/AR):
-- raw bytes, where it came from, when, and why. A projection of the log like `vitals`.
CREATE TABLE dead_letters (
    log_offset  INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,    -- mqtt, hl7_mllp, fhir_rest
    origin      TEXT NOT NULL,    -- topic, peer address or URL
    received_ms INTEGER NOT NULL,
    reason      TEXT NOT NULL,    -- short stable label, as in the metrics
    detail      TEXT NOT NULL,    -- the specific error
    raw         BLOB NOT NULL
);
CREATE INDEX dead_letters_by_reason ON dead_letters (source, reason);
