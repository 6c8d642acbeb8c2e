//! The HTTP edge of single sign-on: `/api/v1/auth/config`, the redirect to the provider, its
//! callback (verify, map to a user, start a session, hand it to the page) and the page's
//! redemption of the one-time code. All public in the access policy (`auth::policy::PUBLIC`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use store::AuditEntry;

use super::super::{Peer, Role};
use super::{
    AccessChange, BINDING_COOKIE, CALLBACK_PATH, CallbackParams, Oidc, PENDING_TTL_MS,
    identity_actor, sign_in_user,
};
use crate::api::{ApiError, AppState};
use crate::pipeline::now;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/config", get(auth_config))
        .route("/auth/oidc/login", get(login))
        .route("/auth/oidc/callback", get(callback))
        .route("/auth/oidc/redeem", post(redeem))
}

/// How the page may sign in: always with a password; with SSO when configured.
pub async fn auth_config(State(state): State<AppState>) -> Json<Value> {
    let sso = state.auth.oidc.as_ref().map(
        |oidc| json!({ "name": oidc.config().display_name, "login": "/api/v1/auth/oidc/login" }),
    );
    Json(json!({ "password": true, "sso": sso }))
}

fn not_configured() -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "sso_not_configured",
        message: "single sign-on is not configured on this server ([auth.oidc])".into(),
    }
    .into_response()
}

/// A redirect that is never cached, optionally setting or clearing the binding cookie.
fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(cookie) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

pub(super) fn binding_cookie(oidc: &Oidc, value: &str, max_age_s: i64) -> String {
    let secure = if oidc.config().redirect_uri.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{BINDING_COOKIE}={value}; Path={}; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}",
        oidc.config().cookie_path()
    )
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// Sends the browser to the provider.
pub async fn login(State(state): State<AppState>) -> Response {
    let Some(oidc) = state.auth.oidc.as_ref() else {
        return not_configured();
    };
    match oidc.begin(now().millis()).await {
        Ok(started) => redirect(
            &started.authorization_url,
            Some(binding_cookie(
                oidc,
                &started.binding,
                PENDING_TTL_MS / 1000,
            )),
        ),
        Err(error) => {
            tracing::warn!(%error, "single sign-on could not start");
            redirect(
                &format!("{}#sso_error={}", oidc.config().page_url(), error.reason()),
                None,
            )
        }
    }
}

/// The provider sends the browser back here: verify, map to a user, start a session, and
/// hand it to the page through a one-time code in the URL fragment.
pub async fn callback(
    State(state): State<AppState>,
    Peer(source): Peer,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some(oidc) = state.auth.oidc.as_ref() else {
        return not_configured();
    };
    let now_ms = now().millis();
    let page = oidc.config().page_url();
    let clear = binding_cookie(oidc, "", 0);
    let audit = |actor: String, role: Option<String>, action: &str, outcome: &str| {
        state.auth.audit.record(AuditEntry {
            time_ms: now_ms,
            actor,
            role,
            source: source.clone(),
            action: action.to_owned(),
            what: format!("GET {CALLBACK_PATH}"),
            patient_id: None,
            outcome: outcome.to_owned(),
        })
    };
    let refuse =
        |reason: &str| redirect(&format!("{page}#sso_error={reason}"), Some(clear.clone()));
    let identity = match oidc
        .finish(&params, cookie(&headers, BINDING_COOKIE), now_ms)
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(%error, "single sign-on refused");
            audit(
                "anonymous".into(),
                None,
                "login_failed",
                &format!("oidc_{}", error.reason()),
            );
            return refuse(error.reason());
        }
    };
    let found = {
        let (identity, config) = (identity.clone(), oidc.config().clone());
        state
            .stores
            .write(move |store| sign_in_user(store, &identity, &config, now_ms))
            .await
    };
    let user = match found {
        Ok(Ok(Ok((user, change)))) => {
            let (verb, group) = match change {
                AccessChange::None => ("", String::new()),
                AccessChange::Created { group } => ("created", group),
                AccessChange::Updated { group } => ("updated", group),
            };
            if !verb.is_empty() {
                state.auth.audit.record(AuditEntry {
                    time_ms: now_ms,
                    actor: user.name.clone(),
                    role: Some(user.role.clone()),
                    source: source.clone(),
                    action: "change".into(),
                    what: format!(
                        "oidc: user {} {verb} with role {} from the provider's group {group}",
                        user.name, user.role
                    ),
                    patient_id: None,
                    outcome: "success".into(),
                });
            }
            user
        }
        Ok(Ok(Err(refusal))) => {
            let reason = refusal.reason();
            audit(
                identity_actor(&identity),
                None,
                "login_failed",
                &format!("oidc_{reason}"),
            );
            return refuse(reason);
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "single sign-on could not set up the user");
            audit(
                identity_actor(&identity),
                None,
                "login_failed",
                "oidc_server_error",
            );
            return refuse("server_error");
        }
        Err(error) => return error.into_response(),
    };
    let Some(role) = Role::from_key(&user.role) else {
        return ApiError::internal("a stored user has an unknown role").into_response();
    };
    let session = super::super::routes::start_session(&state, &user, role, now_ms);
    audit(user.name.clone(), None, "login", "success");
    let code = oidc.hand_off(session, now_ms);
    redirect(&format!("{page}#sso_code={code}"), Some(clear))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    code: String,
}

/// The page trades its one-time code for the session's tokens.
pub async fn redeem(
    State(state): State<AppState>,
    body: Result<Json<Redeem>, JsonRejection>,
) -> Response {
    let Some(oidc) = state.auth.oidc.as_ref() else {
        return not_configured();
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    match oidc.redeem(&body.code, now().millis()) {
        Some(session) => {
            let mut response = Json(session).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "bad_code",
            message: "the sign-in code is unknown, used or expired: sign in again".into(),
        }
        .into_response(),
    }
}
