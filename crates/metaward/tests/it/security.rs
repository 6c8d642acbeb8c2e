//! Who may see and touch patient data: every documented route (OpenAPI and the FHIR
//! CapabilityStatement) refuses an anonymous caller and a caller from another ward; roles
//! decide changes; lockout, refresh, logout; the stream carries only the caller's wards; the
//! audit trail records accesses and `metaward audit verify` catches a tampered row.

use std::process::Command;

use serde_json::{Value, json};

use crate::*;

/// The routes anyone may call.
const PUBLIC: &[&str] = &[
    "/openapi.json",
    "/auth/login",
    "/auth/refresh",
    "/auth/config",
    "/auth/oidc/login",
    "/auth/oidc/callback",
    "/auth/oidc/redeem",
];

/// A server with ward w1 (patient p1 in r1/b1, device dev-1) and an active alarm on p1.
async fn ward_with_an_alarm() -> (Server, tempfile::TempDir, u64) {
    let (server, dir) = start_server_with(|config| config.alarms.physiological.delay_ms = 0).await;
    server.apply_setup(small_setup()).await.unwrap();
    publish_v311(
        server.mqtt_addr(),
        "sec-1",
        "dev-1",
        numeric(now_ms(), "spo2", 82.0),
    )
    .await;
    let http_addr = server.http_addr();
    let alarm_id = eventually("an SpO2 alarm on p1", || async {
        let alarms = get_json(http_addr, "/api/v1/alarms?patient=p1").await;
        alarms.as_array()?.first()?["id"].as_u64()
    })
    .await;
    (server, dir, alarm_id)
}

