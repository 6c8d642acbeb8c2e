//! Bundle rules over the memory store, on the shared Synthea and FHIR example files and on
//! small hand-made bundles for each rule.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::memory::MemoryRecord;

/// `shared/data` beside the project (found from any ancestor, so worktrees work too).
pub fn shared_data() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.is_dir())
        .expect("shared/data beside the project")
}

fn read(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn ids() -> impl FnMut() -> String {
    let mut next = 0;
    move || {
        next += 1;
        format!("gen-{next}")
    }
}

fn count(outcomes: &[EntryOutcome], wanted: fn(&EntryResult) -> bool) -> usize {
    outcomes.iter().filter(|o| wanted(&o.result)).count()
}

#[test]
fn a_synthea_bundle_imports_once_and_resolves_every_urn() {
    let path =
        shared_data().join("synthea/Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json");
    let bundle = read(path);
    let n_entries = bundle["entry"].as_array().unwrap().len();
    let mut store = MemoryRecord::new();
    let mut new_id = ids();
    let (kind, first) = process_bundle(&mut store, &bundle, 1_000, &mut new_id).unwrap();
    assert_eq!(kind, BundleKind::Transaction);
    assert_eq!(count(&first, |r| *r == EntryResult::Created), n_entries);

    // Every reference now points at a stored resource (or a contained one).
    for outcome in &first {
        let stored = store
            .current(&outcome.resource_type, outcome.id.as_ref().unwrap())
            .unwrap()
            .unwrap();
        let text = stored.resource.to_string();
        assert!(
            !text.contains("urn:uuid:"),
            "{} kept a urn",
            outcome.resource_type
        );
        let mut references = Vec::new();
        collect_references(&stored.resource, &mut references);
        for reference in references.iter().filter(|r| !r.starts_with('#')) {
            let (t, id) = crate::params::parse_reference(reference).unwrap();
            assert!(
                store.current(&t, &id).unwrap().is_some(),
                "dangling {reference}"
            );
        }
    }

    // The same bundle again: nothing new, nothing changed.
    let (_, second) = process_bundle(&mut store, &bundle, 2_000, &mut new_id).unwrap();
    assert_eq!(count(&second, |r| *r == EntryResult::Unchanged), n_entries);
    let response = response_bundle(BundleKind::Transaction, &second);
    assert_eq!(response["type"], "transaction-response");
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(store.count("Patient"), 1);
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
        _ => {}
    }
}

#[test]
fn a_changed_resource_with_the_same_identifier_is_a_new_version() {
    let mut store = MemoryRecord::new();
    let mut new_id = ids();
    let patient = |family: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
        "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}], "name": [{"family": family}]},
        "request": {"method": "POST", "url": "Patient"}}]})
    };
    let (_, first) = process_bundle(&mut store, &patient("Old"), 1, &mut new_id).unwrap();
    let (_, second) = process_bundle(&mut store, &patient("New"), 2, &mut new_id).unwrap();
    assert_eq!(first[0].result, EntryResult::Created);
    assert_eq!(second[0].result, EntryResult::Updated);
    assert_eq!(first[0].id, second[0].id);
    let history = store.history("Patient", first[0].id.as_ref().unwrap());
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].resource["meta"]["versionId"], "2");
    assert_eq!(history[1].resource["name"][0]["family"], "New");
}

#[test]
fn transactions_are_all_or_nothing_and_say_which_entry_failed() {
    let mut store = MemoryRecord::new();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:missing"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let error = process_bundle(&mut store, &bundle, 1, &mut ids()).unwrap_err();
    assert_eq!(error.status, 400);
    assert_eq!(error.expression.as_deref(), Some("Bundle.entry[1]"));
    // The caller rolls back; the memory store shows that nothing was written before the failure
    // was known (resolution and rewriting run before any write).
    assert_eq!(store.count("Patient"), 0);
}

