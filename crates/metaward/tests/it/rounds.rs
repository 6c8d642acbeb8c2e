//! Virtual rounds over real HTTP: a note with an ACVPU assessment is stored with the signed-in
//! author and time and written to the record as a FHIR ClinicalImpression, and the assessment reaches NEWS2 through the log like any observation; refused notes
//! answer with the reason, and are counted and kept as dead letters.

use serde_json::{Value, json};

use crate::*;

fn consciousness(twin: &Value) -> Value {
    twin["news2"]["parameters"]
        .as_array()
        .and_then(|parameters| {
            parameters
                .iter()
                .find(|p| p["parameter"] == "consciousness")
                .cloned()
        })
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_note_is_stored_and_its_acvpu_feeds_news2() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let http_addr = server.http_addr();
    let wang = user_token(&server, "dr.wang", "physician", None).await;
    let li = user_token(&server, "nurse.li", "nurse", None).await;

    // The author is the signed-in user; naming oneself is allowed, naming another is not.
    let note = json!({ "patient_id": "p1", "author": "dr.wang", "text": "drowsy, responds to voice",
                       "acvpu": "V", "reviewed": true });
    let response = http_as(
        http_addr,
        Some(&wang),
        "POST",
        "/api/v1/rounds/notes",
        Some(&note.to_string()),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let stored = response.json();
    assert_eq!(stored["author"], "dr.wang");
    assert_eq!(stored["acvpu"], "V");
    assert_eq!(stored["reviewed"], true);
    assert!((stored["at"].as_i64().unwrap() - now_ms()).abs() < 60_000);

    // The note is in the medical record as a FHIR ClinicalImpression about the patient.
    let reference = stored["record"]
        .as_str()
        .expect("a record reference")
        .to_owned();
    assert!(reference.starts_with("ClinicalImpression/"), "{reference}");
    let response = http(http_addr, "GET", &format!("/fhir/{reference}"), None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let impression = response.json();
    assert_eq!(impression["subject"]["reference"], "Patient/p1");
    assert_eq!(impression["assessor"]["display"], "dr.wang");
    assert_eq!(impression["summary"], "drowsy, responds to voice");
    assert_eq!(impression["status"], "completed");
    assert_eq!(
        impression["finding"][0]["itemCodeableConcept"]["coding"][0]["code"],
        "80288-4"
    );
    assert_eq!(
        impression["finding"][0]["itemCodeableConcept"]["text"],
        "ACVPU V"
    );

    // V scores 3 on the NEWS2 chart: the twin's score shows it, scored, within the deadline.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        let parameter = consciousness(&twin);
        if parameter["status"] == "scored" {
            assert_eq!(parameter["sub_score"], 3, "{parameter}");
            assert_eq!(parameter["value"], 2.0);
            assert_eq!(twin["news2"]["band"], "low-medium", "a 3 in one parameter");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ACVPU never reached NEWS2: {twin}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A note without an assessment, not a review, and without an author: the session says who.
    let plain = json!({ "patient_id": "p1", "text": "family informed" });
    let response = http_as(
        http_addr,
        Some(&li),
        "POST",
        "/api/v1/rounds/notes",
        Some(&plain.to_string()),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["acvpu"], Value::Null);
    assert_eq!(response.json()["author"], "nurse.li");

    let notes = get_json(http_addr, "/api/v1/rounds/notes?patient=p1").await;
    let texts: Vec<&str> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["family informed", "drowsy, responds to voice"]);
    let reviews = get_json(http_addr, "/api/v1/rounds/reviews").await;
    assert_eq!(reviews.as_array().unwrap().len(), 1);
    assert_eq!(reviews[0]["patient_id"], "p1");
    assert_eq!(reviews[0]["author"], "dr.wang");

    // The charting pseudo-device has no technical state: it can never go "offline".
    let technical = get_json(http_addr, "/api/v1/devices/technical").await;
    assert!(
        !technical.to_string().contains("\"charting\""),
        "charting has a technical state: {technical}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_round_notes_say_why_and_are_kept() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let http_addr = server.http_addr();
    let cases = [
        (json!({ "patient_id": "p1", "acvpu": "X" }), 400, "acvpu"),
        (
            json!({ "patient_id": "p1", "author": "dr.wang", "text": "x" }),
            400,
            "signed-in user",
        ),
        (json!({ "patient_id": "p1" }), 400, "text"),
        (
            json!({ "patient_id": "nobody", "text": "x" }),
            404,
            "patient",
        ),
        (
            json!({ "patient_id": "p1", "text": "x", "extra": 1 }),
            400,
            "extra",
        ),
    ];
    for (body, status, word) in &cases {
        let response = http(
            http_addr,
            "POST",
            "/api/v1/rounds/notes",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(response.status, *status, "{body}: {}", response.body);
        assert!(response.body.contains(word), "{body}: {}", response.body);
    }
    // Dead letters reach the store from the log a moment after the answer.
    let reasons = [
        "invalid_acvpu",
        "wrong_author",
        "empty_note",
        "unknown_patient",
        "invalid_json",
    ];
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let text = get_json(http_addr, "/api/v1/dead-letters?source=rounds")
            .await
            .to_string();
        if reasons.iter().all(|reason| text.contains(reason)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dead letters missing: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let metrics = http(http_addr, "GET", "/metrics", None).await.body;
    assert!(
        metrics.contains("invalid_acvpu"),
        "the refusal is not counted"
    );
    // Nothing was stored.
    assert_eq!(get_json(http_addr, "/api/v1/rounds/notes").await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_notes_stay_within_the_callers_wards() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let http_addr = server.http_addr();
    let w1 = user_token(&server, "nurse.w1", "nurse", Some(vec!["w1".into()])).await;
    let w2 = user_token(&server, "nurse.w2", "nurse", Some(vec!["w2".into()])).await;
    let note = json!({ "patient_id": "p1", "text": "comfortable", "reviewed": true }).to_string();

    // A nurse of another ward may not write about p1; the refusal is kept and counted.
    let refused = http_as(
        http_addr,
        Some(&w2),
        "POST",
        "/api/v1/rounds/notes",
        Some(&note),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let written = http_as(
        http_addr,
        Some(&w1),
        "POST",
        "/api/v1/rounds/notes",
        Some(&note),
    )
    .await;
    assert_eq!(written.status, 201, "{}", written.body);
    eventually("the refusal kept as a dead letter", || async {
        let text = get_json(http_addr, "/api/v1/dead-letters?source=rounds")
            .await
            .to_string();
        text.contains("outside_wards").then_some(())
    })
    .await;

    // Lists show only the caller's wards; asking for p1 by name is refused.
    for (token, expected) in [(&w1, 1), (&w2, 0)] {
        for path in ["/api/v1/rounds/notes", "/api/v1/rounds/reviews"] {
            let listed = http_as(http_addr, Some(token), "GET", path, None).await;
            assert_eq!(listed.status, 200, "{path}: {}", listed.body);
            assert_eq!(
                listed.json().as_array().unwrap().len(),
                expected,
                "{path}: {}",
                listed.body
            );
        }
    }
    let by_name = http_as(
        http_addr,
        Some(&w2),
        "GET",
        "/api/v1/rounds/notes?patient=p1",
        None,
    )
    .await;
    assert_eq!(by_name.status, 403, "{}", by_name.body);
    server.shutdown().await;
}

/// A note appears at once on the screens of the other clinicians of the patient's ward, and
/// never on another ward's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_appear_live_to_the_wards_clinicians() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let url_of = |token: &str| format!("ws://{addr}/api/v1/stream?access_token={token}");
    let writer = user_token(&server, "nurse.a", "nurse", Some(vec!["w1".into()])).await;
    let colleague = user_token(&server, "dr.b", "physician", Some(vec!["w1".into()])).await;
    let stranger = user_token(&server, "nurse.w2", "nurse", Some(vec!["w2".into()])).await;
    let (mut same_ward, _) = tokio_tungstenite::connect_async(url_of(&colleague))
        .await
        .unwrap();
    assert_eq!(next_json(&mut same_ward).await["type"], "snapshot");
    let (mut other_ward, _) = tokio_tungstenite::connect_async(url_of(&stranger))
        .await
        .unwrap();
    assert_eq!(next_json(&mut other_ward).await["type"], "snapshot");

    let note = json!({ "patient_id": "p1", "text": "chest clear", "acvpu": "A" }).to_string();
    let written = http_as(
        addr,
        Some(&writer),
        "POST",
        "/api/v1/rounds/notes",
        Some(&note),
    )
    .await;
    assert_eq!(written.status, 201, "{}", written.body);
    let written = written.json();

    let deadline = std::time::Instant::now() + DEADLINE;
    let seen = loop {
        assert!(std::time::Instant::now() < deadline, "no notes message");
        let message = next_json(&mut same_ward).await;
        if message["type"] == "notes" {
            break message;
        }
    };
    assert_eq!(seen["items"], json!([written]), "as the REST API lists it");
    assert_eq!(seen["items"][0]["author"], "nurse.a");

    // The other ward: everything before a marker (the answer to its own refused presence at a
    // bed of w1, sent after the note was published) holds no note.
    other_ward
        .send(Message::Text(
            json!({ "type": "presence", "bed_id": "b1" })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    loop {
        let message = next_json(&mut other_ward).await;
        assert_ne!(
            message["type"], "notes",
            "another ward saw p1's note: {message}"
        );
        if message["type"] == "error" {
            break;
        }
    }
    server.shutdown().await;
}
