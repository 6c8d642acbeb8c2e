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

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Role;
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
/// Discovery and the key set are read again after this long (and the keys at an unknown `kid`).
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
    /// Ask the provider to authenticate the person again at every sign-in (`prompt=login`,
    /// `max_age=0`) and check that it did (`auth_time`): for shared ward workstations, where
    /// the provider's session may still be the previous user's.
    pub force_login: bool,
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

mod id_token;
mod routes;
mod users;

pub use id_token::{Expected, IdClaims, IdTokenError, Jwk, KeySet, verify_id_token};
#[cfg(test)]
use routes::binding_cookie;
pub use routes::{auth_config, callback, login, redeem, routes};
use users::identity_actor;
pub use users::{AccessChange, Refusal, find_user, sign_in_user};

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
    /// The provider's keys and when they were fetched.
    keys: tokio::sync::Mutex<Option<(KeySet, Instant)>>,
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
        // Also read again after an hour: a key the provider withdrew (compromised) stops
        // verifying even if no new kid ever comes.
        if keys
            .as_ref()
            .is_none_or(|(_, fetched)| fetched.elapsed() >= METADATA_TTL)
        {
            *keys = Some((self.fetch_keys(&metadata).await?, Instant::now()));
        }
        let (current, _) = keys.as_ref().expect("just set");
        let first = verify_id_token(id_token, current, &expected, now_s);
        match first {
            Err(IdTokenError::UnknownKey(kid)) => {
                tracing::info!(
                    ?kid,
                    "unknown oidc signing key: fetching the provider's keys again"
                );
                let fresh = self.fetch_keys(&metadata).await?;
                let again = verify_id_token(id_token, &fresh, &expected, now_s);
                *keys = Some((fresh, Instant::now()));
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
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", &self.config.client_id),
            ("redirect_uri", &self.config.redirect_uri),
            ("scope", &scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        if self.config.force_login {
            pairs.extend([("prompt", "login"), ("max_age", "0")]);
        }
        let query = http_client::form(&pairs);
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
        let identity = self
            .verify(&id_token, &login.nonce, now_ms.div_euclid(1000))
            .await?;
        // With max_age the ID token must say when the person authenticated (Core 3.1.2.1):
        // not before this sign-in started.
        if self.config.force_login {
            let auth_time = identity.claims.get("auth_time").and_then(Value::as_i64);
            if auth_time.is_none_or(|at| at + LEEWAY_S < login.started_ms.div_euclid(1000)) {
                return Err(OidcError::IdToken(IdTokenError::NotReauthenticated));
            }
        }
        Ok(identity)
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

#[cfg(test)]
mod tests;
