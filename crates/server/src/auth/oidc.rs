//! Single sign-on through OpenID Connect: the authorization code flow with PKCE (RFC 7636,
//! S256) against a hospital's identity provider, ending in an ordinary metaward session (the
//! same token pair as a password login).
//!
//! The flow: `GET /api/v1/auth/oidc/login` makes a `state`, a `nonce` and a PKCE verifier, keeps
//! them server side (a bounded map, ten minutes), binds them to the browser with an HttpOnly
//! cookie, and redirects to the provider. `GET /api/v1/auth/oidc/callback` takes the pending
//! login by its `state` (once: a replayed state is unknown), checks the cookie and the `iss`
//! the provider names (RFC 9207), exchanges the code at the token endpoint with the verifier,
//! and verifies the ID token: its signature (RS256, PS256 or ES256 with `ring`, the key from the
//! provider's JWKS by `kid`, fetched again once when the `kid` is unknown), `iss`, `aud` (and
//! `azp` with several audiences), `exp` and `iat` with a minute of leeway, and `nonce`. The
//! identity then maps to a metaward user (by the subject an admin linked, or by a configured
//! claim); no mapping, or a disabled user, is refused and audited as a failed login. The page
//! gets its tokens through a one-time code in the URL fragment (never sent to a server, so
//! never in an access log) that it redeems with `POST /api/v1/auth/oidc/redeem`.
//!
//! Must never: log or show the client secret, a code, a token or the verifier; accept an ID
//! token whose signature, issuer, audience, lifetime or nonce does not check; talk plain HTTP to
//! a provider that is not on this machine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use model::WardId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use store::{AuditEntry, Store, StoreError, UserRecord};

use super::{Peer, Role};
use crate::api::{ApiError, AppState};
use crate::pipeline::now;
use crate::sinks::http_client::{self, HttpError, Origin, Trust};

/// The callback's path under the server's root; the redirect URI must end with it.
pub const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";
/// The cookie that ties a pending login to the browser that started it (login CSRF).
const BINDING_COOKIE: &str = "metaward_oidc";
/// How long a started login may take at the provider.
pub const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// At most this many logins in progress; the oldest gives way beyond.
pub const MAX_PENDING: usize = 1024;
/// How long the page has to redeem its one-time code.
pub const HANDOFF_TTL_MS: i64 = 60 * 1000;
/// Clock skew allowed on `exp` and `iat`.
pub const LEEWAY_S: i64 = 60;
/// Discovery is read again after this long (keys rotate on their own: unknown `kid`).
const METADATA_TTL: Duration = Duration::from_secs(60 * 60);
/// After a failed discovery, logins fail at once for this long.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
const HTTP_LIMIT: Duration = Duration::from_secs(15);

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `[auth.oidc]`: the identity provider and how its identities become metaward users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the provider's discovery document and ID tokens name it.
    pub issuer: String,
    pub client_id: String,
    /// For a confidential client (client_secret_basic, or _post when the provider offers only
    /// that); `None`: a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    /// This server's callback as the provider knows it:
    /// `https://metaward.example/api/v1/auth/oidc/callback`.
    pub redirect_uri: String,
    /// Scopes asked for; `openid` is always among them.
    pub scopes: Vec<String>,
    /// The provider's name on the sign-in button.
    pub display_name: String,
    /// Besides a linked subject, also take the user whose name equals this claim
    /// (`preferred_username`, or `email`, which counts only with `email_verified: true`).
    pub username_claim: Option<String>,
    /// Trust for an https provider: this CA file (PEM) instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// The claim holding the identity's groups (a list of names, or one name), for `groups`.
    pub groups_claim: Option<String>,
    /// The provider's groups that decide role and wards, first match wins (list the most
    /// privileged first). Empty: admins decide every user's role and wards.
    pub groups: Vec<GroupRule>,
}

/// `[[auth.oidc.groups]]`: members of `group` sign in with this role and these wards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRule {
    pub group: String,
    pub role: Role,
    /// `None`: every ward.
    pub wards: Option<Vec<String>>,
}

