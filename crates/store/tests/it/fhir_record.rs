//! The medical record in SQLite: the same bundle rules as the memory store (searches must give
//! the same answers), rollback of a failed transaction, versions, deletion.

use std::path::PathBuf;

use record::memory::MemoryRecord;
use record::search::SearchRequest;
use record::{EntryResult, RecordStore};
use serde_json::{Value, json};
use store::Store;

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.is_dir())
        .expect("shared/data beside the project")
}

fn bundle(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(shared_data().join("synthea").join(name)).unwrap())
        .unwrap()
}

fn ids() -> impl FnMut() -> String {
    let mut next = 0;
    move || {
        next += 1;
        format!("id-{next}")
    }
}

fn pairs(query: &str) -> Vec<(String, String)> {
    record::bundle::parse_query(query)
}

const COPD: &str = "Adolfo_Marquardt_50635536-8051-4085-bfd4-511a05062ac2.json";

#[test]
fn sql_search_agrees_with_the_reference_semantics() {
    let data = bundle(COPD);
    let mut sql = Store::open_in_memory().unwrap();
    let mut memory = MemoryRecord::new();
    sql.fhir_import_bundle(&data, 1_000, &mut ids()).unwrap();
    record::process_bundle(&mut memory, &data, 1_000, &mut ids()).unwrap();
    let patient = sql
        .fhir_search(&SearchRequest::parse("Patient", &[]).unwrap())
        .unwrap();
    assert_eq!(patient.total, 1);
    let patient_id = &patient.resources[0].id;
    let queries = [
        ("Observation", format!("patient={patient_id}")),
        (
            "Observation",
            format!("subject=Patient/{patient_id}&code=http://loinc.org|8867-4"),
        ),
        (
            "Observation",
            "code=http://loinc.org|8302-2,http://loinc.org|29463-7&_sort=-date".into(),
        ),
        (
            "Observation",
            "category=vital-signs&date=ge2015-01-01&date=lt2017-01-01&_sort=date".into(),
        ),
        ("Observation", "date=2014".into()),
        (
            "Observation",
            "date=ne2014&_count=7&_offset=3&_sort=date".into(),
        ),
        ("Observation", "date=sa2016-06-01".into()),
        ("Observation", "date=eb2012-01-01".into()),
        ("Observation", "date=le2013-03-04".into()),
        ("Observation", "code=|8302-2".into()),
        ("Observation", "code:not=http://loinc.org|8302-2".into()),
        ("Condition", "clinical-status=active".into()),
        ("Condition", "code=http://snomed.info/sct|".into()),
        ("Encounter", "date=ge2016&_sort=-date".into()),
        ("Encounter", "class=AMB".into()),
        ("MedicationRequest", "status=active,stopped".into()),
        ("Patient", "name=adol".into()),
        ("Patient", "name:contains=RQUAR".into()),
        ("Patient", "birthdate=lt1970".into()),
        ("Patient", "gender=male&_sort=name".into()),
        ("AllergyIntolerance", "patient:missing=false".into()),
        ("Procedure", "date=ge2000&_sort=date".into()),
    ];
    for (resource_type, query) in queries {
        let request = SearchRequest::parse(resource_type, &pairs(&query)).unwrap();
        let from_sql = sql.fhir_search(&request).unwrap();
        let from_memory = memory.search(&request).unwrap();
        let ids = |page: &record::SearchPage| {
            page.resources
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(from_sql.total, from_memory.total, "{resource_type}?{query}");
        assert_eq!(ids(&from_sql), ids(&from_memory), "{resource_type}?{query}");
    }
    // And the searches find something: the test is not vacuous.
    let heart =
        SearchRequest::parse("Observation", &pairs("code=http://loinc.org|29463-7")).unwrap();
    assert!(sql.fhir_search(&heart).unwrap().total > 3);
}

#[test]
fn a_failed_transaction_leaves_nothing() {
    let mut sql = Store::open_in_memory().unwrap();
    let mut data = bundle(COPD);
    let entries = data["entry"].as_array_mut().unwrap();
    let last = entries.len() - 1;
    entries[last]["resource"]["subject"] =
        json!({"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"});
    let error = sql.fhir_import_bundle(&data, 1, &mut ids()).unwrap_err();
    assert_eq!(error.status, 400);
    assert!(sql.fhir_counts().unwrap().is_empty());
}

#[test]
fn importing_twice_creates_nothing_twice() {
    let mut sql = Store::open_in_memory().unwrap();
    let data = bundle(COPD);
    sql.fhir_import_bundle(&data, 1, &mut ids()).unwrap();
    let counts = sql.fhir_counts().unwrap();
    let (_, again) = sql.fhir_import_bundle(&data, 2, &mut ids()).unwrap();
    assert!(again.iter().all(|o| o.result == EntryResult::Unchanged));
    assert_eq!(sql.fhir_counts().unwrap(), counts);
    let versions: i64 = sql
        .connection()
        .query_row("SELECT count(*) FROM fhir_resources", [], |row| row.get(0))
        .unwrap();
    assert_eq!(versions as usize, data["entry"].as_array().unwrap().len());
}

#[test]
fn versions_history_and_deletion() {
    let mut sql = Store::open_in_memory().unwrap();
    let mut new_id = ids();
    let first = sql
        .fhir_write_resource(
            Some("p1"),
            &json!({"resourceType": "Patient", "id": "p1", "gender": "female"}),
            None,
            None,
            10,
            &mut new_id,
        )
        .unwrap();
    assert_eq!(
        (first.result, first.version),
        (EntryResult::Created, Some(1))
    );
    let second = sql
        .fhir_write_resource(
            Some("p1"),
            &json!({"resourceType": "Patient", "id": "p1", "gender": "male"}),
            None,
            Some("W/\"1\""),
            20,
            &mut new_id,
        )
        .unwrap();
    assert_eq!(
        (second.result, second.version),
        (EntryResult::Updated, Some(2))
    );
    let stale = sql
        .fhir_write_resource(
            Some("p1"),
            &json!({"resourceType": "Patient", "id": "p1"}),
            None,
            Some("W/\"1\""),
            30,
            &mut new_id,
        )
        .unwrap_err();
    assert_eq!(stale.status, 412);
    let v1 = sql.fhir_vread("Patient", "p1", 1).unwrap().unwrap();
    assert_eq!(v1.resource["gender"], "female");
    assert_eq!(v1.resource["meta"]["versionId"], "1");
    assert_eq!(
        v1.resource["meta"]["lastUpdated"],
        "1970-01-01T00:00:00.010Z"
    );
    assert_eq!(sql.fhir_history("Patient", "p1").unwrap().len(), 2);
    // The index follows the current version only.
    let male = SearchRequest::parse("Patient", &pairs("gender=male")).unwrap();
    let female = SearchRequest::parse("Patient", &pairs("gender=female")).unwrap();
    assert_eq!(sql.fhir_search(&male).unwrap().total, 1);
    assert_eq!(sql.fhir_search(&female).unwrap().total, 0);
    let deleted = sql.fhir_delete("Patient", "p1", 40).unwrap().unwrap();
    assert_eq!((deleted.version, deleted.deleted), (3, true));
    assert!(sql.fhir_read("Patient", "p1").unwrap().unwrap().deleted);
    assert_eq!(sql.fhir_search(&male).unwrap().total, 0);
    assert!(sql.fhir_delete("Patient", "p1", 50).unwrap().is_none());
    // A new id is a version 4 UUID.
    let id = store::fhir_record::new_resource_id();
    assert_eq!((id.len(), &id[14..15]), (36, "4"));
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
}

/// The spec's examples and a few hand-made resources of the types the shared data lacks
/// (Device, Location, MedicationAdministration), searched by every kind of parameter.
#[test]
fn every_searchable_type_agrees_with_the_reference_semantics() {
    let mut resources: Vec<Value> = std::fs::read_dir(shared_data().join("fhir-r4-examples"))
        .unwrap()
        .map(|e| {
            serde_json::from_slice::<Value>(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()
        })
        .filter(|r| r["resourceType"] != "Bundle")
        .collect();
    resources.extend([
        json!({"resourceType": "Location", "id": "ward-a", "name": "Ward A", "alias": ["Respiratory"], "status": "active"}),
        json!({"resourceType": "Location", "id": "bed-1", "name": "Bed 1", "status": "active", "partOf": {"reference": "Location/ward-a"}}),
        json!({"resourceType": "Device", "id": "patch-1", "status": "active", "manufacturer": "Acme Medical", "modelNumber": "SP-2",
               "identifier": [{"system": "urn:ieee:eui64", "value": "00-1B-2C-FF-FE-3D-4E-5F"}],
               "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "528391"}]},
               "patient": {"reference": "Patient/example"}, "location": {"reference": "Location/bed-1"}}),
        json!({"resourceType": "MedicationAdministration", "id": "ma-1", "status": "completed",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049221"}]},
               "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2026-11-25T06:00:00Z"}),
    ]);
    let mut sql = Store::open_in_memory().unwrap();
    let mut memory = MemoryRecord::new();
    for resource in &resources {
        sql.fhir_import_resource(resource, 1_000, &mut ids())
            .unwrap();
        record::import_resource(&mut memory, resource, 1_000, &mut ids()).unwrap();
    }
    let queries = [
        (
            "Patient",
            "identifier=urn:oid:1.2.36.146.595.217.0.1%7C12345",
        ),
        ("Patient", "family=chalm&given=jim"),
        ("Patient", "name:exact=Peter"),
        ("Patient", "birthdate=1974-12&gender=male&active=true"),
        (
            "Observation",
            "patient=example&code=http://loinc.org%7C85354-9",
        ),
        ("Observation", "component-code=8480-6"),
        ("Observation", "category=vital-signs&_sort=-date"),
        ("Observation", "date=1999-07-02&status=final"),
        (
            "Observation",
            "subject:Patient=example&date=gt1999-07-01&_sort=_id",
        ),
        ("Condition", "patient=example&clinical-status=active"),
        ("Condition", "body-site=http://snomed.info/sct%7C49521004"),
        ("AllergyIntolerance", "patient=example&criticality=high"),
        (
            "AllergyIntolerance",
            "code=http://snomed.info/sct%7C227493005",
        ),
        ("MedicationStatement", "status=active&effective=ge2015"),
        (
            "MedicationAdministration",
            "patient=example&effective-time=eq2026-11-25",
        ),
        ("Encounter", "patient=example&status=in-progress&class=IMP"),
        (
            "Device",
            "patient=example&manufacturer=acme&type=528391&location=Location/bed-1",
        ),
        ("Device", "identifier=00-1B-2C-FF-FE-3D-4E-5F&model=sp"),
        ("Location", "name=respir"),
        ("Location", "partof=ward-a&status=active"),
        ("Location", "name:missing=false&_sort=name"),
        ("Patient", "_id=example,nope"),
        ("Observation", "_lastUpdated=1970&_count=3"),
    ];
    let mut empty = Vec::new();
    for (resource_type, query) in queries {
        let request = SearchRequest::parse(resource_type, &pairs(query)).unwrap();
        let from_sql = sql.fhir_search(&request).unwrap();
        let from_memory = memory.search(&request).unwrap();
        let ids = |page: &record::SearchPage| {
            page.resources
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(from_sql.total, from_memory.total, "{resource_type}?{query}");
        assert_eq!(ids(&from_sql), ids(&from_memory), "{resource_type}?{query}");
        if from_sql.total == 0 {
            empty.push(format!("{resource_type}?{query}"));
        }
    }
    // Every query finds what the examples hold (one that matched nothing would prove nothing).
    assert!(empty.is_empty(), "found nothing: {empty:?}");
}