#[test]
fn batches_fail_entry_by_entry() {
    let mut store = MemoryRecord::new();
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}},
        {"resource": {"resourceType": "NotAType"}, "request": {"method": "POST", "url": "NotAType"}},
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Patient/nope"}}]});
    let (kind, outcomes) = process_bundle(&mut store, &bundle, 1, &mut ids()).unwrap();
    assert_eq!(kind, BundleKind::Batch);
    assert_eq!(outcomes[0].result, EntryResult::Created);
    assert!(matches!(&outcomes[1].result, EntryResult::Rejected(e) if e.status == 422));
    assert!(matches!(&outcomes[2].result, EntryResult::Read(r) if r["id"] == "p1"));
    assert!(matches!(&outcomes[3].result, EntryResult::Rejected(e) if e.status == 404));
    let response = response_bundle(kind, &outcomes);
    assert_eq!(response["type"], "batch-response");
    assert_eq!(
        response["entry"][1]["response"]["status"],
        "422 Unprocessable Entity"
    );
    assert_eq!(
        response["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
}

#[test]
fn conditional_create_update_delete_and_references() {
    let mut store = MemoryRecord::new();
    let mut new_id = ids();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|7"}}]});
    let (_, first) = process_bundle(&mut store, &bundle, 1, &mut new_id).unwrap();
    assert_eq!(first[0].result, EntryResult::Created);
    let patient_id = first[0].id.clone().unwrap();
    // ifNoneExist finds it, even with different content.
    let mut again = bundle.clone();
    again["entry"][0]["resource"]["gender"] = json!("female");
    let (_, second) = process_bundle(&mut store, &again, 2, &mut new_id).unwrap();
    assert_eq!(second[0].result, EntryResult::Unchanged);
    assert_eq!(second[0].id.as_ref(), Some(&patient_id));

    // A conditional reference resolves to it.
    let observation = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient?identifier=urn:mrn%7C7"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let (_, third) = process_bundle(&mut store, &observation, 3, &mut new_id).unwrap();
    let stored = store
        .current("Observation", third[0].id.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.resource["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    // One that finds nothing fails with 412.
    let mut dangling = observation.clone();
    dangling["entry"][0]["resource"]["subject"]["reference"] =
        json!("Patient?identifier=urn:mrn|8");
    assert_eq!(
        process_bundle(&mut store, &dangling, 4, &mut new_id)
            .unwrap_err()
            .status,
        412
    );

    // Conditional update, If-Match, conditional delete.
    let update = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}], "active": true},
         "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|7", "ifMatch": "W/\"1\""}}]});
    let (_, updated) = process_bundle(&mut store, &update, 5, &mut new_id).unwrap();
    assert_eq!(updated[0].result, EntryResult::Updated);
    assert_eq!(updated[0].version, Some(2));
    let mut stale = update.clone();
    stale["entry"][0]["resource"]["active"] = json!(false);
    assert_eq!(
        process_bundle(&mut store, &stale, 6, &mut new_id)
            .unwrap_err()
            .status,
        412
    );
    let delete = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient?identifier=urn:mrn|7"}}]});
    let (_, deleted) = process_bundle(&mut store, &delete, 7, &mut new_id).unwrap();
    assert_eq!(deleted[0].result, EntryResult::Deleted { existed: true });
    assert!(
        store
            .current("Patient", &patient_id)
            .unwrap()
            .unwrap()
            .deleted
    );
    assert_eq!(store.count("Patient"), 0);
}