impl OidcConfig {
    pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];

    /// Refuses a configuration that cannot work or is unsafe, with what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.client_id.is_empty() {
            return Err("auth.oidc.client_id is empty".into());
        }
        check_endpoint_url("auth.oidc.issuer", &self.issuer)?;
        let (origin, _) = http_client::split_base_url(&self.redirect_uri)
            .map_err(|error| format!("auth.oidc.redirect_uri: {error}"))?;
        if !self
            .redirect_uri
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .ends_with(CALLBACK_PATH)
        {
            return Err(format!(
                "auth.oidc.redirect_uri must be this server's callback, ending in {CALLBACK_PATH} (as registered at the provider), not `{}`",
                self.redirect_uri
            ));
        }
        if !origin.is_https() && !origin.is_loopback() {
            return Err(format!(
                "auth.oidc.redirect_uri `{}` is plain http beyond loopback: serve metaward over https (tokens would cross the network in the clear)",
                self.redirect_uri
            ));
        }
        if !self.scopes.iter().any(|scope| scope == "openid") {
            return Err("auth.oidc.scopes must include `openid`".into());
        }
        if let Some(claim) = &self.username_claim
            && claim.is_empty()
        {
            return Err("auth.oidc.username_claim is empty".into());
        }
        if !self.groups.is_empty() && self.groups_claim.as_deref().is_none_or(str::is_empty) {
            return Err(
                "auth.oidc.groups needs auth.oidc.groups_claim (the claim that lists the groups, e.g. `groups`)"
                    .into(),
            );
        }
        for rule in &self.groups {
            if rule.group.is_empty() {
                return Err("auth.oidc.groups: a rule without a group".into());
            }
            if rule.wards.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!(
                    "auth.oidc.groups `{}`: at least one ward, or \"*\" for every ward",
                    rule.group
                ));
            }
        }
        Ok(())
    }

    /// The first group rule the identity's groups claim matches.
    pub fn group_rule(&self, identity: &IdClaims) -> Option<&GroupRule> {
        let claim = identity.claims.get(self.groups_claim.as_deref()?)?;
        let groups: Vec<&str> = match claim {
            Value::String(group) => vec![group.as_str()],
            Value::Array(groups) => groups.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        self.groups
            .iter()
            .find(|rule| groups.contains(&rule.group.as_str()))
    }

    /// Where the page is: the redirect URI without the callback path.
    fn page_url(&self) -> String {
        let base = self
            .redirect_uri
            .split(['?', '#'])
            .next()
            .unwrap_or_default();
        format!("{}/", base.strip_suffix(CALLBACK_PATH).unwrap_or(base))
    }

    /// The path the binding cookie is sent on: the SSO routes' directory as the browser sees it
    /// (behind a proxy that serves metaward under a prefix, with that prefix).
    fn cookie_path(&self) -> String {
        let page = self.page_url();
        let path = page
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
            .unwrap_or("/");
        format!("{}/api/v1/auth/oidc", path.trim_end_matches('/'))
    }
}

/// An issuer or endpoint URL must be https, or plain http only on this machine (a test provider).
fn check_endpoint_url(what: &str, url: &str) -> Result<(), String> {
    let (origin, _) =
        http_client::split_base_url(url).map_err(|error| format!("{what}: {error}"))?;
    if !origin.is_https() && !origin.is_loopback() {
        return Err(format!(
            "{what} `{url}` is plain http to another machine: an identity provider is reached over https only (plain http is allowed on loopback, for tests)"
        ));
    }
    Ok(())
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// 256 random bits, URL-safe (43 characters).
fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    b64url(&bytes)
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The PKCE `code_challenge` for a verifier, method S256: BASE64URL(SHA256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(&digest(verifier))
}

// ---------------------------------------------------------------------------------------------
// ID tokens

/// One key of a JWKS (RFC 7517): RSA (`n`, `e`) or EC P-256 (`x`, `y`).
#[derive(Clone, Debug, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub key_use: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a signed JWT")]
    Malformed,
    #[error("the ID token is signed with `{0}`; accepted: RS256, PS256, ES256")]
    UnsupportedAlgorithm(String),
    #[error("no key of the provider fits the ID token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the ID token's signature does not verify")]
    BadSignature,
    #[error("the ID token's issuer is not the configured issuer")]
    WrongIssuer,
    #[error("the ID token is not for this client (aud)")]
    WrongAudience,
    #[error("the ID token was issued to another party (azp)")]
    WrongAuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token is issued in the future (iat)")]
    IssuedInFuture,
    #[error("the ID token's nonce is not this login's")]
    WrongNonce,
    #[error("the ID token names no subject")]
    NoSubject,
}

