-- A clinician's prescribed target oxygen saturation range for a patient (NEWS2: a target of
-- 88-92% for hypercapnic respiratory failure puts the patient on SpO2 Scale 2). One current
-- prescription per patient; who set it and when.
CREATE TABLE oxygen_targets (
    patient_id   TEXT PRIMARY KEY,
    low_percent  REAL NOT NULL CHECK (low_percent > 0 AND low_percent <= 100),
    high_percent REAL NOT NULL CHECK (high_percent >= low_percent AND high_percent <= 100),
    set_by       TEXT NOT NULL,
    set_ms       INTEGER NOT NULL
);