#[test]
fn the_specs_transaction_example_is_refused_for_its_operation_entry() {
    let bundle = read(shared_data().join("fhir-r4-examples/bundle-transaction.json"));
    let mut store = MemoryRecord::new();
    let error = process_bundle(&mut store, &bundle, 1, &mut ids()).unwrap_err();
    assert_eq!(error.status, 501, "{error}");
    assert_eq!(
        error.expression.as_deref(),
        Some("Bundle.entry[7].request.url")
    );

    // Without the ValueSet/$lookup entry, the If-Match on a Patient that does not exist fails.
    let mut without_operation = bundle.clone();
    without_operation["entry"].as_array_mut().unwrap().remove(7);
    // (A failed transaction leaves writes in the memory store; the SQL store rolls them back.
    // So each attempt gets a fresh store.)
    let error =
        process_bundle(&mut MemoryRecord::new(), &without_operation, 1, &mut ids()).unwrap_err();
    assert_eq!(
        (error.status, error.expression.as_deref()),
        (412, Some("Bundle.entry[4]"))
    );

    // Without that too, the rest runs: creates, conditional create and update, deletes, reads.
    let mut rest = without_operation.clone();
    rest["entry"].as_array_mut().unwrap().remove(4);
    let mut store = MemoryRecord::new();
    let (_, outcomes) = process_bundle(&mut store, &rest, 1, &mut ids()).unwrap();
    assert_eq!(count(&outcomes, |r| *r == EntryResult::Created), 4);
    assert_eq!(outcomes[4].result, EntryResult::Deleted { existed: false });
    assert!(matches!(&outcomes[6].result, EntryResult::Read(b) if b["total"] == 4));
    assert!(matches!(&outcomes[7].result, EntryResult::Rejected(e) if e.status == 404));
    assert_eq!(store.current("Patient", "123").unwrap().unwrap().version, 1);
}

#[test]
fn single_resources_upsert_by_id() {
    let mut store = MemoryRecord::new();
    let patient = read(shared_data().join("fhir-r4-examples/patient-example.json"));
    let first = import_resource(&mut store, &patient, 1, &mut ids()).unwrap();
    assert_eq!(
        (first.result, first.id.as_deref()),
        (EntryResult::Created, Some("example"))
    );
    let again = import_resource(&mut store, &patient, 2, &mut ids()).unwrap();
    assert_eq!(again.result, EntryResult::Unchanged);
    let bad = import_resource(
        &mut store,
        &json!({"resourceType": "Patient", "id": "a b"}),
        3,
        &mut ids(),
    )
    .unwrap_err();
    assert_eq!(bad.status, 400);
}

#[test]
fn identity_keys_ignore_key_order_id_and_meta() {
    let a = json!({"resourceType": "Observation", "id": "1", "status": "final", "code": {"text": "x", "coding": []}});
    let b = json!({"code": {"coding": [], "text": "x"}, "status": "final", "resourceType": "Observation", "meta": {"versionId": "3"}});
    assert_eq!(identity_keys(&a), identity_keys(&b));
    assert_eq!(
        parse_query("identifier=urn%3Amrn%7C7&name=a+b"),
        vec![
            ("identifier".to_owned(), "urn:mrn|7".to_owned()),
            ("name".to_owned(), "a b".to_owned()),
        ]
    );
}

#[test]
fn the_import_summary_counts_by_type_and_reason() {
    let mut store = MemoryRecord::new();
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}},
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p2"}},
        {"request": {"method": "DELETE", "url": "Device/d1"}}]});
    let (_, outcomes) = process_bundle(&mut store, &bundle, 1, &mut ids()).unwrap();
    let mut summary = ImportSummary::default();
    summary.add(&outcomes);
    summary.reject(
        &["Observation".into(), "Observation".into()],
        "file.json: refused",
    );
    assert_eq!(summary.by_type["Patient"], [1, 0, 0, 0, 1]);
    assert_eq!(summary.by_type["Device"], [0, 0, 0, 1, 0]);
    assert_eq!(summary.by_type["Observation"], [0, 0, 0, 0, 2]);
    assert_eq!(summary.total(4), 3);
    assert_eq!(
        summary.rejections["resource id differs from the id in request.url"],
        1
    );
    let table = summary.render();
    assert!(
        table.contains("rejected (1): file.json: refused"),
        "{table}"
    );
}