/// What an ID token must say to be accepted.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// The verified claims of an ID token.
#[derive(Clone, Debug)]
pub struct IdClaims {
    pub sub: String,
    pub claims: Map<String, Value>,
}

impl IdClaims {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Checks a signature over a message with a key.
type Verifier = fn(&Jwk, &[u8], &[u8]) -> bool;

/// Verifies a compact JWS ID token against a key set and the expected issuer, audience and
/// nonce at `now_s` (epoch seconds). OpenID Connect Core 3.1.3.7.
pub fn verify_id_token(
    token: &str,
    keys: &KeySet,
    expected: &Expected,
    now_s: i64,
) -> Result<IdClaims, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed);
    };
    let header: Value = b64url_decode(header_b64)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(IdTokenError::Malformed)?;
    let signature = b64url_decode(signature_b64).ok_or(IdTokenError::Malformed)?;
    let alg = header["alg"].as_str().ok_or(IdTokenError::Malformed)?;
    let kid = header["kid"].as_str();
    let (kty, verify): (&str, Verifier) = match alg {
        "RS256" => ("RSA", |jwk, message, signature| {
            rsa_verify(
                jwk,
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            )
        }),
        "PS256" => ("RSA", |jwk, message, signature| {
            rsa_verify(
                jwk,
                &ring::signature::RSA_PSS_2048_8192_SHA256,
                message,
                signature,
            )
        }),
        "ES256" => ("EC", es256_verify),
        other => return Err(IdTokenError::UnsupportedAlgorithm(other.to_owned())),
    };
    let fits = |jwk: &&Jwk| {
        jwk.kty == kty
            && jwk
                .key_use
                .as_deref()
                .is_none_or(|key_use| key_use == "sig")
            && jwk.alg.as_deref().is_none_or(|key_alg| key_alg == alg)
    };
    let candidates: Vec<&Jwk> = match kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(|jwk| jwk.kid.as_deref() == Some(kid))
            .filter(fits)
            .collect(),
        // Without a kid, only an unambiguous key set will do.
        None => {
            let fitting: Vec<&Jwk> = keys.keys.iter().filter(fits).collect();
            if fitting.len() == 1 {
                fitting
            } else {
                Vec::new()
            }
        }
    };
    let Some(jwk) = candidates.first() else {
        return Err(IdTokenError::UnknownKey(kid.map(str::to_owned)));
    };
    let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    if !verify(jwk, message, &signature) {
        return Err(IdTokenError::BadSignature);
    }
    // Only a verified payload is read.
    let claims: Map<String, Value> = b64url_decode(payload_b64)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(IdTokenError::Malformed)?;
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(IdTokenError::WrongIssuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(IdTokenError::WrongAudience);
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if (audiences.len() > 1 && azp.is_none()) || azp.is_some_and(|azp| azp != expected.client_id) {
        return Err(IdTokenError::WrongAuthorizedParty);
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    if exp.is_none_or(|exp| exp + LEEWAY_S <= now_s) {
        return Err(IdTokenError::Expired);
    }
    let iat = claims.get("iat").and_then(Value::as_i64);
    if iat.is_none_or(|iat| iat > now_s + LEEWAY_S) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err(IdTokenError::WrongNonce);
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| !sub.is_empty())
        .ok_or(IdTokenError::NoSubject)?
        .to_owned();
    Ok(IdClaims { sub, claims })
}

fn rsa_verify(
    jwk: &Jwk,
    params: &'static ring::signature::RsaParameters,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let (Some(n), Some(e)) = (
        jwk.n.as_deref().and_then(b64url_decode),
        jwk.e.as_deref().and_then(b64url_decode),
    ) else {
        return false;
    };
    ring::signature::RsaPublicKeyComponents { n, e }
        .verify(params, message, signature)
        .is_ok()
}

