-- Alarms and their history (the IHE ACM lifecycle). `alarms` holds each alarm as it is now;
-- `alarm_events` every step it went through, in order, with who did it. Analysts: the time to
-- acknowledge an alarm is acknowledged_ms - raised_ms.

CREATE TABLE alarms (
    id                INTEGER PRIMARY KEY,
    subject_kind      TEXT NOT NULL CHECK (subject_kind IN ('patient', 'room', 'device')),
    subject_id        TEXT NOT NULL,
    kind              TEXT NOT NULL
                      CHECK (kind IN ('physiological', 'environmental', 'score', 'technical')),
    -- The metric (physiological, environmental), the score (score) or the technical condition.
    condition         TEXT NOT NULL,
    -- 'low' or 'high' for limit alarms.
    side              TEXT CHECK (side IN ('low', 'high')),
    priority          TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high')),
    latched           INTEGER NOT NULL,
    message           TEXT NOT NULL,
    value             REAL,
    limit_value       REAL,
    state             TEXT NOT NULL
                      CHECK (state IN ('raised', 'delivered', 'escalated', 'acknowledged', 'resolved')),
    raised_ms         INTEGER NOT NULL,
    delivered_ms      INTEGER,
    acknowledged_by   TEXT,
    acknowledged_ms   INTEGER,
    escalations       INTEGER NOT NULL,
    last_escalated_ms INTEGER,
    silenced_by       TEXT,
    silence_reason    TEXT,
    silenced_until_ms INTEGER,
    cleared_ms        INTEGER,
    resolved_ms       INTEGER
);

CREATE INDEX alarms_active ON alarms (resolved_ms) WHERE resolved_ms IS NULL;
CREATE INDEX alarms_subject ON alarms (subject_kind, subject_id, raised_ms);

CREATE TABLE alarm_events (
    id         INTEGER PRIMARY KEY,
    alarm_id   INTEGER NOT NULL REFERENCES alarms (id),
    at_ms      INTEGER NOT NULL,
    transition TEXT NOT NULL,
    by         TEXT,
    priority   TEXT NOT NULL,
    state      TEXT NOT NULL
);

CREATE INDEX alarm_events_alarm ON alarm_events (alarm_id, id);

-- A patient's own alarm limits for a metric, replacing the ward's defaults for that metric:
-- one row per tier ("at or below" for low, "at or above" for high). A metric with an override
-- but no tiers (no row in the tiers) is set by a row in alarm_limit_overrides alone.
CREATE TABLE alarm_limit_overrides (
    patient_id TEXT NOT NULL,
    metric     TEXT NOT NULL,
    set_by     TEXT,
    set_ms     INTEGER NOT NULL,
    PRIMARY KEY (patient_id, metric)
);

CREATE TABLE alarm_limit_tiers (
    patient_id TEXT NOT NULL,
    metric     TEXT NOT NULL,
    side       TEXT NOT NULL CHECK (side IN ('low', 'high')),
    at         REAL NOT NULL,
    priority   TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high')),
    FOREIGN KEY (patient_id, metric) REFERENCES alarm_limit_overrides (patient_id, metric)
        ON DELETE CASCADE
);
