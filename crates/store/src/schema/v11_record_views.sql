-- The medical record for analysts: one row per current (not deleted) FHIR resource, and views
-- of the record's encounters, conditions, medications, allergies and laboratory results with
-- the fields questions need, the patient's id first (a FHIR Patient's id is the ward's patient
-- id, docs/emr.md). The resources themselves stay JSON (`resource`), for json_extract.

CREATE VIEW record_current AS
SELECT r.resource_type, r.id, r.last_updated_ms, r.resource
FROM fhir_current c
JOIN fhir_resources r
  ON r.resource_type = c.resource_type AND r.id = c.id AND r.version = c.version
WHERE c.deleted = 0;

CREATE VIEW record_encounters AS
SELECT id,
       CASE WHEN json_extract(resource, '$.subject.reference') LIKE 'Patient/%'
            THEN substr(json_extract(resource, '$.subject.reference'), 9) END AS patient_id,
       json_extract(resource, '$.status') AS status,
       json_extract(resource, '$.class.code') AS class,
       json_extract(resource, '$.period.start') AS period_start,
       json_extract(resource, '$.period.end') AS period_end,
       json_extract(resource, '$.location[0].location.reference') AS location
FROM record_current WHERE resource_type = 'Encounter';

CREATE VIEW record_conditions AS
SELECT id,
       CASE WHEN json_extract(resource, '$.subject.reference') LIKE 'Patient/%'
            THEN substr(json_extract(resource, '$.subject.reference'), 9) END AS patient_id,
       json_extract(resource, '$.code.coding[0].system') AS system,
       json_extract(resource, '$.code.coding[0].code') AS code,
       coalesce(json_extract(resource, '$.code.coding[0].display'),
                json_extract(resource, '$.code.text')) AS display,
       json_extract(resource, '$.clinicalStatus.coding[0].code') AS clinical_status,
       json_extract(resource, '$.onsetDateTime') AS onset
FROM record_current WHERE resource_type = 'Condition';

CREATE VIEW record_medications AS
SELECT id, resource_type,
       CASE WHEN json_extract(resource, '$.subject.reference') LIKE 'Patient/%'
            THEN substr(json_extract(resource, '$.subject.reference'), 9) END AS patient_id,
       json_extract(resource, '$.status') AS status,
       json_extract(resource, '$.medicationCodeableConcept.coding[0].system') AS system,
       json_extract(resource, '$.medicationCodeableConcept.coding[0].code') AS code,
       coalesce(json_extract(resource, '$.medicationCodeableConcept.coding[0].display'),
                json_extract(resource, '$.medicationCodeableConcept.text')) AS display,
       coalesce(json_extract(resource, '$.authoredOn'),
                json_extract(resource, '$.effectiveDateTime')) AS since
FROM record_current WHERE resource_type IN ('MedicationRequest', 'MedicationStatement');

CREATE VIEW record_allergies AS
SELECT id,
       CASE WHEN json_extract(resource, '$.patient.reference') LIKE 'Patient/%'
            THEN substr(json_extract(resource, '$.patient.reference'), 9) END AS patient_id,
       json_extract(resource, '$.code.coding[0].system') AS system,
       json_extract(resource, '$.code.coding[0].code') AS code,
       coalesce(json_extract(resource, '$.code.coding[0].display'),
                json_extract(resource, '$.code.text')) AS display,
       json_extract(resource, '$.clinicalStatus.coding[0].code') AS clinical_status,
       json_extract(resource, '$.criticality') AS criticality
FROM record_current WHERE resource_type = 'AllergyIntolerance';

CREATE VIEW record_labs AS
SELECT id,
       CASE WHEN json_extract(resource, '$.subject.reference') LIKE 'Patient/%'
            THEN substr(json_extract(resource, '$.subject.reference'), 9) END AS patient_id,
       json_extract(resource, '$.code.coding[0].system') AS system,
       json_extract(resource, '$.code.coding[0].code') AS code,
       coalesce(json_extract(resource, '$.code.coding[0].display'),
                json_extract(resource, '$.code.text')) AS display,
       json_extract(resource, '$.valueQuantity.value') AS value,
       json_extract(resource, '$.valueQuantity.unit') AS unit,
       json_extract(resource, '$.effectiveDateTime') AS effective
FROM record_current
WHERE resource_type = 'Observation'
  AND resource LIKE '%"laboratory"%'
  AND json_extract(resource, '$.category[0].coding[0].code') = 'laboratory';
