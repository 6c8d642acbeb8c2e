-- Virtual rounds: what a clinician wrote at a bed, with who and when. A consciousness
-- assessment given with a note is also an observation in the log (it feeds NEWS2); here it
-- is kept beside the note so the round's record reads whole. The note is also written to the
-- medical record as a FHIR ClinicalImpression, referenced here.
CREATE TABLE round_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL,
    author TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    text TEXT NOT NULL,
    acvpu TEXT CHECK (acvpu IS NULL OR acvpu IN ('A', 'C', 'V', 'P', 'U')),
    reviewed INTEGER NOT NULL CHECK (reviewed IN (0, 1)),
    -- The note in the medical record: `ClinicalImpression/{id}`.
    record_reference TEXT
);
CREATE INDEX round_notes_by_patient ON round_notes (patient_id, at_ms);