fn es256_verify(jwk: &Jwk, message: &[u8], signature: &[u8]) -> bool {
    if jwk.crv.as_deref() != Some("P-256") {
        return false;
    }
    let (Some(x), Some(y)) = (
        jwk.x.as_deref().and_then(b64url_decode),
        jwk.y.as_deref().and_then(b64url_decode),
    ) else {
        return false;
    };
    if x.len() != 32 || y.len() != 32 {
        return false;
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // JWS ES256 signatures are r‖s, 64 bytes (RFC 7518 3.4): ring's FIXED encoding.
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message, signature)
        .is_ok()
}

// ---------------------------------------------------------------------------------------------
// The provider

/// The parts of the discovery document (OpenID Connect Discovery 1.0 §3) the flow uses.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// Why a sign-in through the provider failed. `reason()` is the short code the audit trail
/// and the page get; `Display` says more, for the server log (never a secret or a token).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider cannot be reached or answered wrongly: {0}")]
    Provider(String),
    #[error("the provider's configuration is unusable: {0}")]
    Discovery(String),
    #[error("unknown, used or expired sign-in state")]
    UnknownState,
    #[error("the sign-in was started in another browser")]
    WrongBrowser,
    #[error("the provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the authorization response names another issuer")]
    WrongIssuer,
    #[error("the token endpoint refused the code: {0}")]
    TokenEndpoint(String),
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
}

impl OidcError {
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Provider(_) => "provider_unreachable",
            OidcError::Discovery(_) => "provider_misconfigured",
            OidcError::UnknownState => "bad_state",
            OidcError::WrongBrowser => "wrong_browser",
            OidcError::Refused(_) => "provider_refused",
            OidcError::WrongIssuer => "wrong_issuer",
            OidcError::TokenEndpoint(_) => "code_refused",
            OidcError::IdToken(_) => "bad_id_token",
        }
    }
}

impl From<HttpError> for OidcError {
    fn from(error: HttpError) -> Self {
        OidcError::Provider(error.to_string())
    }
}

/// A login started at the provider, waiting for its callback.
struct Pending {
    nonce: String,
    verifier: String,
    /// SHA-256 of the browser's binding cookie.
    binding: [u8; 32],
    started_ms: i64,
}

/// A finished login waiting for the page to pick up its tokens.
struct Handoff {
    session: Value,
    expires_ms: i64,
}

/// The provider as this server talks to it: configuration, the cached discovery document and
/// keys, the logins in progress and the sessions being handed to the page.
pub struct Oidc {
    config: OidcConfig,
    trust: Trust,
    metadata: tokio::sync::Mutex<Option<(ProviderMetadata, Instant)>>,
    /// When discovery last failed: for a few seconds, logins fail at once instead of each
    /// waiting on an unreachable provider (the login route is public).
    discovery_failed: Mutex<Option<Instant>>,
    keys: tokio::sync::Mutex<Option<KeySet>>,
    pending: Mutex<HashMap<String, Pending>>,
    handoffs: Mutex<HashMap<[u8; 32], Handoff>>,
}

/// What `begin` hands the browser: where to go, and the cookie that binds the login to it.
#[derive(Debug)]
pub struct Started {
    pub authorization_url: String,
    pub binding: String,
}

