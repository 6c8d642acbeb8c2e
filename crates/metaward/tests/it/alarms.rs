//! Alarms end to end over the real sockets: values over MQTT raise a physiological alarm after
//! its delay, the stream carries every step (raised, delivered, escalated, cleared), a latched
//! alarm waits for an acknowledgment over REST, the history is stored with who and when, and
//! active alarms survive a restart.

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::*;

/// Reads the stream until an `alarms` message has an event with `transition` for an alarm of
/// `kind`; returns the event. (NEWS2 score alarms run alongside: the same vitals feed both.)
async fn alarm_event<S>(ws: &mut S, transition: &str, kind: &str) -> Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{transition}` alarm event"
        );
        let message = next_json(ws).await;
        if message["type"] == "alarms"
            && let Some(event) = message["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["transition"] == transition && e["alarm"]["kind"] == kind)
        {
            return event.clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latched_alarm_is_raised_delivered_escalated_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = ServerConfig::ephemeral(&data);
    config.alarms.physiological.delay_ms = 1_000;
    config.alarms.lifecycle.escalate_after_ms.high = 1_500;
    let server = Server::start(config.clone()).await.unwrap();
    sign_in_admin(&server).await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(stream_url(http_addr, ""))
        .await
        .expect("ws connects");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["alarms"], json!([]), "{snapshot}");

    // Respiration rate 6/min (NEWS2 scores 3: high priority), held for the 1 s delay.
    let t = now_ms();
    publish_v311(
        mqtt,
        "it-alarm-1",
        "dev-1",
        numeric(t, "respiration_rate", 6.0),
    )
    .await;
    publish_v311(
        mqtt,
        "it-alarm-2",
        "dev-1",
        numeric(t + 1_000, "respiration_rate", 6.0),
    )
    .await;
    let raised = alarm_event(&mut ws, "raised", "physiological").await;
    let alarm = &raised["alarm"];
    assert_eq!(
        alarm["subject"],
        json!({ "kind": "patient", "id": "p1" }),
        "{raised}"
    );
    assert_eq!(alarm["kind"], "physiological");
    assert_eq!(alarm["condition"], "respiration_rate");
    assert_eq!(alarm["side"], "low");
    assert_eq!(alarm["priority"], "high");
    assert_eq!(alarm["latched"], true);
    assert_eq!(alarm["value"], 6.0);
    assert_eq!(alarm["limit"], 8.0);
    let id = alarm["id"].as_u64().unwrap();
    // Sending it to this client delivered it; no one acknowledges, so it escalates.
    assert_eq!(
        alarm_event(&mut ws, "delivered", "physiological").await["alarm"]["id"],
        id
    );
    let escalated = alarm_event(&mut ws, "escalated", "physiological").await;
    assert_eq!(escalated["alarm"]["escalations"], 1, "{escalated}");

    // Breathing normally again: the condition clears, but a latched alarm stays.
    publish_v311(
        mqtt,
        "it-alarm-3",
        "dev-1",
        numeric(now_ms(), "respiration_rate", 14.0),
    )
    .await;
    let cleared = alarm_event(&mut ws, "condition_cleared", "physiological").await;
    assert_eq!(cleared["alarm"]["state"], "escalated", "{cleared}");
    let active = get_json(http_addr, "/api/v1/alarms").await;
    assert!(
        active.as_array().unwrap().iter().any(|a| a["id"] == id),
        "a latched alarm stays active: {active}"
    );

    // Silences are bounded and need a reason; acknowledging resolves it, once.
    // Changes are made by a signed-in nurse; the record names who did it.
    let nurse = user_token(&server, "nurse.li", "nurse", Some(vec!["w1".into()])).await;
    let too_long = http_as(
        http_addr,
        Some(&nurse),
        "POST",
        &format!("/api/v1/alarms/{id}/silence"),
        Some(r#"{"by": "nurse.li", "reason": "turning", "duration_s": 3600}"#),
    )
    .await;
    assert_eq!(too_long.status, 400, "{}", too_long.body);
    let acked = http_as(
        http_addr,
        Some(&nurse),
        "POST",
        &format!("/api/v1/alarms/{id}/acknowledge"),
        Some(r#"{"by": "nurse.li"}"#),
    )
    .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    let acked = acked.json();
    assert_eq!(acked["state"], "resolved", "{acked}");
    assert_eq!(acked["acknowledged_by"], "nurse.li");
    let again = http_as(
        http_addr,
        Some(&nurse),
        "POST",
        &format!("/api/v1/alarms/{id}/acknowledge"),
        Some(r#"{"by": "nurse.li"}"#),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.body);
    let unknown = http(
        http_addr,
        "POST",
        "/api/v1/alarms/999999/acknowledge",
        Some(r#"{}"#),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let stored = get_json(http_addr, &format!("/api/v1/alarms/{id}")).await;
    let history: Vec<&str> = stored["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["transition"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "raised",
            "delivered",
            "escalated",
            "condition_cleared",
            "acknowledged",
            "resolved"
        ],
        "{stored}"
    );
    assert_eq!(stored["history"][4]["by"], "nurse.li");
    // Nobody acknowledges in another's name.
    let impostor = http_as(
        http_addr,
        Some(&nurse),
        "POST",
        &format!("/api/v1/alarms/{id}/acknowledge"),
        Some(r#"{"by": "nurse.wu"}"#),
    )
    .await;
    assert_eq!(impostor.status, 400, "{}", impostor.body);

    // A device no one associated raises a technical alarm, which survives a restart.
    publish_v311(
        mqtt,
        "it-alarm-4",
        "stranger-7",
        numeric(now_ms(), "spo2", 97.0),
    )
    .await;
    let technical = alarm_event(&mut ws, "raised", "technical").await;
    assert_eq!(
        technical["alarm"]["condition"], "unassociated_device",
        "{technical}"
    );
    assert_eq!(technical["alarm"]["subject"]["id"], "stranger-7");
    let technical_id = technical["alarm"]["id"].as_u64().unwrap();
    let _ = ws.send(Message::Close(None)).await;
    server.shutdown().await;

    let server = Server::start(config).await.unwrap();
    sign_in_admin(&server).await;
    let active = get_json(server.http_addr(), "/api/v1/alarms?device=stranger-7").await;
    assert_eq!(active[0]["id"], technical_id, "{active}");
    let all = get_json(server.http_addr(), "/api/v1/alarms?state=all&patient=p1").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id && a["state"] == "resolved"),
        "{all}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_override_changes_when_an_alarm_is_raised() {
    let (server, _dir) = start_server_with(|config| config.alarms.physiological.delay_ms = 0).await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    // A patient with a prescribed 88–92% target: only below 86 is an alarm.
    let put = http(
        http_addr,
        "PUT",
        "/api/v1/patients/p1/alarm-limits/spo2",
        Some(r#"{"low": [{"at": 85, "priority": "high"}]}"#),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let limits = get_json(http_addr, "/api/v1/patients/p1/alarm-limits/spo2").await;
    assert_eq!(limits["low"], json!([{ "at": 85.0, "priority": "high" }]));

    publish_v311(mqtt, "it-limit-1", "dev-1", numeric(now_ms(), "spo2", 89.0)).await;
    let physiological = |alarms: Value| -> Vec<Value> {
        alarms
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "physiological")
            .cloned()
            .collect()
    };
    let active = physiological(get_json(http_addr, "/api/v1/alarms?patient=p1").await);
    assert!(
        active.is_empty(),
        "89% is within this patient's limits: {active:?}"
    );
    publish_v311(
        mqtt,
        "it-limit-2",
        "dev-1",
        numeric(now_ms() + 1, "spo2", 84.0),
    )
    .await;
    let active = physiological(get_json(http_addr, "/api/v1/alarms?patient=p1").await);
    assert_eq!(active[0]["limit"], 85.0, "{active:?}");

    let bad = http(
        http_addr,
        "PUT",
        "/api/v1/patients/p1/alarm-limits/spo2",
        Some(r#"{"low": [{"at": 85, "priority": "urgent"}]}"#),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let reset = http(
        http_addr,
        "DELETE",
        "/api/v1/patients/p1/alarm-limits/spo2",
        None,
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.json()["default"]["low"][0]["at"], 93.0);
    server.shutdown().await;
}
