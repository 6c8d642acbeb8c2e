-- A value's place in its log record: the `k` of the device Observation id `{log_offset}-{k}`,
-- counted across the record's observations in log order (the projector's order). With it a
-- FHIR search over `vitals` and `waveform_chunks` gives ids that read back.
--
-- Rows projected before this version have no position, and the log is the truth of device
-- data (it keeps every record), so the projection is rebuilt: the rows go, the checkpoint goes
-- back to the start, and the projector replays the log with positions. Dead letters are kept
-- (their replay inserts nothing twice); devices' first and last heard times only widen.
ALTER TABLE vitals ADD COLUMN log_position INTEGER;
ALTER TABLE waveform_chunks ADD COLUMN log_position INTEGER;
DELETE FROM vitals;
DELETE FROM waveform_chunks;
UPDATE checkpoint SET log_offset = 0;
CREATE UNIQUE INDEX vitals_by_log_position ON vitals (log_offset, log_position);
CREATE UNIQUE INDEX waveform_chunks_by_log_position ON waveform_chunks (log_offset, log_position);
