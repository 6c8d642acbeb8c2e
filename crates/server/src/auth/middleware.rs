//! The one gate every HTTP request passes, applied to the whole router (`api::router`): it looks
//! the route up in the access policy, authenticates the bearer token, checks the role and the
//! ward scope, puts the [`Caller`] in the request for the handlers that filter lists, and writes
//! the access to the audit trail with its outcome.
//!
//! Bearer tokens: a session's access token (`mwa_`), a service token (`mws_`, acting as its
//! user) or a device token (`mwd_`, which passes only to device Observation posts: see
//! [`device_gate`]). The audit trail names the caller: the user, `token:<name> for <user>`, or
//! `device:<id>`.
//!
//! Refusals: 401 without a valid session (with `WWW-Authenticate: Bearer`), 403 for a role or a
//! ward the caller does not have; under `/fhir` as an OperationOutcome.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use model::{DeviceId, PatientId, RoomId, WardId};
use serde_json::json;
use store::AuditEntry;

use super::policy::{self, Access, Decision, Scope};
use super::tokens::{self, DeviceCaller, TokenCaller};
use super::{Caller, Role, source_of};
use crate::api::AppState;
use crate::pipeline::now;

/// The token of `Authorization: Bearer …`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Browsers cannot set headers on a WebSocket: the stream also takes `?access_token=`.
fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "access_token").then(|| value.to_owned())
    })
}

pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let decision = policy::decide(request.method(), &path);
    let Access::Authenticated(rule) = decision.access else {
        return next.run(request).await;
    };
    let method = request.method().as_str().to_owned();
    let source = source_of(request.extensions());
    let fhir = path.starts_with("/fhir");
    let token = match bearer(request.headers()) {
        Some(token) => Some(token.to_owned()),
        None if decision.template == "/api/v1/stream" => query_token(request.uri().query()),
        None => None,
    };
    let what = format!("{method} {}", decision.template);
    let now_ms = now().millis();
    let authenticated = match token {
        // API tokens are looked up in the store at every request: a rotation or revocation
        // (over REST or `metaward token` beside the running server) holds at the next one.
        Some(token) if tokens::is_api_token(&token) => {
            match state
                .stores
                .read(move |store| tokens::authenticate(store, &token, now_ms))
                .await
            {
                Ok(Ok(found)) => found.map(Authenticated::Token),
                Ok(Err(error)) => {
                    tracing::error!(%error, "could not look an api token up");
                    return unavailable(fhir);
                }
                Err(_) => return unavailable(fhir),
            }
        }
        Some(token) => state
            .auth
            .sessions
            .check(&token, now_ms)
            .map(Authenticated::Session),
        None => None,
    };
    let Some(authenticated) = authenticated else {
        let refused = AuditEntry {
            time_ms: now_ms,
            actor: "anonymous".into(),
            role: None,
            source,
            action: action(&method, &decision),
            what,
            patient_id: None,
            outcome: "401".into(),
        };
        state.auth.audit.record_durably(refused).await;
        return refuse(
            StatusCode::UNAUTHORIZED,
            fhir,
            "sign in: this needs a bearer token from POST /api/v1/auth/login",
        );
    };
    let (caller, actor, device) = match authenticated {
        Authenticated::Session(session) => {
            let actor = session.user.clone();
            let caller = Caller {
                user: session.user,
                role: session.role,
                wards: session.wards,
                source,
            };
            (caller, actor, None)
        }
        Authenticated::Token(token) => {
            let actor = token.actor();
            match token {
                TokenCaller::Service {
                    user, role, wards, ..
                } => (
                    Caller {
                        user,
                        role,
                        wards,
                        source,
                    },
                    actor,
                    None,
                ),
                // A device is nobody's user: the lowest role and no ward, should anything
                // behind the device gate look at the caller.
                TokenCaller::Device { device, .. } => (
                    Caller {
                        user: actor.clone(),
                        role: Role::Observer,
                        wards: Some(Vec::new()),
                        source,
                    },
                    actor,
                    Some(device),
                ),
            }
        }
    };
    // A device has no role of a person's: the trail says `device`.
    let audit_role = if device.is_some() {
        "device"
    } else {
        caller.role.key()
    };
    let entry = |patient_id: Option<String>, outcome: String| AuditEntry {
        time_ms: now_ms,
        actor: actor.clone(),
        role: Some(audit_role.to_owned()),
        source: caller.source.clone(),
        action: action(&method, &decision),
        what: what.clone(),
        patient_id,
        outcome,
    };
    if let Some(device) = device {
        return device_gate(&state, request, next, caller.clone(), device, &path, entry).await;
    }
    if caller.role < rule.role {
        state
            .auth
            .audit
            .record_durably(entry(None, "403".into()))
            .await;
        return refuse(
            StatusCode::FORBIDDEN,
            fhir,
            &format!("this needs the role {} or above", rule.role.key()),
        );
    }
    let (allowed, patient_id) = in_scope(&state, &caller, rule.scope, &decision, &path).await;
    if !allowed {
        state
            .auth
            .audit
            .record_durably(entry(patient_id, "403".into()))
            .await;
        return refuse(
            StatusCode::FORBIDDEN,
            fhir,
            "not in your wards (or not there at all)",
        );
    }
    let audited = !(rule.scope == Scope::Unscoped && method == "GET");
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if audited {
        // The answer waits for its audit entry. A read that cannot be recorded is not served
        // (fail closed); a change has happened already, so its answer goes out regardless.
        let stored = state
            .auth
            .audit
            .record_durably(entry(patient_id, outcome_of(&response)))
            .await;
        if !stored && method == "GET" {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                fhir,
                "the audit trail cannot be written, so patient data is not served",
            );
        }
    }
    response
}

