-- The reference or alarm limits a device sent with a value (HL7 OBX-7, FHIR referenceRange),
-- either end open: shown beside the value; metaward's own alarm limits are elsewhere.
ALTER TABLE vitals ADD COLUMN ref_low REAL;
ALTER TABLE vitals ADD COLUMN ref_high REAL;
