//! Presence on the live stream: clinicians in the same ward see each other, who is at which
//! bed and where each one stands and looks. A stream client says where it is with
//! `{"type": "presence", "bed_id", "position", "target"}`; every other client is sent
//! `{"type": "presence", "items": [ … ]}` with that clinician's latest state, and `gone: true`
//! when their connection ends. The name shown is the signed-in user's, taken from the session:
//! a `name` in the message, kept for older clients, must be that user (nobody appears as
//! another). Nothing is stored: presence is only ever the latest, in memory,
//! and a new client is sent everyone present right after its snapshot.
//!
//! Presence is ward-scoped like the rest of the stream: a clinician's presence belongs to the
//! ward of the bed they are at; away from a bed, to the ward their stream asked for (`?ward=`)
//! or the one ward they are scoped to, else to no ward. It goes only to clients who see that
//! ward (a presence in no ward only to clients of every ward), so a name and a bed never reach
//! a user of another ward. A `bed_id` must be a bed of a ward the sender sees.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use model::WardId;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::directory::Directory;
use crate::hub::Filter;

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

/// One change of presence: who (the client's id), the ward it belongs to, and the item.
pub type PresenceChange = (u64, Option<WardId>, Value);

/// Everyone present, and a channel that carries each change to every stream client, which
/// keeps only those of the wards it sees ([`sees`]).
pub struct Presence {
    next_id: AtomicU64,
    present: Mutex<HashMap<u64, (Option<WardId>, Value)>>,
    changes: broadcast::Sender<PresenceChange>,
}

/// Whether a stream client with `filter` is shown a presence in `ward`: the same rule as the
/// stream's events (its scope, and the ward it asked for).
pub fn sees(filter: &Filter, ward: Option<&WardId>) -> bool {
    filter.in_scope(ward) && filter.ward.as_ref().is_none_or(|w| ward == Some(w))
}

