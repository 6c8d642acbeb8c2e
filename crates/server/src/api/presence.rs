//! Presence on the live stream: clinicians in the same ward see each other, who is at which
//! bed and where each one stands and looks. A stream client says where it is with
//! `{"type": "presence", "bed_id", "position", "target"}`; every other client is sent
//! `{"type": "presence", "items": [ … ]}` with that clinician's latest state, and `gone: true`
//! when their connection ends. The name shown is the signed-in user's, taken from the session:
//! a `name` in the message, kept for older clients, must be that user (nobody appears as
//! another). Nothing is stored: presence is only ever the latest, in memory,
//! and a new client is sent everyone present right after its snapshot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Presence messages larger than this are refused: a name and two points fit in far less.
pub const MAX_PRESENCE_BYTES: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceMessage {
    #[serde(rename = "type")]
    _type: String,
    /// Optional; if given it must be the signed-in user.
    name: Option<String>,
    bed_id: Option<String>,
    /// Where the viewer stands, ward metres.
    position: Option<[f64; 3]>,
    /// Where the viewer looks.
    target: Option<[f64; 3]>,
}

/// Everyone present, and a channel that carries each change to every stream client.
pub struct Presence {
    next_id: AtomicU64,
    present: Mutex<HashMap<u64, Value>>,
    changes: broadcast::Sender<(u64, Value)>,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            next_id: AtomicU64::new(1),
            present: Mutex::new(HashMap::new()),
            // A client that falls this far behind misses intermediate moves, which the next
            // change replaces anyway.
            changes: broadcast::channel(256).0,
        }
    }
}

impl Presence {
    /// A new stream client: its id, the presence of everyone else now, and its feed of changes.
    pub fn join(&self) -> (u64, Vec<Value>, broadcast::Receiver<(u64, Value)>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let receiver = self.changes.subscribe();
        let present = self
            .present
            .lock()
            .expect("presence lock")
            .values()
            .cloned()
            .collect();
        (id, present, receiver)
    }

    /// Applies a text frame from the client `id`, signed in as `user`; `Err` says why it was
    /// refused, in the client's terms.
    pub fn update(&self, id: u64, user: &str, text: &str, now_ms: i64) -> Result<(), String> {
        if text.len() > MAX_PRESENCE_BYTES {
            return Err(format!(
                "a presence message has at most {MAX_PRESENCE_BYTES} bytes"
            ));
        }
        let message: PresenceMessage =
            serde_json::from_str(text).map_err(|e| format!("invalid presence message: {e}"))?;
        if message._type != "presence" {
            return Err(format!("unknown message type `{}`", message._type));
        }
        if let Some(name) = message.name.as_deref().map(str::trim)
            && name != user
        {
            return Err("`name` must be the signed-in user (or left out)".into());
        }
        let name = user;
        let finite =
            |point: &Option<[f64; 3]>| point.is_none_or(|p| p.iter().all(|v| v.is_finite()));
        if !finite(&message.position) || !finite(&message.target) {
            return Err("`position` and `target` must be three finite numbers".into());
        }
        let item = json!({ "id": format!("c{id}"), "name": name, "bed_id": message.bed_id,
                           "position": message.position, "target": message.target, "at": now_ms });
        self.present
            .lock()
            .expect("presence lock")
            .insert(id, item.clone());
        // No receiver is not an error: no one else is watching.
        let _ = self.changes.send((id, item));
        Ok(())
    }

    /// A client's connection ended.
    pub fn leave(&self, id: u64) {
        if self
            .present
            .lock()
            .expect("presence lock")
            .remove(&id)
            .is_some()
        {
            let _ = self
                .changes
                .send((id, json!({ "id": format!("c{id}"), "gone": true })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_see_a_join_a_move_and_a_leave_and_bad_messages_say_why() {
        let presence = Presence::default();
        let (a, _, mut a_feed) = presence.join();
        let (b, present, _) = presence.join();
        assert!(present.is_empty());
        presence
            .update(
                b,
                "dr-b",
                r#"{"type":"presence","bed_id":"b1","position":[1,1.6,2],"target":[0,0.7,0]}"#,
                5,
            )
            .unwrap();
        let (from, item) = a_feed.try_recv().unwrap();
        assert_eq!(from, b);
        assert_eq!(item["name"], "dr-b");
        assert_eq!(item["bed_id"], "b1");
        let (_, present, _) = presence.join();
        assert_eq!(present.len(), 1);
        presence.leave(b);
        assert_eq!(a_feed.try_recv().unwrap().1["gone"], true);
        for (bad, why) in [
            (r#"{"type":"presence","name":"dr-b"}"#, "signed-in user"),
            (r#"{"type":"presence","name":""}"#, "signed-in user"),
            (r#"{"type":"chat"}"#, "unknown message type"),
            (r#"{"type":"presence","extra":1}"#, "unknown field"),
            (r#"not json"#, "invalid presence message"),
        ] {
            let error = presence.update(a, "dr-a", bad, 6).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(presence.update(a, "dr-a", &"x".repeat(2000), 7).is_err());
        // The own name, given or not, is accepted.
        presence
            .update(a, "dr-a", r#"{"type":"presence","name":"dr-a"}"#, 8)
            .unwrap();
    }
}
