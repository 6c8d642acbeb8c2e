-- A value's place in its log record: the `k` of the device Observation id `{log_offset}-{k}`,
-- counted across the record's observations in log order (the projector's order). With it a
-- FHIR search over `vitals` and `waveform_chunks` gives ids that read back. Rows projected
-- before this version have none and are not offered to FHIR search (nothing outside tests
-- predates it; rebuilding the projection from the log fills them).
ALTER TABLE vitals ADD COLUMN log_position INTEGER;
ALTER TABLE waveform_chunks ADD COLUMN log_position INTEGER;
CREATE UNIQUE INDEX vitals_by_log_position ON vitals (log_offset, log_position)
    WHERE log_position IS NOT NULL;
CREATE UNIQUE INDEX waveform_chunks_by_log_position ON waveform_chunks (log_offset, log_position)
    WHERE log_position IS NOT NULL;
