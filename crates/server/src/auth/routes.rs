//! `/api/v1/auth/…` (login, refresh, logout, who am I), `/api/v1/users…` (admins manage users)
//! and `/api/v1/audit` (the trail as FHIR AuditEvents). Passwords are checked on the blocking
//! pool, never while holding a store lock; generated passwords are returned once.

use std::sync::OnceLock;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use model::WardId;
use serde::Deserialize;
use serde_json::{Value, json};
use store::AuditEntry;

use super::middleware::bearer;
use super::{ACCOUNT_FAILURES_TO_LOCK, Caller, LOCKOUT_MS, Peer, Role};
use crate::api::{ApiError, AppState};
use crate::pipeline::now;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}/disable", post(disable_user))
        .route("/users/{name}/enable", post(enable_user))
        .route("/users/{name}/reset-password", post(reset_password))
        .route("/audit", get(audit_events))
        .merge(super::oidc::routes())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    let mut response = ApiError {
        status: StatusCode::UNAUTHORIZED,
        code,
        message: message.to_owned(),
    }
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"metaward\""),
    );
    response
}

/// A hash to check a password against when the user does not exist, so a login for an unknown
/// name takes as long as one for a known name.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| super::hash_password(&super::generate_password()))
}

/// Starts a session for `user` as `role`, in the wards their account names, and returns what
/// the client signs in with: the token pair and who they are (password login, refresh and
/// single sign-on alike).
pub(super) fn start_session(
    state: &AppState,
    user: &store::UserRecord,
    role: Role,
    now_ms: i64,
) -> Value {
    let wards = user
        .wards
        .as_ref()
        .map(|wards| wards.iter().map(WardId::new).collect::<Vec<_>>());
    let pair = state
        .auth
        .sessions
        .start(&user.name, role, wards.clone(), now_ms);
    session_json(pair, &user.name, role, &wards)
}

fn session_json(
    pair: super::TokenPair,
    user: &str,
    role: Role,
    wards: &Option<Vec<WardId>>,
) -> Value {
    json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in_s,
        "user": { "name": user, "role": role.key(), "wards": wards_json(wards) },
    })
}

fn wards_json(wards: &Option<Vec<WardId>>) -> Value {
    wards.as_ref().map_or(json!("*"), |wards| {
        json!(wards.iter().map(ToString::to_string).collect::<Vec<_>>())
    })
}