/// The callback's query (RFC 6749 4.1.2, RFC 9207 `iss`).
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Oidc, String> {
        config.check()?;
        let trust = Trust::from_option(config.ca_file.as_deref())
            .map_err(|error| format!("auth.oidc.ca_file: {error}"))?;
        Ok(Oidc {
            config,
            trust,
            metadata: Default::default(),
            discovery_failed: Default::default(),
            keys: Default::default(),
            pending: Default::default(),
            handoffs: Default::default(),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    fn origin(&self, url: &str, what: &str) -> Result<(Origin, String), OidcError> {
        check_endpoint_url(what, url).map_err(OidcError::Discovery)?;
        http_client::split_url_with(url, Some(&self.trust))
            .map_err(|error| OidcError::Discovery(format!("{what}: {error}")))
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, OidcError> {
        let (origin, path) = self.origin(url, what)?;
        let answer = http_client::send(
            &origin,
            "GET",
            &path,
            &[("Accept", "application/json")],
            None,
            HTTP_LIMIT,
        )
        .await?;
        if answer.status != 200 {
            return Err(OidcError::Provider(format!(
                "{what} answered {}",
                answer.status
            )));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|error| OidcError::Provider(format!("{what}: not JSON: {error}")))
    }

    /// The discovery document, read again after an hour.
    pub async fn metadata(&self) -> Result<ProviderMetadata, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((metadata, at)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        if self
            .discovery_failed
            .lock()
            .expect("oidc discovery lock")
            .is_some_and(|at| at.elapsed() < DISCOVERY_RETRY)
        {
            return Err(OidcError::Provider(
                "discovery failed moments ago; trying again shortly".into(),
            ));
        }
        let fetched = self.discover().await;
        *self.discovery_failed.lock().expect("oidc discovery lock") =
            fetched.is_err().then(Instant::now);
        let metadata = fetched?;
        *cached = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    async fn discover(&self) -> Result<ProviderMetadata, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let document = self.get_json(&url, "discovery").await?;
        let metadata: ProviderMetadata = serde_json::from_value(document)
            .map_err(|error| OidcError::Discovery(format!("discovery document: {error}")))?;
        // Discovery 4.3: the document must be the configured issuer's own.
        if metadata.issuer != self.config.issuer {
            return Err(OidcError::Discovery(format!(
                "the discovery document names the issuer `{}`, not the configured `{}`",
                metadata.issuer, self.config.issuer
            )));
        }
        for (what, url) in [
            ("authorization_endpoint", &metadata.authorization_endpoint),
            ("token_endpoint", &metadata.token_endpoint),
            ("jwks_uri", &metadata.jwks_uri),
        ] {
            check_endpoint_url(what, url).map_err(OidcError::Discovery)?;
        }
        if let Some(methods) = &metadata.code_challenge_methods_supported
            && !methods.iter().any(|method| method == "S256")
        {
            return Err(OidcError::Discovery(
                "the provider does not offer PKCE with S256".into(),
            ));
        }
        Ok(metadata)
    }

    async fn fetch_keys(&self, metadata: &ProviderMetadata) -> Result<KeySet, OidcError> {
        let document = self.get_json(&metadata.jwks_uri, "jwks_uri").await?;
        serde_json::from_value(document)
            .map_err(|error| OidcError::Provider(format!("jwks: {error}")))
    }

    /// Verifies an ID token with the cached keys; when its `kid` is unknown (the provider
    /// rotated its keys), fetches the key set once more and tries again.
    pub async fn verify(
        &self,
        id_token: &str,
        nonce: &str,
        now_s: i64,
    ) -> Result<IdClaims, OidcError> {
        let metadata = self.metadata().await?;
        let expected = Expected {
            issuer: &self.config.issuer,
            client_id: &self.config.client_id,
            nonce,
        };
        let mut keys = self.keys.lock().await;
        if keys.is_none() {
            *keys = Some(self.fetch_keys(&metadata).await?);
        }
        let first = verify_id_token(id_token, keys.as_ref().expect("just set"), &expected, now_s);
        match first {
            Err(IdTokenError::UnknownKey(kid)) => {
                tracing::info!(
                    ?kid,
                    "unknown oidc signing key: fetching the provider's keys again"
                );
                let fresh = self.fetch_keys(&metadata).await?;
                let again = verify_id_token(id_token, &fresh, &expected, now_s);
                *keys = Some(fresh);
                Ok(again?)
            }
            other => Ok(other?),
        }
    }

    /// Starts a login: the authorization URL to send the browser to, with a fresh `state`,
    /// `nonce` and PKCE challenge, and the binding cookie's value.
    pub async fn begin(&self, now_ms: i64) -> Result<Started, OidcError> {
        let metadata = self.metadata().await?;
        let (state, nonce, verifier, binding) =
            (random_text(), random_text(), random_text(), random_text());
        let challenge = pkce_challenge(&verifier);
        {
            let mut pending = self.pending.lock().expect("oidc pending lock");
            pending.retain(|_, login| login.started_ms + PENDING_TTL_MS > now_ms);
            while pending.len() >= MAX_PENDING {
                let oldest = pending
                    .iter()
                    .min_by_key(|(_, login)| login.started_ms)
                    .map(|(state, _)| state.clone())
                    .expect("not empty");
                pending.remove(&oldest);
            }
            pending.insert(
                state.clone(),
                Pending {
                    nonce: nonce.clone(),
                    verifier,
                    binding: digest(&binding),
                    started_ms: now_ms,
                },
            );
        }
        let scope = self.config.scopes.join(" ");
        let query = http_client::form(&[
            ("response_type", "code"),
            ("client_id", &self.config.client_id),
            ("redirect_uri", &self.config.redirect_uri),
            ("scope", &scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let separator = if metadata.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(Started {
            authorization_url: format!("{}{separator}{query}", metadata.authorization_endpoint),
            binding,
        })
    }

    /// Takes the pending login of a `state` (once) if the same browser started it.
    fn take_pending(
        &self,
        state: &str,
        binding: Option<&str>,
        now_ms: i64,
    ) -> Result<Pending, OidcError> {
        let mut pending = self.pending.lock().expect("oidc pending lock");
        let login = pending.remove(state).ok_or(OidcError::UnknownState)?;
        if login.started_ms + PENDING_TTL_MS <= now_ms {
            return Err(OidcError::UnknownState);
        }
        // Compared as hashes: timing tells nothing about the cookie itself.
        let same_browser = binding.is_some_and(|binding| digest(binding) == login.binding);
        if !same_browser {
            return Err(OidcError::WrongBrowser);
        }
        Ok(login)
    }

    /// Finishes a login from the provider's callback: the verified identity.
    pub async fn finish(
        &self,
        params: &CallbackParams,
        binding: Option<&str>,
        now_ms: i64,
    ) -> Result<IdClaims, OidcError> {
        let state = params.state.as_deref().ok_or(OidcError::UnknownState)?;
        let login = self.take_pending(state, binding, now_ms)?;
        if let Some(iss) = &params.iss
            && *iss != self.config.issuer
        {
            return Err(OidcError::WrongIssuer);
        }
        if let Some(error) = &params.error {
            let description = params.error_description.as_deref().unwrap_or_default();
            return Err(OidcError::Refused(format!("{error}: {description}")));
        }
        let code = params
            .code
            .as_deref()
            .ok_or_else(|| OidcError::Refused("no code in the callback".into()))?;
        let id_token = self.exchange(code, &login.verifier).await?;
        self.verify(&id_token, &login.nonce, now_ms.div_euclid(1000))
            .await
    }

    /// The authorization code and the PKCE verifier for tokens at the token endpoint (RFC 6749
    /// 4.1.3, RFC 7636 4.5): the ID token.
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, OidcError> {
        let metadata = self.metadata().await?;
        let (origin, path) = self.origin(&metadata.token_endpoint, "token_endpoint")?;
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut authorization = None;
        match &self.config.client_secret {
            Some(secret) => {
                let methods = metadata.token_endpoint_auth_methods_supported.as_deref();
                // The default when the provider says nothing is client_secret_basic.
                let basic = methods.is_none_or(|methods| {
                    methods.iter().any(|method| method == "client_secret_basic")
                });
                if basic {
                    // RFC 6749 2.3.1: each part form-encoded before base64.
                    let credentials = format!(
                        "{}:{}",
                        http_client::form_encode(&self.config.client_id),
                        http_client::form_encode(&secret.0)
                    );
                    authorization = Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(credentials)
                    ));
                } else {
                    pairs.push(("client_id", &self.config.client_id));
                    pairs.push(("client_secret", &secret.0));
                }
            }
            None => pairs.push(("client_id", &self.config.client_id)),
        }
        let body = http_client::form(&pairs);
        let mut headers = vec![
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ];
        if let Some(authorization) = &authorization {
            headers.push(("Authorization", authorization));
        }
        let answer = http_client::send(
            &origin,
            "POST",
            &path,
            &headers,
            Some(body.as_bytes()),
            HTTP_LIMIT,
        )
        .await?;
        let document: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if answer.status != 200 {
            let error = document["error"].as_str().unwrap_or("no error code");
            return Err(OidcError::TokenEndpoint(format!(
                "{} {error}",
                answer.status
            )));
        }
        document["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OidcError::TokenEndpoint("no id_token in the answer".into()))
    }

    /// Keeps a session for the page to pick up once with the returned code (one minute).
    pub fn hand_off(&self, session: Value, now_ms: i64) -> String {
        let code = random_text();
        let mut handoffs = self.handoffs.lock().expect("oidc handoff lock");
        handoffs.retain(|_, handoff| handoff.expires_ms > now_ms);
        handoffs.insert(
            digest(&code),
            Handoff {
                session,
                expires_ms: now_ms + HANDOFF_TTL_MS,
            },
        );
        code
    }

    /// The session a hand-off code stands for (once).
    pub fn redeem(&self, code: &str, now_ms: i64) -> Option<Value> {
        let mut handoffs = self.handoffs.lock().expect("oidc handoff lock");
        let handoff = handoffs.remove(&digest(code))?;
        (handoff.expires_ms > now_ms).then_some(handoff.session)
    }
}

// ---------------------------------------------------------------------------------------------
// Who an identity is

/// Why an identity did not become a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No user is linked to the identity (nor named by the configured claim), and no group
    /// rule matches.
    Unlinked,
    /// The user named by the claim is linked to another identity.
    LinkedElsewhere,
    Disabled,
    /// The user's role came from the provider's groups, and the identity is in none of the
    /// configured groups any more.
    NoGroup,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unlinked => "unlinked",
            Refusal::LinkedElsewhere => "linked_elsewhere",
            Refusal::Disabled => "disabled",
            Refusal::NoGroup => "no_group",
        }
    }
}

/// What signing in changed about the user, for the audit trail.
#[derive(Debug, PartialEq, Eq)]
pub enum AccessChange {
    None,
    /// Created from a group rule, linked to the identity.
    Created {
        group: String,
    },
    /// Role or wards set from a group rule.
    Updated {
        group: String,
    },
}

/// The user an identity signs in as (linked to it from then on when found by the username
/// claim), with the provider's groups applied when configured: a
/// matching group rule sets the role and wards of the user found (or creates and links one,
/// named by the username claim when that name is free, else `sso-…`); a user whose access came
/// from groups is refused once the identity is in none of them; otherwise as [`find_user`].
/// Runs on the writer connection; CPU-bound when it creates a user (hashing a password nobody
/// is shown: such users sign in through the provider only).
pub fn sign_in_user(
    store: &mut Store,
    identity: &IdClaims,
    config: &OidcConfig,
    now_ms: i64,
) -> Result<Result<(UserRecord, AccessChange), Refusal>, super::UserError> {
    let rule = config.group_rule(identity).cloned();
    let found = find_user(store, identity, config.username_claim.as_deref())?;
    let (user, change) = match (found, rule) {
        (Ok(user), Some(rule)) => {
            let same = user.oidc_managed
                && user.role == rule.role.key()
                && sorted(user.wards.as_ref()) == sorted(rule.wards.as_ref());
            if same {
                (user, AccessChange::None)
            } else {
                store.set_user_access(&user.name, rule.role.key(), rule.wards.as_deref(), true)?;
                let user = store.user(&user.name)?.ok_or(StoreError::NotFound {
                    what: "user",
                    id: user.name.clone(),
                })?;
                (user, AccessChange::Updated { group: rule.group })
            }
        }
        (Ok(user), None) if user.oidc_managed && !config.groups.is_empty() => {
            return Ok(Err(Refusal::NoGroup));
        }
        (Ok(user), None) => (user, AccessChange::None),
        (Err(Refusal::Unlinked), Some(rule)) => {
            let name = provisioned_name(store, identity, config.username_claim.as_deref())?;
            super::create_user(store, &name, rule.role.key(), rule.wards.as_deref(), now_ms)?;
            store.set_user_oidc_subject(&name, Some(&identity.sub))?;
            store.set_user_access(&name, rule.role.key(), rule.wards.as_deref(), true)?;
            let user = store.user(&name)?.ok_or(StoreError::NotFound {
                what: "user",
                id: name.clone(),
            })?;
            (user, AccessChange::Created { group: rule.group })
        }
        (Err(refusal), _) => return Ok(Err(refusal)),
    };
    // Found by the username claim: linked now, so that the name alone never maps another
    // identity to this user later (a reassigned user name at the provider).
    if user.oidc_subject.is_none() {
        store.set_user_oidc_subject(&user.name, Some(&identity.sub))?;
        let linked = store.user(&user.name)?.ok_or(StoreError::NotFound {
            what: "user",
            id: user.name.clone(),
        })?;
        return Ok(Ok((linked, change)));
    }
    Ok(Ok((user, change)))
}

/// Wards as a set, to compare (`None`: every ward).
fn sorted(wards: Option<&Vec<String>>) -> Option<Vec<String>> {
    wards.map(|wards| {
        let mut wards = wards.clone();
        wards.sort();
        wards.dedup();
        wards
    })
}

/// A free user name for an identity: its username claim's value, else `sso-` and its subject
/// (or, when the subject is not a valid name, a hash of it).
fn provisioned_name(
    store: &Store,
    identity: &IdClaims,
    username_claim: Option<&str>,
) -> Result<String, StoreError> {
    if let Some(name) = username_claim.and_then(|claim| claimed_name(identity, claim))
        && store.user(name)?.is_none()
    {
        return Ok(name.to_owned());
    }
    let plain = format!("sso-{}", identity.sub);
    if super::valid_user_name(&plain) && store.user(&plain)?.is_none() {
        return Ok(plain);
    }
    let hash: String = digest(&identity.sub)[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(format!("sso-{hash}"))
}

/// The metaward user an identity maps to: the user whose linked subject it is; else, when a
/// username claim is configured, the user of that name (unless linked to another subject).
pub fn find_user(
    store: &Store,
    identity: &IdClaims,
    username_claim: Option<&str>,
) -> Result<Result<UserRecord, Refusal>, StoreError> {
    let user = match store.user_by_oidc_subject(&identity.sub)? {
        Some(user) => Some(user),
        None => match username_claim.and_then(|claim| claimed_name(identity, claim)) {
            Some(name) => match store.user(name)? {
                Some(user)
                    if user
                        .oidc_subject
                        .as_ref()
                        .is_some_and(|sub| *sub != identity.sub) =>
                {
                    return Ok(Err(Refusal::LinkedElsewhere));
                }
                found => found,
            },
            None => None,
        },
    };
    Ok(match user {
        None => Err(Refusal::Unlinked),
        Some(user) if user.disabled => Err(Refusal::Disabled),
        Some(user) => Ok(user),
    })
}

/// The user name a claim gives; an email only when the provider verified it.
fn claimed_name<'a>(identity: &'a IdClaims, claim: &str) -> Option<&'a str> {
    if claim == "email" && identity.claims.get("email_verified") != Some(&Value::Bool(true)) {
        return None;
    }
    identity
        .text(claim)
        .filter(|name| super::valid_user_name(name))
}

/// How an identity appears in the audit trail when it maps to no user.
fn identity_actor(identity: &IdClaims) -> String {
    let sub: String = identity
        .sub
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    format!("oidc:{sub}")
}

// ---------------------------------------------------------------------------------------------
// Routes

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

fn binding_cookie(oidc: &Oidc, value: &str, max_age_s: i64) -> String {
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
    let wards = user
        .wards
        .as_ref()
        .map(|wards| wards.iter().map(WardId::new).collect::<Vec<_>>());
    let pair = state
        .auth
        .sessions
        .start(&user.name, role, wards.clone(), now_ms);
    audit(user.name.clone(), None, "login", "success");
    let code = oidc.hand_off(
        super::routes::session_json(pair, &user.name, role, &wards),
        now_ms,
    );
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

#[cfg(test)]
mod tests;