#[test]
fn the_same_resource_twice_in_one_bundle_is_one_resource_now_and_on_reimport() {
    let mut store = MemoryRecord::new();
    let mut new_id = ids();
    let organization = json!({"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": "1"}], "name": "Hospital"});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:o1", "resource": organization, "request": {"method": "POST", "url": "Organization"}},
        {"fullUrl": "urn:uuid:o2", "resource": organization, "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "urn:uuid:o2"}},
         "request": {"method": "POST", "url": "Patient"}}]});
    let (_, first) = process_bundle(&mut store, &bundle, 1, &mut new_id).unwrap();
    assert_eq!(first[0].result, EntryResult::Created);
    assert_eq!(first[1].result, EntryResult::Unchanged);
    assert_eq!(first[0].id, first[1].id);
    assert_eq!(store.count("Organization"), 1);
    let patient = store
        .current("Patient", first[2].id.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        patient.resource["managingOrganization"]["reference"],
        format!("Organization/{}", first[0].id.as_ref().unwrap())
    );
    let (_, again) = process_bundle(&mut store, &bundle, 2, &mut new_id).unwrap();
    assert!(
        again.iter().all(|o| o.result == EntryResult::Unchanged),
        "{again:?}"
    );
}

#[test]
fn malformed_bundles_are_errors_never_panics() {
    let entries = [
        json!(1),
        json!(null),
        json!({}),
        json!({"resource": []}),
        json!({"resource": {"resourceType": 3}}),
        json!({"resource": {"resourceType": "Patient", "id": 5}, "request": {"method": "PUT", "url": "Patient/5"}}),
        json!({"request": {"method": "PUT", "url": "Patient"}}),
        json!({"request": {"method": "DELETE", "url": "Patient"}}),
        json!({"request": {"method": "GET", "url": "/"}}),
        json!({"request": {"method": "GET", "url": "Patient/a/b/c"}}),
        json!({"request": {"method": "POST", "url": "Patient?x=1"}, "resource": {"resourceType": "Patient"}}),
        json!({"request": {"method": "POST", "url": "Patient", "ifNoneExist": ""}, "resource": {"resourceType": "Patient"}}),
        json!({"request": {"method": "POST", "url": "Patient", "ifMatch": "abc"}, "resource": {"resourceType": "Patient"}}),
        json!({"request": {"method": "PUT", "url": "Patient?"}, "resource": {"resourceType": "Patient"}}),
        json!({"request": {"method": "POST", "url": "Observation"}, "resource": {"resourceType": "Observation", "status": "final", "code": {}, "subject": {"reference": "Patient?"}}}),
        json!({"request": {"method": "GET", "url": "Patient?birthdate=notadate"}}),
        json!({"request": {"method": "PATCH", "url": "Patient/1"}}),
    ];
    for kind in ["transaction", "batch", "collection"] {
        for entry in &entries {
            if kind == "collection" && entry["resource"]["resourceType"] == "Patient" {
                // A collection ignores `request`: these are well-formed resources to it.
                continue;
            }
            let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [entry]});
            let mut store = MemoryRecord::new();
            match process_bundle(&mut store, &bundle, 1, &mut ids()) {
                Err(error) => assert!(
                    (400..=501).contains(&error.status),
                    "{kind} {entry}: {error:?}"
                ),
                Ok((_, outcomes)) => {
                    // A batch answers bad entries inside a 200, and so does a transaction for
                    // a read (it changes nothing); nothing was kept for them.
                    assert!(
                        matches!(
                            outcomes[0].result,
                            EntryResult::Rejected(_) | EntryResult::Read(_)
                        ),
                        "{entry}: {outcomes:?}"
                    );
                }
            }
            assert_eq!(
                store.count("Patient") + store.count("Observation"),
                0,
                "{kind} {entry}"
            );
        }
    }
    for bad in [
        json!([]),
        json!({"resourceType": "Bundle"}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": {}}),
    ] {
        assert!(process_bundle(&mut MemoryRecord::new(), &bad, 1, &mut ids()).is_err());
    }
}
