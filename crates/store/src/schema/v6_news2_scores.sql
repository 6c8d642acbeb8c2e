-- NEWS2 history: one row each time a patient's score changed (total, band, completeness or
-- any parameter's sub-score or reason). A sub-score column is NULL when that parameter could
-- not be scored (missing, stale, artefact); the total and band are then lower bounds.

CREATE TABLE news2_scores (
    id                     INTEGER PRIMARY KEY,
    patient_id             TEXT NOT NULL,
    at_ms                  INTEGER NOT NULL,
    total                  INTEGER NOT NULL,
    band                   TEXT NOT NULL
                           CHECK (band IN ('zero', 'low', 'low-medium', 'medium', 'high')),
    complete               INTEGER NOT NULL,
    scale                  INTEGER NOT NULL CHECK (scale IN (1, 2)),
    scale_reason           TEXT NOT NULL,
    respiration_rate_score INTEGER,
    spo2_score             INTEGER,
    air_or_oxygen_score    INTEGER,
    systolic_bp_score      INTEGER,
    pulse_score            INTEGER,
    consciousness_score    INTEGER,
    temperature_score      INTEGER
);

CREATE INDEX news2_scores_patient ON news2_scores (patient_id, at_ms);