fn concrete(path: &str, alarm_id: u64) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{patient_id}" => "p1".to_owned(),
            "{room_id}" => "r1".to_owned(),
            "{alarm_id}" => alarm_id.to_string(),
            "{device_id}" => "dev-1".to_owned(),
            "{metric}" => "spo2".to_owned(),
            "{name}" => "nobody".to_owned(),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_refuses_anonymous_and_other_wards() {
    let (server, _dir, alarm_id) = ward_with_an_alarm().await;
    let http_addr = server.http_addr();
    // The highest role, scoped to another ward: only the scope can refuse it.
    let elsewhere = user_token(&server, "admin.w2", "admin", Some(vec!["w2".into()])).await;

    let document: Value =
        serde_json::from_str(include_str!("../../../server/src/api/openapi.json")).unwrap();
    let base = document["servers"][0]["url"].as_str().unwrap();
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let method = method.to_uppercase();
            let needs_metric = operation["parameters"].as_array().is_some_and(|params| {
                params.iter().any(|p| {
                    p["$ref"] == "#/components/parameters/metric"
                        || (p["name"] == "metric" && p["required"] == true)
                })
            });
            let query = if needs_metric { "?metric=spo2" } else { "" };
            let url = format!("{base}{}{query}", concrete(path, alarm_id));
            // A note about p1 (the patient is in the body, so an empty one would only be
            // refused as malformed).
            let body = if path == "/rounds/notes" {
                Some(r#"{"patient_id": "p1", "text": "seen"}"#)
            } else {
                (method != "GET" && method != "DELETE").then_some("{}")
            };
            let anonymous = http_as(http_addr, None, &method, &url, body).await;
            if PUBLIC.contains(&path.as_str()) {
                assert_ne!(anonymous.status, 401, "{method} {url} is public");
                continue;
            }
            assert_eq!(
                anonymous.status, 401,
                "{method} {url} anonymous: {}",
                anonymous.body
            );
            assert!(
                !anonymous.body.contains("p1"),
                "{method} {url}: {}",
                anonymous.body
            );
            if path == "/auth/logout" {
                continue; // would end the session the rest of the walk uses
            }
            let other = http_as(http_addr, Some(&elsewhere), &method, &url, body).await;
            let unscoped = matches!(
                path.as_str(),
                "/catalog"
                    | "/auth/me"
                    | "/devices"
                    | "/devices/unassociated"
                    | "/devices/technical"
                    | "/devices/{device_id}"
                    | "/stream"
            );
            if unscoped {
                // Not patient data (the stream is checked for scope below).
            } else if path == "/sql" {
                // Answered over the caller's wards only (checked with queries below).
                assert!(
                    !other.body.contains("Ada"),
                    "{method} {url}: {}",
                    other.body
                );
            } else if method == "GET"
                && matches!(
                    path.as_str(),
                    "/wards"
                        | "/rooms"
                        | "/beds"
                        | "/patients"
                        | "/alarms"
                        | "/rounds/notes"
                        | "/rounds/reviews"
                )
            {
                assert_eq!(other.status, 200, "{method} {url}: {}", other.body);
                assert_eq!(
                    other.json(),
                    json!([]),
                    "{method} {url}: another ward's data"
                );
            } else {
                assert!(
                    other.status == 403 || other.status == 404,
                    "{method} {url} from another ward: {} {}",
                    other.status,
                    other.body
                );
                assert!(
                    !other.body.contains("Ada"),
                    "{method} {url}: {}",
                    other.body
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations");

    // p1's record: the Patient and a Condition, written by an admin of every ward.
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ada"}]});
    let condition = json!({"resourceType": "Condition", "id": "c1",
        "code": {"text": "Pneumonia"}, "subject": {"reference": "Patient/p1"}});
    for (path, body) in [
        ("/fhir/Patient/p1", &patient),
        ("/fhir/Condition/c1", &condition),
    ] {
        let written = http(http_addr, "PUT", path, Some(&body.to_string())).await;
        assert!(
            written.status == 201 || written.status == 200,
            "{}",
            written.body
        );
    }
    let existing = |kind: &str| match kind {
        "Patient" => "p1",
        "Condition" => "c1",
        _ => "x",
    };

    // The FHIR CapabilityStatement (itself public) and every interaction it lists.
    let metadata = http_as(http_addr, None, "GET", "/fhir/metadata", None).await;
    assert_eq!(metadata.status, 200);
    let metadata = metadata.json();
    let mut fhir_checked = 0;
    for rest in metadata["rest"].as_array().unwrap() {
        for resource in rest["resource"].as_array().unwrap() {
            let kind = resource["type"].as_str().unwrap();
            let id = existing(kind);
            for interaction in resource["interaction"].as_array().unwrap() {
                let code = interaction["code"].as_str().unwrap();
                let (method, path) = match code {
                    "read" => ("GET", format!("/fhir/{kind}/{id}")),
                    "vread" => ("GET", format!("/fhir/{kind}/{id}/_history/1")),
                    "update" => ("PUT", format!("/fhir/{kind}/{id}")),
                    "delete" => ("DELETE", format!("/fhir/{kind}/{id}")),
                    "history-instance" => ("GET", format!("/fhir/{kind}/{id}/_history")),
                    "history-type" => ("GET", format!("/fhir/{kind}/_history")),
                    "create" => ("POST", format!("/fhir/{kind}")),
                    "search-type" => ("GET", format!("/fhir/{kind}")),
                    other => panic!("interaction {other} not walked"),
                };
                let anonymous = http_as(http_addr, None, method, &path, Some("{}")).await;
                assert_eq!(anonymous.status, 401, "{method} {path}: {}", anonymous.body);
                assert_eq!(anonymous.json()["resourceType"], "OperationOutcome");
                // Another ward's admin: changes and whole-record reads are refused; reads of
                // p1's resources are refused; searches come back without p1's data.
                let other = http_as(http_addr, Some(&elsewhere), method, &path, Some("{}")).await;
                let refused = other.status == 403 || (other.status == 404 && id == "x");
                let empty_search = code == "search-type"
                    && other.status == 200
                    && (other.json()["total"] == 0
                        || !["Patient", "Condition", "Observation"].contains(&kind));
                assert!(
                    refused || empty_search,
                    "{method} {path} from another ward: {} {}",
                    other.status,
                    other.body
                );
                assert!(
                    !other.body.contains("Ada") && !other.body.contains("Patient/p1"),
                    "{method} {path}: {}",
                    other.body
                );
                fhir_checked += 1;
            }
            for operation in resource["operation"].as_array().into_iter().flatten() {
                let name = operation["name"].as_str().unwrap();
                let path = format!("/fhir/{kind}/${name}?patient=p1");
                let anonymous = http_as(http_addr, None, "GET", &path, None).await;
                assert_eq!(anonymous.status, 401, "{path}");
                let other = http_as(http_addr, Some(&elsewhere), "GET", &path, None).await;
                assert_eq!(other.status, 200, "{path}: {}", other.body);
                assert_eq!(other.json()["total"], 0, "{path}: {}", other.body);
                fhir_checked += 1;
            }
        }
        for interaction in rest["interaction"].as_array().into_iter().flatten() {
            let code = interaction["code"].as_str().unwrap();
            let (method, path) = match code {
                "transaction" | "batch" => ("POST", "/fhir"),
                "history-system" => ("GET", "/fhir/_history"),
                "search-system" => ("GET", "/fhir"),
                other => panic!("system interaction {other} not walked"),
            };
            for token in [None, Some(elsewhere.as_str())] {
                let response = http_as(http_addr, token, method, path, Some("{}")).await;
                assert_eq!(
                    response.status,
                    if token.is_none() { 401 } else { 403 },
                    "{code}"
                );
            }
            fhir_checked += 1;
        }
    }
    assert!(fhir_checked >= 20, "only {fhir_checked} FHIR interactions");

    // The scope filters, it does not just refuse: a reader of w1 sees p1's record and the
    // device values, a reader of w2 none of it, and p1's resources are refused to w2 by id.
    let w1_reader = user_token(&server, "obs.w1", "observer", Some(vec!["w1".into()])).await;
    for (path, at_least) in [
        ("/fhir/Patient", 1),
        ("/fhir/Condition?patient=p1", 1),
        (
            "/fhir/Observation?patient=p1&code=http://loinc.org%7C59408-5",
            1,
        ),
    ] {
        let mine = http_as(http_addr, Some(&w1_reader), "GET", path, None).await;
        assert_eq!(mine.status, 200, "{path}: {}", mine.body);
        assert!(
            mine.json()["total"].as_u64().unwrap() >= at_least,
            "{path}: {}",
            mine.body
        );
        let theirs = http_as(http_addr, Some(&elsewhere), "GET", path, None).await;
        assert_eq!(theirs.json()["total"], 0, "{path}: {}", theirs.body);
    }
    let device_value = http_as(
        http_addr,
        Some(&w1_reader),
        "GET",
        "/fhir/Observation?patient=p1&_count=1",
        None,
    )
    .await
    .json();
    let id = device_value["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/fhir/Observation/{id}");
    assert_eq!(
        http_as(http_addr, Some(&w1_reader), "GET", &path, None)
            .await
            .status,
        200
    );
    assert_eq!(
        http_as(http_addr, Some(&elsewhere), "GET", &path, None)
            .await
            .status,
        403
    );

    // A route nobody listed in the policy is closed, not open.
    let unlisted = http_as(
        http_addr,
        Some(&elsewhere),
        "GET",
        "/api/v1/not-yet-written",
        None,
    )
    .await;
    assert_eq!(unlisted.status, 403, "{}", unlisted.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_who_may_change_what() {
    let (server, _dir, alarm_id) = ward_with_an_alarm().await;
    let http_addr = server.http_addr();
    let w1 = || Some(vec!["w1".to_owned()]);
    let observer = user_token(&server, "obs", "observer", w1()).await;
    let nurse = user_token(&server, "nurse", "nurse", w1()).await;
    let physician = user_token(&server, "doc", "physician", w1()).await;
    let chief = user_token(&server, "chief", "physician", None).await;
    let limits = r#"{"low": [{"at": 85, "priority": "high"}]}"#;
    let put_limits = "/api/v1/patients/p1/alarm-limits/spo2";
    let ack = format!("/api/v1/alarms/{alarm_id}/acknowledge");
    let sql = r#"{"query": "SELECT count(*) FROM vitals"}"#;

    // Everyone of the ward reads.
    for token in [&observer, &nurse, &physician] {
        let twin = http_as(
            http_addr,
            Some(token),
            "GET",
            "/api/v1/patients/p1/twin",
            None,
        )
        .await;
        assert_eq!(twin.status, 200, "{}", twin.body);
    }
    // Observers do not acknowledge; nurses do, in their own name.
    let refused = http_as(http_addr, Some(&observer), "POST", &ack, Some("{}")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let acked = http_as(http_addr, Some(&nurse), "POST", &ack, Some("{}")).await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert_eq!(acked.json()["acknowledged_by"], "nurse");
    // Only physicians change a patient's limits.
    let refused = http_as(http_addr, Some(&nurse), "PUT", put_limits, Some(limits)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let changed = http_as(http_addr, Some(&physician), "PUT", put_limits, Some(limits)).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    // SQL: physicians and admins; a ward-scoped one sees only their wards' rows.
    let refused = http_as(http_addr, Some(&nurse), "POST", "/api/v1/sql", Some(sql)).await;
    assert_eq!(refused.status, 403);
    let answered = http_as(http_addr, Some(&chief), "POST", "/api/v1/sql", Some(sql)).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    let all_vitals = answered.json()["rows"][0][0].clone();
    let own = http_as(
        http_addr,
        Some(&physician),
        "POST",
        "/api/v1/sql",
        Some(sql),
    )
    .await;
    assert_eq!(own.status, 200, "a ward-scoped physician: {}", own.body);
    assert_eq!(own.json()["rows"][0][0], all_vitals, "w1 holds every value");
    let stranger = user_token(&server, "doc9", "physician", Some(vec!["w9".to_owned()])).await;
    let none = http_as(http_addr, Some(&stranger), "POST", "/api/v1/sql", Some(sql)).await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(
        none.json()["rows"][0][0],
        0,
        "another ward's physician sees no value"
    );
    let raw = r#"{"query": "SELECT count(*) FROM main.vitals"}"#;
    let refused = http_as(http_addr, Some(&stranger), "POST", "/api/v1/sql", Some(raw)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    // Only admins manage users and devices.
    let refused = http_as(http_addr, Some(&chief), "GET", "/api/v1/users", None).await;
    assert_eq!(refused.status, 403);
    let refused = http_as(
        http_addr,
        Some(&chief),
        "PUT",
        "/api/v1/devices/dev-1/credential",
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_refresh_logout_and_disable() {
    let (server, _dir) = start_server().await;
    let http_addr = server.http_addr();
    let password = server
        .create_user("ann", "nurse", Some(vec!["w1".into()]))
        .await
        .unwrap();
    let login_as = |password: String| async move {
        let body = json!({ "username": "ann", "password": password }).to_string();
        http_as(http_addr, None, "POST", "/api/v1/auth/login", Some(&body)).await
    };

    // Refresh rotates: the new access token works, the old refresh token does not again.
    let session = login_as(password.clone()).await.json();
    let refresh = json!({ "refresh_token": session["refresh_token"] }).to_string();
    let renewed = http_as(
        http_addr,
        None,
        "POST",
        "/api/v1/auth/refresh",
        Some(&refresh),
    )
    .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let renewed = renewed.json();
    let token = renewed["access_token"].as_str().unwrap().to_owned();
    let me = http_as(http_addr, Some(&token), "GET", "/api/v1/auth/me", None).await;
    assert_eq!(
        me.json(),
        json!({ "name": "ann", "role": "nurse", "wards": ["w1"] })
    );
    let reused = http_as(
        http_addr,
        None,
        "POST",
        "/api/v1/auth/refresh",
        Some(&refresh),
    )
    .await;
    assert_eq!(reused.status, 401);
    // Logout revokes.
    let out = http_as(http_addr, Some(&token), "POST", "/api/v1/auth/logout", None).await;
    assert_eq!(out.status, 204);
    let after = http_as(http_addr, Some(&token), "GET", "/api/v1/auth/me", None).await;
    assert_eq!(after.status, 401);

    // Five wrong passwords lock the account: then even the right one is refused.
    for _ in 0..5 {
        let wrong = login_as("guess".into()).await;
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.json()["error"]["code"], "bad_credentials");
    }
    let locked = login_as(password.clone()).await;
    assert_eq!(locked.status, 401);
    assert_eq!(locked.json()["error"]["code"], "locked");
    // An admin's reset gives a new password (shown once) and lifts the lock.
    let reset = http(http_addr, "POST", "/api/v1/users/ann/reset-password", None).await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    let new_password = reset.json()["password"].as_str().unwrap().to_owned();
    assert_eq!(
        login_as(password).await.status,
        401,
        "the old password is gone"
    );
    let session = login_as(new_password.clone()).await;
    assert_eq!(session.status, 200, "{}", session.body);
    let token = session.json()["access_token"].as_str().unwrap().to_owned();
    // Disabling ends the session at once and refuses logins.
    let disabled = http(http_addr, "POST", "/api/v1/users/ann/disable", None).await;
    assert_eq!(disabled.status, 204);
    let after = http_as(http_addr, Some(&token), "GET", "/api/v1/auth/me", None).await;
    assert_eq!(after.status, 401);
    let refused = login_as(new_password).await;
    assert_eq!(refused.json()["error"]["code"], "disabled");
    // The list never shows a hash.
    let users = http(http_addr, "GET", "/api/v1/users", None).await;
    assert!(!users.body.contains("argon2"), "{}", users.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_carries_only_the_callers_wards() {
    use futures::StreamExt;
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let http_addr = server.http_addr();
    publish_v311(
        server.mqtt_addr(),
        "sec-s",
        "dev-1",
        numeric(now_ms(), "heart_rate", 71.0),
    )
    .await;
    let own = user_token(&server, "own", "observer", Some(vec!["w1".into()])).await;
    let other = user_token(&server, "other", "observer", Some(vec!["w2".into()])).await;

    let anonymous =
        tokio_tungstenite::connect_async(format!("ws://{http_addr}/api/v1/stream")).await;
    assert!(anonymous.is_err(), "a stream without a token is refused");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{http_addr}/api/v1/stream?access_token={own}"
    ))
    .await
    .unwrap();
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["patients"][0]["id"], "p1");
    assert!(
        has_value(&snapshot["values"], "heart_rate", 71.0),
        "{snapshot}"
    );
    // Asking for another ward's data does not widen the scope.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{http_addr}/api/v1/stream?access_token={other}&ward=w1"
    ))
    .await
    .unwrap();
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["patients"], json!([]), "{snapshot}");
    assert_eq!(snapshot["wards"], json!([]));
    assert_eq!(snapshot["values"], json!([]));
    publish_v311(
        server.mqtt_addr(),
        "sec-s2",
        "dev-1",
        numeric(now_ms(), "heart_rate", 72.0),
    )
    .await;
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), ws.next()).await;
    if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) = nothing {
        assert!(
            !text.contains("p1"),
            "another ward's update reached the stream: {text}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_records_access_and_a_tampered_row_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(ServerConfig::ephemeral(&data)).await.unwrap();
    sign_in_admin(&server).await;
    server.apply_setup(small_setup()).await.unwrap();
    let http_addr = server.http_addr();
    let wrong = json!({ "username": "it-admin-x", "password": "guess" }).to_string();
    assert_eq!(
        http_as(http_addr, None, "POST", "/api/v1/auth/login", Some(&wrong))
            .await
            .status,
        401
    );
    assert_eq!(
        http(http_addr, "GET", "/api/v1/patients/p1/twin", None)
            .await
            .status,
        200
    );
    assert_eq!(
        http_as(http_addr, None, "GET", "/api/v1/patients/p1", None)
            .await
            .status,
        401
    );

    // An answer waits for its audit entry: the trail has them all at once, no waiting.
    let bundle = http(http_addr, "GET", "/api/v1/audit", None).await.json();
    let events = bundle["entry"].as_array().unwrap().clone();
    let find = |subtype: &str, outcome: &str| {
        events.iter().any(|e| {
            e["resource"]["subtype"][0]["code"] == subtype
                && e["resource"]["outcomeDesc"] == outcome
        })
    };
    assert!(find("login", "success"), "{events:?}");
    assert!(find("login_failed", "bad_credentials"));
    assert!(find("read", "success"));
    assert!(find("read", "401"), "the anonymous attempt");
    let read = events
        .iter()
        .find(|e| e["resource"]["entity"].to_string().contains("Patient/p1"))
        .unwrap();
    assert_eq!(read["resource"]["resourceType"], "AuditEvent");
    assert_eq!(
        read["resource"]["agent"][0]["network"]["address"],
        "127.0.0.1"
    );
    assert!(
        read["resource"]["agent"][0]["who"]["display"]
            .as_str()
            .unwrap()
            .starts_with("it-admin-")
    );

    // When the trail cannot be written (here the store refuses the insert, as a full disk
    // would), patient data is not served: 503, and served again once it can be.
    let store = store::Store::open(data.join("metaward.sqlite")).unwrap();
    store
        .connection()
        .execute_batch(
            "CREATE TRIGGER audit_log_broken BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let refused = http(http_addr, "GET", "/api/v1/patients/p1/twin", None).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(!refused.body.contains("Ada"), "{}", refused.body);
    store
        .connection()
        .execute_batch("DROP TRIGGER audit_log_broken;")
        .unwrap();
    let served = http(http_addr, "GET", "/api/v1/patients/p1/twin", None).await;
    assert_eq!(served.status, 200, "{}", served.body);
    server.shutdown().await;

    let metaward = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_metaward"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .env("METAWARD_LOG", "warn")
            .output()
            .unwrap()
    };
    let verified = metaward(&["audit", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let exported = metaward(&["audit", "export"]);
    let bundle: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(
        bundle["entry"].as_array().unwrap().len(),
        bundle["total"].as_u64().unwrap() as usize
    );

    // Someone with the database file rewrites who read the record (dropping the trigger that
    // forbids it): the chain names that entry.
    {
        let store = store::Store::open(data.join("metaward.sqlite")).unwrap();
        store
            .connection()
            .execute_batch(
                "DROP TRIGGER audit_log_no_update;
                 UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3;",
            )
            .unwrap();
    }
    let broken = metaward(&["audit", "verify"]);
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("broken at entry 3"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (admin, password) = crate::crash::create_admin_with_cli(&data);
    let metaward = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_metaward"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let created = metaward(&["user", "create", "bo", "--role", "nurse", "--ward", "w1"]);
    assert!(created.status.success());
    let nowards = metaward(&["user", "create", "cy", "--role", "nurse"]);
    assert!(!nowards.status.success(), "a user needs a ward scope");
    let list = String::from_utf8_lossy(&metaward(&["user", "list"]).stdout).into_owned();
    assert!(list.contains("\"bo\"") && list.contains(&admin), "{list}");
    assert!(
        !list.contains("argon2") && !list.contains(&password),
        "{list}"
    );
    assert!(metaward(&["user", "disable", "bo"]).status.success());
    // The command line's changes are in the audit trail too.
    let exported = metaward(&["audit", "export"]);
    let trail = String::from_utf8_lossy(&exported.stdout).into_owned();
    assert!(trail.contains("metaward user disable bo"), "{trail}");
    assert!(metaward(&["audit", "verify"]).status.success());

    let server = Server::start(ServerConfig::ephemeral(&data)).await.unwrap();
    let token = login(server.http_addr(), &admin, &password).await;
    let users = http_as(
        server.http_addr(),
        Some(&token),
        "GET",
        "/api/v1/users",
        None,
    )
    .await;
    let bo = users
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bo")
        .cloned()
        .unwrap();
    assert_eq!(bo["disabled"], true);
    assert_eq!(bo["wards"], json!(["w1"]));
    server.shutdown().await;
}
