//! `GET /api/v1/stream`: the live WebSocket stream (docs/stream.md). A snapshot first, then
//! whatever the subscriber's queue holds each time it is woken: so a slow client gets fewer,
//! fuller messages with the latest values, never a growing backlog.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use clinical::alarms::{Alarm, AlarmEvent, Presence};
use clinical::{News2Result, ParameterOutcome};
use model::{Catalog, MetricKind};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use twin::{Attribution, DeviceHealth, PatientStatus, TwinEvent, ValueState};

use super::AppState;
use crate::hub::{Filter, Pending};
use crate::pipeline::now;
use crate::ward::Snapshot;

#[derive(Deserialize)]
pub struct StreamQuery {
    ward: Option<String>,
    patient: Option<String>,
}

/// The metrics source of presence messages from stream clients.
const PRESENCE_SOURCE: &str = "stream_presence";

pub async fn stream(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Query(query): Query<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let filter = Filter {
        ward: query.ward.map(model::WardId::new),
        patient: query.patient.map(model::PatientId::new),
        // The user's wards bound what the stream carries, whatever the query asks.
        scope: caller.wards,
    };
    // Presence shows the signed-in user's name, never one the client picks.
    let user = caller.user;
    upgrade.on_upgrade(move |socket| serve(state, filter, user, socket))
}

