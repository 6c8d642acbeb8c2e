//! Presence over the real WebSocket: one clinician's position reaches the others under their
//! signed-in name, a newcomer is told who is there, leaving is announced, and a bad presence
//! message (another's name) is answered with the reason and counted. Presence is ward-scoped:
//! a user of another ward is never told who is at a bed of this one.

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::*;

async fn message_of_type<S>(ws: &mut S, kind: &str) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        assert!(std::time::Instant::now() < deadline, "no {kind} message");
        let message = next_json(ws).await;
        if message["type"] == kind {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinicians_see_each_other_arrive_move_and_leave() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let url_of = |token: &str| format!("ws://{addr}/api/v1/stream?access_token={token}");
    let token_a = user_token(&server, "dr.a", "physician", None).await;
    let token_b = user_token(&server, "dr.b", "physician", None).await;
    let token_c = user_token(&server, "nurse.c", "nurse", None).await;
    // A nurse of another ward: sees nobody of ward w1, and cannot appear at its beds.
    let token_other = user_token(&server, "nurse.w2", "nurse", Some(vec!["w2".into()])).await;
    let (mut other, _) = tokio_tungstenite::connect_async(url_of(&token_other))
        .await
        .unwrap();
    assert_eq!(next_json(&mut other).await["type"], "snapshot");
    let (mut a, _) = tokio_tungstenite::connect_async(url_of(&token_a))
        .await
        .unwrap();
    assert_eq!(next_json(&mut a).await["type"], "snapshot");
    let (mut b, _) = tokio_tungstenite::connect_async(url_of(&token_b))
        .await
        .unwrap();
    assert_eq!(next_json(&mut b).await["type"], "snapshot");

    // The name shown is the session's, not one the client picks.
    let here = json!({ "type": "presence", "bed_id": "b1",
                       "position": [1.0, 1.6, 2.0], "target": [0.0, 0.7, 0.0] });
    b.send(Message::Text(here.to_string().into()))
        .await
        .unwrap();
    let seen = message_of_type(&mut a, "presence").await;
    let item = &seen["items"][0];
    assert_eq!(item["name"], "dr.b");
    assert_eq!(item["bed_id"], "b1");
    assert_eq!(item["position"], json!([1.0, 1.6, 2.0]));
    let b_id = item["id"].clone();

    // A newcomer is told who is there right after its snapshot.
    let (mut c, _) = tokio_tungstenite::connect_async(url_of(&token_c))
        .await
        .unwrap();
    assert_eq!(next_json(&mut c).await["type"], "snapshot");
    let present = message_of_type(&mut c, "presence").await;
    assert_eq!(present["items"][0]["name"], "dr.b");

    // The other ward's nurse was not told: the first message they get is the answer to their
    // own presence at a bed of w1, which is refused.
    other
        .send(Message::Text(
            json!({ "type": "presence", "bed_id": "b1" })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let first = next_json(&mut other).await;
    assert_eq!(first["type"], "error", "{first}");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("not a bed of your wards"),
        "{first}"
    );
    // Away from a bed they are in their own ward: w1's clinicians are not told either.
    other
        .send(Message::Text(
            json!({ "type": "presence", "position": [40.0, 1.6, 2.0] })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    // And a newcomer of w2 is not told who is at w1's beds, only about their own ward.
    let token_other2 = user_token(&server, "nurse.w2b", "nurse", Some(vec!["w2".into()])).await;
    let (mut other2, _) = tokio_tungstenite::connect_async(url_of(&token_other2))
        .await
        .unwrap();
    assert_eq!(next_json(&mut other2).await["type"], "snapshot");
    let present = message_of_type(&mut other2, "presence").await;
    let names: Vec<&str> = present["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect();
    assert_eq!(names, ["nurse.w2"], "{present}");

    // Claiming another's name is answered, not relayed.
    a.send(Message::Text(
        r#"{"type":"presence","name":"dr.b","bed_id":"b1"}"#.into(),
    ))
    .await
    .unwrap();
    let error = message_of_type(&mut a, "error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("signed-in user"),
        "{error}"
    );
    let metrics = http(server.http_addr(), "GET", "/metrics", None).await.body;
    assert!(metrics.contains("invalid_presence"));

    drop(b);
    let gone = message_of_type(&mut a, "presence").await;
    assert_eq!(gone["items"][0]["id"], b_id);
    assert_eq!(gone["items"][0]["gone"], true);

    // Nothing of w1's presence ever reached the other ward: a last move of dr.a at b1, then a
    // presence of the w2 nurse as a marker; everything the w2 newcomer got before the marker is
    // theirs.
    a.send(Message::Text(
        json!({ "type": "presence", "bed_id": "b1" })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    message_of_type(&mut c, "presence").await;
    other
        .send(Message::Text(
            json!({ "type": "presence", "position": [41.0, 1.6, 2.0] })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    loop {
        let message = message_of_type(&mut other2, "presence").await;
        let item = &message["items"][0];
        assert_ne!(item["name"], "dr.a", "{message}");
        assert_ne!(item["name"], "dr.b", "{message}");
        assert_ne!(item["id"], b_id, "not even a leaving: {message}");
        if item["position"] == json!([41.0, 1.6, 2.0]) {
            break;
        }
    }
}