pub async fn login(
    State(state): State<AppState>,
    Peer(source): Peer,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let now_ms = now().millis();
    let audit = |actor: &str, outcome: &str, action: &str| {
        state.auth.audit.record(AuditEntry {
            time_ms: now_ms,
            // An attempted name that is not a valid user name may be a mistyped password.
            actor: if super::valid_user_name(actor) {
                actor.to_owned()
            } else {
                "invalid-name".to_owned()
            },
            role: None,
            source: source.clone(),
            action: action.to_owned(),
            what: "POST /api/v1/auth/login".to_owned(),
            patient_id: None,
            outcome: outcome.to_owned(),
        })
    };
    // An address that failed too often waits, whatever account it names (`throttle`).
    if let Some(wait_ms) = state.auth.throttle.address_wait_ms(&source, now_ms) {
        audit(&body.username, "throttled", "login_failed");
        let mut response = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "throttled",
            message: "too many failed logins from this address: wait before trying again"
                .to_owned(),
        }
        .into_response();
        let seconds = (wait_ms + 999) / 1000;
        if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let name = body.username.clone();
    let user = match state.stores.read(move |store| store.user(&name)).await {
        Ok(Ok(user)) => user,
        Ok(Err(error)) => return ApiError::from(error).into_response(),
        Err(error) => return error.into_response(),
    };
    // The account a failure counts against, with when its password was set.
    let account = user
        .as_ref()
        .map(|user| (user.name.clone(), user.password_set_at_ms));
    let account = account.as_ref().map(|(name, set)| (name.as_str(), *set));
    let locked = user.as_ref().is_some_and(|user| {
        user.locked_until_ms.is_some_and(|until| until > now_ms)
            || state.auth.throttle.account_locked(
                &user.name,
                &source,
                user.password_set_at_ms,
                now_ms,
            )
    });
    if locked {
        // Still a failure of this address: a guesser keeps counting towards its own wait.
        state.auth.throttle.failed(account, &source, now_ms);
        audit(&body.username, "locked", "login_failed");
        return unauthorized(
            "locked",
            "too many failed logins: the account is locked for a while, or until an admin resets its password",
        );
    }
    let hash = user.as_ref().map_or_else(
        || dummy_hash().to_owned(),
        |user| user.password_hash.clone(),
    );
    let password = body.password;
    let verified = tokio::task::spawn_blocking(move || super::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let exists = user.is_some();
    let Some(user) = user.filter(|_| verified) else {
        state.auth.throttle.failed(account, &source, now_ms);
        if exists {
            let name = body.username.clone();
            let _ = state
                .stores
                .write(move |store| {
                    store.record_failed_login(&name, ACCOUNT_FAILURES_TO_LOCK, now_ms + LOCKOUT_MS)
                })
                .await;
        }
        audit(&body.username, "bad_credentials", "login_failed");
        return unauthorized("bad_credentials", "wrong user name or password");
    };
    if user.disabled {
        audit(&user.name, "disabled", "login_failed");
        return unauthorized("disabled", "this account is disabled");
    }
    let Some(role) = Role::from_key(&user.role) else {
        return ApiError::internal("a stored user has an unknown role").into_response();
    };
    state.auth.throttle.succeeded(&user.name, &source);
    let name = user.name.clone();
    let _ = state
        .stores
        .write(move |store| store.record_successful_login(&name))
        .await;
    let session = start_session(&state, &user, role, now_ms);
    audit(&user.name, "success", "login");
    Json(session).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

/// A new token pair for a refresh token (which then no longer works), if the user may still
/// sign in: the role and wards are read again.
pub async fn refresh(
    State(state): State<AppState>,
    Peer(source): Peer,
    body: Result<Json<Refresh>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let now_ms = now().millis();
    let Some(session) = state
        .auth
        .sessions
        .redeem_refresh(&body.refresh_token, now_ms)
    else {
        return unauthorized(
            "bad_refresh_token",
            "the refresh token is unknown, used or expired: sign in again",
        );
    };
    let name = session.user.clone();
    let user = match state.stores.read(move |store| store.user(&name)).await {
        Ok(Ok(user)) => user,
        Ok(Err(error)) => return ApiError::from(error).into_response(),
        Err(error) => return error.into_response(),
    };
    let Some((user, role)) = user
        .filter(|user| !user.disabled)
        .and_then(|user| Role::from_key(&user.role).map(|role| (user, role)))
    else {
        return unauthorized("disabled", "this account is disabled");
    };
    let session = start_session(&state, &user, role, now_ms);
    state.auth.audit.record(AuditEntry {
        time_ms: now_ms,
        actor: user.name.clone(),
        role: Some(role.key().to_owned()),
        source,
        action: "refresh".into(),
        what: "POST /api/v1/auth/refresh".into(),
        patient_id: None,
        outcome: "success".into(),
    });
    Json(session).into_response()
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> StatusCode {
    if let Some(token) = bearer(&headers) {
        state.auth.sessions.revoke(token);
    }
    StatusCode::NO_CONTENT
}

pub async fn me(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(
        json!({ "name": caller.user, "role": caller.role.key(), "wards": wards_json(&caller.wards) }),
    )
}

pub async fn list_users(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = state.stores.read(|store| store.users()).await??;
    Ok(Json(json!(
        users.iter().map(super::user_json).collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    name: String,
    role: String,
    /// Ward ids, or `"*"` for every ward.
    wards: Value,
    /// Single sign-on: the provider's subject that signs in as this user.
    #[serde(default)]
    oidc_subject: Option<String>,
}

/// Creates a user with a generated password, returned once in the answer.
pub async fn create_user(
    State(state): State<AppState>,
    body: Result<Json<NewUserBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let wards: Option<Vec<String>> = match &body.wards {
        Value::String(all) if all == "*" => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::bad_request("wards: ward ids (strings) or \"*\""))?,
        ),
        _ => return Err(ApiError::bad_request("wards: ward ids (strings) or \"*\"")),
    };
    if body
        .oidc_subject
        .as_ref()
        .is_some_and(|subject| subject.is_empty() || subject.len() > 255)
    {
        return Err(ApiError::bad_request(
            "oidc_subject: the provider's `sub`, 1 to 255 characters",
        ));
    }
    let (name, role, subject) = (body.name.clone(), body.role.clone(), body.oidc_subject);
    let created = state
        .stores
        .write(move |store| {
            if let Some(subject) = &subject
                && let Some(other) = store.user_by_oidc_subject(subject)?
            {
                return Err(super::UserError::Store(store::StoreError::Conflict(
                    format!("the identity is already linked to user `{}`", other.name),
                )));
            }
            let password =
                super::create_user(store, &name, &role, wards.as_deref(), now().millis())?;
            if let Some(subject) = &subject {
                store.set_user_oidc_subject(&name, Some(subject))?;
            }
            Ok(password)
        })
        .await?;
    let password = created.map_err(|error| match error {
        super::UserError::Store(store::StoreError::Conflict(message)) => {
            ApiError::conflict(message)
        }
        super::UserError::Store(error) => ApiError::from(error),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let name = body.name.clone();
    let user = state.stores.read(move |store| store.user(&name)).await??;
    let mut answer = user.as_ref().map(super::user_json).unwrap_or_default();
    answer["password"] = json!(password);
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn set_disabled(
    state: &AppState,
    name: String,
    disabled: bool,
) -> Result<StatusCode, ApiError> {
    let user = name.clone();
    match state
        .stores
        .write(move |store| store.set_user_disabled(&user, disabled))
        .await?
    {
        Ok(()) => {}
        Err(store::StoreError::NotFound { .. }) => return Err(ApiError::not_found("user")),
        Err(error) => return Err(error.into()),
    }
    if disabled {
        state.auth.sessions.revoke_user(&name);
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn disable_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(&state, name, true).await
}

pub async fn enable_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(&state, name, false).await
}

/// A new generated password (returned once); ends the user's sessions and clears a lockout.
pub async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = name.clone();
    let reset = state
        .stores
        .write(move |store| super::reset_password(store, &user, now().millis()))
        .await?;
    let password = match reset {
        Ok(password) => password,
        Err(super::UserError::Store(store::StoreError::NotFound { .. })) => {
            return Err(ApiError::not_found("user"));
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    state.auth.sessions.revoke_user(&name);
    Ok(Json(json!({ "name": name, "password": password })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries after this sequence number.
    after: Option<i64>,
    #[serde(rename = "_count")]
    count: Option<usize>,
}

/// The audit trail as a FHIR Bundle of AuditEvent resources, oldest first.
pub async fn audit_events(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let (after, limit) = (
        query.after.unwrap_or(0),
        query.count.unwrap_or(1000).min(10_000),
    );
    let records = state
        .stores
        .read(move |store| store.audit_entries(after, limit))
        .await??;
    Ok((
        [(header::CONTENT_TYPE, "application/fhir+json")],
        super::audit::audit_bundle(&records).to_string(),
    )
        .into_response())
}