/// The ward of a bed, by the directory.
fn ward_of_bed(directory: &Directory, bed_id: &str) -> Option<WardId> {
    directory
        .wards
        .iter()
        .find(|ward| {
            ward.rooms
                .iter()
                .any(|room| room.beds.iter().any(|bed| bed.id == bed_id))
        })
        .map(|ward| WardId::new(&ward.id))
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
    /// A new stream client with `filter`: its id, the presence of everyone else it may see
    /// now, and its feed of changes (to be kept only where [`sees`]).
    pub fn join(&self, filter: &Filter) -> (u64, Vec<Value>, broadcast::Receiver<PresenceChange>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let receiver = self.changes.subscribe();
        let present = self
            .present
            .lock()
            .expect("presence lock")
            .values()
            .filter(|(ward, _)| sees(filter, ward.as_ref()))
            .map(|(_, item)| item.clone())
            .collect();
        (id, present, receiver)
    }

    /// Applies a text frame from the client `id`, signed in as `user`, whose stream has
    /// `filter`; `directory` places beds in wards. `Err` says why it was refused, in the
    /// client's terms.
    pub fn update(
        &self,
        id: u64,
        user: &str,
        filter: &Filter,
        directory: &Directory,
        text: &str,
        now_ms: i64,
    ) -> Result<(), String> {
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
        let ward = match message.bed_id.as_deref() {
            Some(bed) => {
                let ward = ward_of_bed(directory, bed);
                if ward.is_none() || !sees(filter, ward.as_ref()) {
                    return Err(format!("`bed_id` {bed:?} is not a bed of your wards"));
                }
                ward
            }
            // Away from a bed: the ward the stream is about, or the sender's only ward.
            None => filter
                .ward
                .clone()
                .or_else(|| match filter.scope.as_deref() {
                    Some([only]) => Some(only.clone()),
                    _ => None,
                }),
        };
        let item = json!({ "id": format!("c{id}"), "name": name, "bed_id": message.bed_id,
                           "position": message.position, "target": message.target, "at": now_ms });
        let previous = self
            .present
            .lock()
            .expect("presence lock")
            .insert(id, (ward.clone(), item.clone()));
        // Moved to a ward some cannot see: those who saw them where they were see them leave.
        if let Some((was, _)) = previous
            && was != ward
        {
            let _ = self
                .changes
                .send((id, was, json!({ "id": format!("c{id}"), "gone": true })));
        }
        // No receiver is not an error: no one else is watching.
        let _ = self.changes.send((id, ward, item));
        Ok(())
    }

    /// A client's connection ended.
    pub fn leave(&self, id: u64) {
        let left = self.present.lock().expect("presence lock").remove(&id);
        if let Some((ward, _)) = left {
            let _ = self
                .changes
                .send((id, ward, json!({ "id": format!("c{id}"), "gone": true })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::directory::{BedView, RoomView, WardView};

    /// Two wards, `w1` with bed `b1` and `w2` with bed `b2`.
    fn directory() -> Directory {
        let ward = |w: &str, b: &str| WardView {
            id: w.into(),
            name: w.into(),
            rooms: vec![RoomView {
                id: format!("r-{w}"),
                name: String::new(),
                x: 0.0,
                z: 0.0,
                width: 4.0,
                depth: 4.0,
                beds: vec![BedView {
                    id: b.into(),
                    label: b.into(),
                    x: 1.0,
                    z: 1.0,
                    rotation: 0.0,
                }],
            }],
        };
        Directory {
            wards: vec![ward("w1", "b1"), ward("w2", "b2")],
            patients: Vec::new(),
        }
    }

    fn scoped(wards: &[&str]) -> Filter {
        Filter {
            scope: Some(wards.iter().map(|w| WardId::new(*w)).collect()),
            ..Filter::default()
        }
    }

    #[test]
    fn others_see_a_join_a_move_and_a_leave_and_bad_messages_say_why() {
        let presence = Presence::default();
        let all = Filter::default();
        let directory = directory();
        let (a, _, mut a_feed) = presence.join(&all);
        let (b, present, _) = presence.join(&all);
        assert!(present.is_empty());
        presence
            .update(
                b,
                "dr-b",
                &all,
                &directory,
                r#"{"type":"presence","bed_id":"b1","position":[1,1.6,2],"target":[0,0.7,0]}"#,
                5,
            )
            .unwrap();
        let (from, ward, item) = a_feed.try_recv().unwrap();
        assert_eq!(from, b);
        assert_eq!(ward, Some(WardId::new("w1")));
        assert_eq!(item["name"], "dr-b");
        assert_eq!(item["bed_id"], "b1");
        let (_, present, _) = presence.join(&all);
        assert_eq!(present.len(), 1);
        presence.leave(b);
        assert_eq!(a_feed.try_recv().unwrap().2["gone"], true);
        for (bad, why) in [
            (r#"{"type":"presence","name":"dr-b"}"#, "signed-in user"),
            (r#"{"type":"presence","name":""}"#, "signed-in user"),
            (r#"{"type":"chat"}"#, "unknown message type"),
            (r#"{"type":"presence","extra":1}"#, "unknown field"),
            (r#"not json"#, "invalid presence message"),
        ] {
            let error = presence
                .update(a, "dr-a", &all, &directory, bad, 6)
                .unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(
            presence
                .update(a, "dr-a", &all, &directory, &"x".repeat(2000), 7)
                .is_err()
        );
        // The own name, given or not, is accepted.
        presence
            .update(
                a,
                "dr-a",
                &all,
                &directory,
                r#"{"type":"presence","name":"dr-a"}"#,
                8,
            )
            .unwrap();
    }

    #[test]
    fn presence_goes_only_to_clients_who_see_its_ward() {
        let presence = Presence::default();
        let directory = directory();
        let (w1, w2, all) = (scoped(&["w1"]), scoped(&["w2"]), Filter::default());
        let (nurse_w1, _, _) = presence.join(&w1);
        // Only at beds of the wards one sees.
        let error = presence
            .update(
                nurse_w1,
                "n1",
                &w1,
                &directory,
                r#"{"type":"presence","bed_id":"b2"}"#,
                1,
            )
            .unwrap_err();
        assert!(error.contains("not a bed of your wards"), "{error}");
        let error = presence
            .update(
                nurse_w1,
                "n1",
                &w1,
                &directory,
                r#"{"type":"presence","bed_id":"nowhere"}"#,
                1,
            )
            .unwrap_err();
        assert!(error.contains("not a bed of your wards"), "{error}");
        presence
            .update(
                nurse_w1,
                "n1",
                &w1,
                &directory,
                r#"{"type":"presence","bed_id":"b1"}"#,
                2,
            )
            .unwrap();
        assert_eq!(presence.join(&w1).1.len(), 1);
        assert_eq!(presence.join(&all).1.len(), 1);
        assert!(presence.join(&w2).1.is_empty(), "another ward's user");
        // Away from a bed, a one-ward user is still in their ward.
        presence
            .update(nurse_w1, "n1", &w1, &directory, r#"{"type":"presence"}"#, 3)
            .unwrap();
        assert!(presence.join(&w2).1.is_empty());
        assert_eq!(presence.join(&w1).1.len(), 1);
        // A user of every ward away from a bed is in no ward: only every-ward users see them.
        let (chief, _, _) = presence.join(&all);
        presence
            .update(
                chief,
                "chief",
                &all,
                &directory,
                r#"{"type":"presence"}"#,
                4,
            )
            .unwrap();
        assert_eq!(
            presence.join(&w1).1.len(),
            1,
            "the chief is not shown in w1"
        );
        assert_eq!(presence.join(&all).1.len(), 2);
        assert!(sees(&all, None) && !sees(&w1, None));
    }
}