enum Authenticated {
    Session(super::Session),
    Token(TokenCaller),
}

/// `success`, or the status of a refusal with its reason when the handler gave one
/// ([`RefusalReason`]).
fn outcome_of(response: &Response) -> String {
    let status = response.status();
    if status.is_success() || status.is_informational() {
        return "success".to_owned();
    }
    match response.extensions().get::<RefusalReason>() {
        Some(RefusalReason(reason)) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The short reason a handler refused a request for (its metrics label), for the audit trail.
#[derive(Clone, Copy, Debug)]
pub struct RefusalReason(pub &'static str);

/// A device token may post device Observations to `/fhir` (one, or a Bundle of them) and do
/// nothing else; which device they may name is checked where the reference is resolved
/// (`sources::fhir_rest`), with the [`DeviceCaller`] this puts in the request. Anything else is
/// refused as device input is: 403 OperationOutcome, counted, kept as a dead letter, audited.
async fn device_gate(
    state: &AppState,
    mut request: Request,
    next: Next,
    caller: Caller,
    device: DeviceId,
    path: &str,
    entry: impl Fn(Option<String>, String) -> AuditEntry,
) -> Response {
    let posts_observations = request.method() == Method::POST
        && matches!(path, "/fhir" | "/fhir/" | "/fhir/Observation");
    if !posts_observations {
        let origin = path.to_owned();
        let body = std::mem::take(request.body_mut());
        let raw = axum::body::to_bytes(body, crate::sources::fhir_rest::BODY_LIMIT_BYTES)
            .await
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        let issue = crate::sources::fhir_rest::observation::device_scope_issue(&format!(
            "a device token may only post its own device Observations to /fhir (POST /fhir/Observation or a Bundle of them); {} {path} is not allowed for device {device}",
            request.method()
        ));
        state
            .auth
            .audit
            .record_durably(entry(None, format!("403 {}", issue.reason)))
            .await;
        return crate::sources::fhir_rest::observation::refuse_device(state, &origin, raw, &issue)
            .await;
    }
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(DeviceCaller(device));
    let response = next.run(request).await;
    state
        .auth
        .audit
        .record_durably(entry(None, outcome_of(&response)))
        .await;
    response
}

fn unavailable(fhir: bool) -> Response {
    let message = "the credential could not be checked; retry";
    if fhir {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            json!({ "resourceType": "OperationOutcome",
                    "issue": [{ "severity": "error", "code": "transient", "diagnostics": message }] })
            .to_string(),
        )
            .into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": { "code": "unavailable", "message": message } })),
    )
        .into_response()
}

fn action(method: &str, decision: &Decision) -> String {
    let template = decision.template;
    if template.ends_with("/acknowledge") {
        "acknowledge"
    } else if template.ends_with("/silence") {
        "silence"
    } else if template == "/api/v1/auth/logout" {
        "logout"
    } else if method == "GET" || template == "/fhir/{read}" || template == "/api/v1/sql" {
        "read"
    } else {
        "change"
    }
    .to_owned()
}

/// Whether the route's ward scope lets the caller through, and the patient it concerns (for
/// the audit trail).
async fn in_scope(
    state: &AppState,
    caller: &Caller,
    scope: Scope,
    decision: &Decision,
    path: &str,
) -> (bool, Option<String>) {
    let param = |name| policy::path_param(decision.template, path, name);
    match scope {
        Scope::Unscoped | Scope::Filtered => (true, None),
        Scope::AllWards => (caller.sees_all_wards(), None),
        Scope::Patient => {
            let patient = param("patient_id").unwrap_or_default();
            let ward = state
                .ward
                .directory()
                .ward_of_patient()
                .get(&PatientId::new(patient))
                .cloned();
            (caller.sees(ward.as_ref()), Some(patient.to_owned()))
        }
        Scope::Room => {
            let room = param("room_id").unwrap_or_default();
            let ward = state
                .ward
                .directory()
                .ward_of_room()
                .get(&RoomId::new(room))
                .cloned();
            (caller.sees(ward.as_ref()), None)
        }
        Scope::Alarm => {
            if caller.sees_all_wards() {
                return (true, None);
            }
            let Some(id) = param("alarm_id").and_then(|id| id.parse::<u64>().ok()) else {
                return (false, None);
            };
            let alarm = state.stores.read(move |store| store.alarm(id)).await;
            let Ok(Ok(Some(alarm))) = alarm else {
                return (false, None);
            };
            let (ward, patient): (Option<WardId>, Option<PatientId>) =
                state.ward.alarm_scope(&alarm.subject);
            (
                caller.sees(ward.as_ref()),
                patient.map(|patient| patient.to_string()),
            )
        }
    }
}

fn refuse(status: StatusCode, fhir: bool, message: &str) -> Response {
    let mut response = if fhir {
        let code = if status == StatusCode::UNAUTHORIZED {
            "login"
        } else {
            "forbidden"
        };
        (
            status,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            json!({ "resourceType": "OperationOutcome",
                    "issue": [{ "severity": "error", "code": code, "diagnostics": message }] })
            .to_string(),
        )
            .into_response()
    } else {
        let code = if status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "forbidden"
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    };
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"metaward\""),
        );
    }
    response
}