async fn serve(state: AppState, filter: Filter, user: String, mut socket: WebSocket) {
    let (snapshot, subscriber) = state.ward.subscribe(filter.clone());
    state.metrics.stream_clients.inc();
    let first = snapshot_message(state.ward.catalog, &snapshot);
    if socket
        .send(Message::Text(first.to_string().into()))
        .await
        .is_ok()
    {
        state
            .ward
            .alarms_delivered(&undelivered_alarms(snapshot.alarms.iter()), now());
        let (presence_id, present, mut presence_feed) = state.presence.join(&filter);
        if !present.is_empty()
            && send(&mut socket, json!({ "type": "presence", "items": present }))
                .await
                .is_err()
        {
            state.metrics.stream_clients.dec();
            return;
        }
        loop {
            tokio::select! {
                pending = subscriber.next() => {
                    state.metrics.stream_values_coalesced.inc_by(pending.coalesced_values);
                    state.metrics.stream_waveforms_dropped.inc_by(pending.skipped_waveforms);
                    let undelivered = undelivered_alarms(pending.alarms.iter().map(|e| &e.alarm));
                    if send_pending(&mut socket, pending).await.is_err() {
                        break;
                    }
                    state.ward.alarms_delivered(&undelivered, now());
                }
                change = presence_feed.recv() => match change {
                    Ok((from, ward, item)) if from != presence_id && super::presence::sees(&filter, ward.as_ref()) => {
                        if send(&mut socket, json!({ "type": "presence", "items": [item] })).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    // Missed moves are replaced by the next one; a closed channel never happens
                    // while the state lives.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    // Pings are answered by axum; a text frame is the client's presence.
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Text(text))) => {
                        state.metrics.received(PRESENCE_SOURCE);
                        let directory = state.ward.directory();
                        let updated = state.presence.update(presence_id, &user, &filter, &directory, text.as_str(), now().millis());
                        if updated.is_ok() {
                            state.metrics.accepted(PRESENCE_SOURCE, 0, 0);
                        }
                        if let Err(why) = updated {
                            state.metrics.rejected(PRESENCE_SOURCE, "invalid_presence");
                            if send(&mut socket, json!({ "type": "error", "message": why })).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
        state.presence.leave(presence_id);
    }
    state.metrics.stream_clients.dec();
}

/// Active alarms no client has been sent yet: sending them to this one delivers them (ACM).
fn undelivered_alarms<'a>(alarms: impl Iterator<Item = &'a Alarm>) -> Vec<u64> {
    alarms
        .filter(|alarm| alarm.is_active() && alarm.delivered_at.is_none())
        .map(|alarm| alarm.id)
        .collect()
}

async fn send_pending(socket: &mut WebSocket, pending: Pending) -> Result<(), axum::Error> {
    if !pending.values.is_empty() {
        let items: Vec<Value> = pending
            .values
            .iter()
            .map(|(a, v)| value_json(a, v))
            .collect();
        send(socket, json!({ "type": "values", "items": items })).await?;
    }
    if !pending.devices.is_empty() {
        let items: Vec<Value> = pending.devices.iter().map(device_health_json).collect();
        send(socket, json!({ "type": "devices", "items": items })).await?;
    }
    if !pending.statuses.is_empty() {
        let items: Vec<Value> = pending.statuses.iter().map(status_json).collect();
        send(socket, json!({ "type": "status", "items": items })).await?;
    }
    for event in &pending.waveforms {
        if let TwinEvent::Waveform {
            attribution,
            metric,
            start,
            sample_rate_hz,
            samples,
            region,
        } = event
        {
            let message = json!({
                "type": "waveform",
                "patient_id": attribution.patient.as_ref().map(ToString::to_string),
                "bed_id": attribution.bed.as_ref().map(ToString::to_string),
                "metric": metric,
                "start": start.millis(),
                "rate_hz": sample_rate_hz,
                "samples": samples,
                "region": region.map(|r| r.to_string()),
            });
            send(socket, message).await?;
        }
    }
    if !pending.scores.is_empty() {
        let items: Vec<Value> = pending
            .scores
            .iter()
            .map(|(p, r)| news2_json(p, r))
            .collect();
        send(socket, json!({ "type": "scores", "items": items })).await?;
    }
    if !pending.alarms.is_empty() {
        let items: Vec<Value> = pending.alarms.iter().map(alarm_event_json).collect();
        send(socket, json!({ "type": "alarms", "items": items })).await?;
    }
    if !pending.patients.is_empty() {
        let items: Vec<Value> = pending
            .patients
            .iter()
            .map(|(patient, view)| match view {
                Some(view) => json!(view),
                None => json!({ "id": patient.to_string(), "gone": true }),
            })
            .collect();
        send(socket, json!({ "type": "patient", "items": items })).await?;
    }
    if !pending.notes.is_empty() {
        send(socket, json!({ "type": "notes", "items": pending.notes })).await?;
    }
    if pending.skipped_waveforms > 0 {
        send(
            socket,
            json!({ "type": "lagged", "skipped_waveform_chunks": pending.skipped_waveforms }),
        )
        .await?;
    }
    Ok(())
}

async fn send(socket: &mut WebSocket, message: Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_string().into())).await
}

/// A device's technical state, as the stream and REST serve it (docs/stream.md).
pub fn device_health_json(health: &DeviceHealth) -> Value {
    json!({
        "device_id": health.device_id.to_string(),
        "source": health.source,
        "online": health.online,
        "first_seen": health.first_seen.millis(),
        "last_seen": health.last_seen.millis(),
        "messages_total": health.messages_total,
        "messages_per_minute": (health.messages_per_minute * 10.0).round() / 10.0,
        "battery": health.battery.map(|(level, _)| level),
        "battery_time": health.battery.map(|(_, at)| at.millis()),
        "signal": {
            "values_last_minute": health.values_recent,
            "device_flagged_last_minute": health.device_flagged_recent,
            "implausible_last_minute": health.implausible_recent,
        },
    })
}

pub fn value_json(attribution: &Attribution, value: &ValueState) -> Value {
    let unit = Catalog::embedded()
        .by_key(&value.metric)
        .map(|m| m.ucum.as_str());
    json!({
        "patient_id": attribution.patient.as_ref().map(ToString::to_string),
        "room_id": attribution.room.as_ref().map(ToString::to_string),
        "bed_id": attribution.bed.as_ref().map(ToString::to_string),
        "device_id": value.device_id.to_string(),
        "metric": value.metric,
        "value": value.value,
        "unit": unit,
        "time": value.device_time.millis(),
        "received": value.received_time.millis(),
        "region": value.region.map(|r| r.to_string()),
        "artefact": value.artefact,
    })
}

pub fn status_json(status: &PatientStatus) -> Value {
    json!({
        "patient_id": status.patient.to_string(),
        "deviation": status.deviation,
        "worst_metric": status.worst_metric,
    })
}

pub fn metrics_json(catalog: &Catalog) -> Vec<Value> {
    catalog
        .metrics()
        .iter()
        .map(|metric| {
            json!({
                "key": metric.key,
                "display": metric.display,
                "unit": metric.ucum,
                "decimals": metric.decimals,
                "kind": match metric.kind { MetricKind::Numeric => "numeric", MetricKind::Waveform => "waveform" },
                "region": metric.region,
                "normal": metric.normal.map(|n| [n.low, n.high]),
                "mdc_code": metric.mdc_code,
                "loinc": metric.loinc,
            })
        })
        .collect()
}

fn snapshot_message(catalog: &Catalog, snapshot: &Snapshot) -> Value {
    let bed_of = |patient: &model::PatientId| {
        snapshot
            .directory
            .patients
            .iter()
            .find(|p| p.id == patient.as_str())
            .and_then(|p| p.bed_id.clone())
            .map(model::BedId::new)
    };
    let mut values = Vec::new();
    for (patient, states) in &snapshot.patient_values {
        let attribution = Attribution {
            patient: Some(patient.clone()),
            bed: bed_of(patient),
            room: None,
        };
        values.extend(states.iter().map(|v| value_json(&attribution, v)));
    }
    for (room, states) in &snapshot.room_values {
        let attribution = Attribution {
            room: Some(room.clone()),
            ..Attribution::default()
        };
        values.extend(states.iter().map(|v| value_json(&attribution, v)));
    }
    json!({
        "type": "snapshot",
        "server_time": now().millis(),
        "wards": snapshot.directory.wards,
        "patients": snapshot.directory.patients,
        "metrics": metrics_json(catalog),
        "values": values,
        "status": snapshot.statuses.iter().map(status_json).collect::<Vec<_>>(),
        "alarms": snapshot.alarms.iter().map(alarm_json).collect::<Vec<_>>(),
        "scores": snapshot.scores.iter().map(|(p, r)| news2_json(p, r)).collect::<Vec<_>>(),
    })
}

/// A NEWS2 result with its breakdown, as the stream and REST serve it (docs/news2.md).
pub fn news2_json(patient: &model::PatientId, result: &News2Result) -> Value {
    let parameters: Vec<Value> = result
        .parameters
        .iter()
        .map(|p| {
            let mut json = json!({
                "parameter": p.parameter.key(),
                "sub_score": p.outcome.sub_score(),
                "status": p.outcome.reason_key().unwrap_or("scored"),
            });
            match &p.outcome {
                ParameterOutcome::Scored {
                    value,
                    charted,
                    time,
                    metric,
                    ..
                } => {
                    json["value"] = json!(value);
                    json["charted"] = json!(charted);
                    json["metric"] = json!(metric);
                    json["time"] = json!(time.millis());
                }
                ParameterOutcome::Stale {
                    time,
                    age_millis,
                    window_millis,
                } => {
                    json["time"] = json!(time.millis());
                    json["age_ms"] = json!(age_millis);
                    json["window_ms"] = json!(window_millis);
                }
                ParameterOutcome::ArtefactOnly { time } => json["time"] = json!(time.millis()),
                ParameterOutcome::Invalid { value, time }
                | ParameterOutcome::NeedsAirOrOxygen { value, time } => {
                    json["value"] = json!(value);
                    json["time"] = json!(time.millis());
                }
                ParameterOutcome::Missing => {}
            }
            json
        })
        .collect();
    json!({
        "patient_id": patient.to_string(),
        "score": "news2",
        "at": result.at.millis(),
        "total": result.total,
        "complete": result.complete,
        "band": result.band.key(),
        "clinical_risk": result.band.clinical_risk(),
        "response": result.band.response(),
        "scale": result.scale.number(),
        "scale_reason": result.scale_reason.describe(),
        "scale_reason_detail": scale_reason_json(&result.scale_reason),
        "parameters": parameters,
    })
}

/// Why the SpO2 scale was chosen, as data a client words in its own language (`scale_reason`
/// is the English sentence): `kind` (`target_prescribed`, `other_target_prescribed`,
/// `hypercapnic_diagnosis`, `no_scale2_indication`), with the target `[low, high]` percent or
/// the diagnosis' `system`, `code` and `display`.
fn scale_reason_json(reason: &clinical::news2::ScaleReason) -> Value {
    use clinical::news2::ScaleReason;
    match reason {
        ScaleReason::TargetPrescribed(target) => json!({
            "kind": "target_prescribed",
            "target": [target.low_percent, target.high_percent],
        }),
        ScaleReason::OtherTargetPrescribed(target) => json!({
            "kind": "other_target_prescribed",
            "target": [target.low_percent, target.high_percent],
        }),
        ScaleReason::HypercapnicDiagnosis {
            system,
            code,
            display,
        } => json!({
            "kind": "hypercapnic_diagnosis",
            "system": system,
            "code": code,
            "display": display,
        }),
        ScaleReason::NoScale2Indication => json!({ "kind": "no_scale2_indication" }),
    }
}

/// An alarm as the stream and REST serve it (docs/stream.md).
pub fn alarm_json(alarm: &Alarm) -> Value {
    let (subject_kind, subject_id) = alarm.subject.parts();
    let (kind, condition, side) = alarm.condition.parts();
    json!({
        "id": alarm.id,
        "subject": { "kind": subject_kind, "id": subject_id },
        "kind": kind,
        "condition": condition,
        "side": side.map(|s| s.key()),
        "priority": alarm.priority.key(),
        "state": alarm.state(),
        "latched": alarm.latched,
        "message": alarm.message,
        "value": alarm.value,
        "limit": alarm.limit,
        "raised_at": alarm.raised_at.millis(),
        "condition_present": matches!(alarm.presence, Presence::Present),
        "cleared_at": match alarm.presence { Presence::Cleared(at) => Some(at.millis()), Presence::Present => None },
        "delivered_at": alarm.delivered_at.map(|t| t.millis()),
        "acknowledged_by": alarm.acknowledged.as_ref().map(|(by, _)| by),
        "acknowledged_at": alarm.acknowledged.as_ref().map(|(_, at)| at.millis()),
        "escalations": alarm.escalations,
        "silenced": alarm.silenced.as_ref().map(|s| json!({ "by": s.by, "reason": s.reason, "until": s.until.millis() })),
        "resolved_at": alarm.resolved_at.map(|t| t.millis()),
    })
}

pub fn alarm_event_json(event: &AlarmEvent) -> Value {
    json!({
        "at": event.at.millis(),
        "transition": event.transition.key(),
        "by": event.by,
        "alarm": alarm_json(&event.alarm),
    })
}
