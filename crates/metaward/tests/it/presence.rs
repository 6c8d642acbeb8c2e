//! Presence over the real WebSocket: one clinician's position reaches the others under their
//! signed-in name, a newcomer is told who is there, leaving is announced, and a bad presence
//! message (another's name) is answered with the reason and counted.

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
}
