//! ID-token verification with real signatures (an RSA test key, fresh P-256 keys from ring),
//! PKCE against RFC 7636's test vector, the pending-login state, the hand-off code, the mapping
//! of identities to users, and the key set fetched again over a real loopback HTTP server when
//! a `kid` is unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use store::Store;

use super::*;

const RSA_TEST_KEY: &str = include_str!("../testdata/oidc-test-rsa-key.pem");
const ISSUER: &str = "https://idp.hospital.example";
const CLIENT: &str = "metaward";
const NOW: i64 = 1_800_000_000;

fn rsa_key() -> RsaKeyPair {
    let body: String = RSA_TEST_KEY
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    RsaKeyPair::from_pkcs8(&der).unwrap()
}

fn rsa_jwk(key: &RsaKeyPair, kid: &str) -> Value {
    let components: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
    json!({ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64url(&components.n), "e": b64url(&components.e) })
}

fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap()
}

fn ec_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    json!({ "kty": "EC", "kid": kid, "crv": "P-256",
            "x": b64url(&point[1..33]), "y": b64url(&point[33..65]) })
}

enum Signer<'a> {
    Rsa(
        &'a RsaKeyPair,
        &'static dyn signature::RsaEncoding,
        &'static str,
    ),
    Ec(&'a EcdsaKeyPair),
}

fn sign(signer: &Signer, kid: Option<&str>, claims: &Value) -> String {
    let alg = match signer {
        Signer::Rsa(_, _, alg) => *alg,
        Signer::Ec(_) => "ES256",
    };
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let rng = SystemRandom::new();
    let signature = match signer {
        Signer::Rsa(key, encoding, _) => {
            let mut out = vec![0; key.public().modulus_len()];
            key.sign(*encoding, &rng, input.as_bytes(), &mut out)
                .unwrap();
            out
        }
        Signer::Ec(key) => key.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
    };
    format!("{input}.{}", b64url(&signature))
}

fn claims() -> Value {
    json!({ "iss": ISSUER, "sub": "248289761001", "aud": CLIENT, "nonce": "n-0S6_WzA2Mj",
            "exp": NOW + 300, "iat": NOW - 5, "preferred_username": "ann" })
}

fn expected() -> Expected<'static> {
    Expected {
        issuer: ISSUER,
        client_id: CLIENT,
        nonce: "n-0S6_WzA2Mj",
    }
}

fn key_set(keys: Vec<Value>) -> KeySet {
    serde_json::from_value(json!({ "keys": keys })).unwrap()
}

fn rs256(key: &RsaKeyPair) -> Signer<'_> {
    Signer::Rsa(key, &signature::RSA_PKCS1_SHA256, "RS256")
}

#[test]
fn pkce_s256_matches_rfc_7636_appendix_b() {
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    // Our verifiers: 256 random bits, 43 unreserved characters (RFC 7636 4.1: 43 to 128).
    let verifier = random_text();
    assert_eq!(verifier.len(), 43);
    assert!(
        verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_ne!(verifier, random_text());
}

#[test]
fn good_tokens_verify_with_rs256_ps256_and_es256() {
    let rsa = rsa_key();
    let ec = ec_key();
    let mut ps_jwk = rsa_jwk(&rsa, "ps");
    ps_jwk["alg"] = json!("PS256");
    let keys = key_set(vec![rsa_jwk(&rsa, "rs"), ps_jwk, ec_jwk(&ec, "ec")]);
    let token = sign(&rs256(&rsa), Some("rs"), &claims());
    let verified = verify_id_token(&token, &keys, &expected(), NOW).unwrap();
    assert_eq!(verified.sub, "248289761001");
    assert_eq!(verified.text("preferred_username"), Some("ann"));
    let token = sign(
        &Signer::Rsa(&rsa, &signature::RSA_PSS_SHA256, "PS256"),
        Some("ps"),
        &claims(),
    );
    assert!(verify_id_token(&token, &keys, &expected(), NOW).is_ok());
    let token = sign(&Signer::Ec(&ec), Some("ec"), &claims());
    assert!(verify_id_token(&token, &keys, &expected(), NOW).is_ok());
    // Without a kid, a single fitting key is taken.
    let token = sign(&Signer::Ec(&ec), None, &claims());
    assert!(verify_id_token(&token, &keys, &expected(), NOW).is_ok());
    // An audience list that names us, with azp us.
    let mut several = claims();
    several["aud"] = json!([CLIENT, "other-api"]);
    several["azp"] = json!(CLIENT);
    let token = sign(&rs256(&rsa), Some("rs"), &several);
    assert!(verify_id_token(&token, &keys, &expected(), NOW).is_ok());
}

#[test]
fn bad_tokens_are_refused_each_for_its_reason() {
    let rsa = rsa_key();
    let ec = ec_key();
    let keys = key_set(vec![rsa_jwk(&rsa, "rs"), ec_jwk(&ec, "ec")]);
    let check = |token: &str| verify_id_token(token, &keys, &expected(), NOW).unwrap_err();

    // Bad signature: a changed payload, and another key under a known kid.
    let token = sign(&rs256(&rsa), Some("rs"), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut changed = claims();
    changed["sub"] = json!("someone-else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url(changed.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(check(&forged), IdTokenError::BadSignature);
    let impostor = ec_key();
    assert_eq!(
        check(&sign(&Signer::Ec(&impostor), Some("ec"), &claims())),
        IdTokenError::BadSignature
    );
    // An RSA signature presented as made with the EC key's kid: no fitting key.
    assert_eq!(
        check(&sign(&rs256(&rsa), Some("ec"), &claims())),
        IdTokenError::UnknownKey(Some("ec".into()))
    );

    let with = |name: &str, value: Value| {
        let mut claims = claims();
        claims[name] = value;
        sign(&rs256(&rsa), Some("rs"), &claims)
    };
    assert_eq!(
        check(&with("iss", json!("https://evil.example"))),
        IdTokenError::WrongIssuer
    );
    assert_eq!(
        check(&with("aud", json!("another-client"))),
        IdTokenError::WrongAudience
    );
    assert_eq!(
        check(&with("aud", json!([CLIENT, "other"]))),
        IdTokenError::WrongAuthorizedParty,
        "several audiences need azp"
    );
    assert_eq!(
        check(&with("azp", json!("other"))),
        IdTokenError::WrongAuthorizedParty
    );
    assert_eq!(
        check(&with("exp", json!(NOW - LEEWAY_S - 1))),
        IdTokenError::Expired
    );
    // Within the leeway: accepted.
    assert!(verify_id_token(&with("exp", json!(NOW - 10)), &keys, &expected(), NOW).is_ok());
    assert_eq!(
        check(&with("iat", json!(NOW + LEEWAY_S + 10))),
        IdTokenError::IssuedInFuture
    );
    assert_eq!(
        check(&with("nonce", json!("another-login"))),
        IdTokenError::WrongNonce
    );
    let mut no_nonce = claims();
    no_nonce.as_object_mut().unwrap().remove("nonce");
    assert_eq!(
        check(&sign(&rs256(&rsa), Some("rs"), &no_nonce)),
        IdTokenError::WrongNonce
    );
    assert_eq!(check(&with("sub", json!(""))), IdTokenError::NoSubject);

    // alg none and HMAC are never accepted, whatever the token says.
    let unsigned = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none"}"#),
        b64url(claims().to_string().as_bytes())
    );
    assert_eq!(
        check(&unsigned),
        IdTokenError::UnsupportedAlgorithm("none".into())
    );
    let hmac = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"HS256","kid":"rs"}"#),
        b64url(claims().to_string().as_bytes()),
        b64url(b"whatever")
    );
    assert_eq!(
        check(&hmac),
        IdTokenError::UnsupportedAlgorithm("HS256".into())
    );
    assert_eq!(check("not.a-token"), IdTokenError::Malformed);
}

/// A token request as received: the Authorization header and the form body.
type TokenRequest = (Option<String>, String);

/// A provider's discovery document and key set on a real loopback HTTP server, counting key
/// set fetches; the key set can be replaced (rotation).
struct TestProvider {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    /// What the token endpoint answers next.
    token_answer: Arc<Mutex<(StatusCode, Value)>>,
    /// The token requests received: the Authorization header and the form body.
    token_requests: Arc<Mutex<Vec<TokenRequest>>>,
}

async fn test_provider(keys: Vec<Value>) -> TestProvider {
    test_provider_with(keys, None).await
}

async fn test_provider_with(keys: Vec<Value>, auth_methods: Option<Vec<&str>>) -> TestProvider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let jwks = Arc::new(Mutex::new(json!({ "keys": keys })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth?prompt=login"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
    });
    let token_answer = Arc::new(Mutex::new((StatusCode::OK, json!({}))));
    let token_requests = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/token",
            post({
                let (answer, requests) = (token_answer.clone(), token_requests.clone());
                move |headers: HeaderMap, body: String| {
                    let authorization = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    requests.lock().unwrap().push((authorization, body));
                    let (status, body) = answer.lock().unwrap().clone();
                    async move { (status, Json(body)) }
                }
            }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let discovery = discovery.clone();
                async move { Json(discovery) }
            }),
        )
        .route(
            "/jwks",
            get({
                let (jwks, fetches) = (jwks.clone(), fetches.clone());
                move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = jwks.lock().unwrap().clone();
                    async move { Json(body) }
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestProvider {
        issuer,
        jwks,
        fetches,
        token_answer,
        token_requests,
    }
}

fn config_for(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT.to_owned(),
        client_secret: None,
        redirect_uri: format!("http://127.0.0.1:8080{CALLBACK_PATH}"),
        scopes: OidcConfig::DEFAULT_SCOPES.map(str::to_owned).to_vec(),
        display_name: "Hospital SSO".into(),
        username_claim: None,
        ca_file: None,
        groups_claim: None,
        groups: Vec::new(),
        force_login: false,
    }
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_key_set_again() {
    let rsa = rsa_key();
    let provider = test_provider(vec![rsa_jwk(&rsa, "old")]).await;
    let oidc = Oidc::new(config_for(&provider.issuer)).unwrap();
    let mut claims = claims();
    claims["iss"] = json!(provider.issuer);
    let nonce = "n-0S6_WzA2Mj";

    let token = sign(&rs256(&rsa), Some("old"), &claims);
    oidc.verify(&token, nonce, NOW).await.unwrap();
    oidc.verify(&token, nonce, NOW).await.unwrap();
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        1,
        "keys are cached"
    );

    // The provider rotates to a new key: the unknown kid makes one more fetch, then it verifies.
    let ec = ec_key();
    *provider.jwks.lock().unwrap() = json!({ "keys": [ec_jwk(&ec, "new")] });
    let token = sign(&Signer::Ec(&ec), Some("new"), &claims);
    let verified = oidc.verify(&token, nonce, NOW).await.unwrap();
    assert_eq!(verified.sub, "248289761001");
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    // A kid the provider does not have either: refused after one fetch, not more.
    let stranger = ec_key();
    let token = sign(&Signer::Ec(&stranger), Some("stranger"), &claims);
    let refused = oidc.verify(&token, nonce, NOW).await.unwrap_err();
    assert!(
        matches!(refused, OidcError::IdToken(IdTokenError::UnknownKey(_))),
        "{refused}"
    );
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 3);
}

fn query_value(url: &str, name: &str) -> String {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in {url}"))
        .to_owned()
}

#[tokio::test]
async fn the_state_works_once_in_the_browser_that_started_it() {
    let provider = test_provider(vec![]).await;
    let oidc = Oidc::new(config_for(&provider.issuer)).unwrap();
    let started = oidc.begin(1_000).await.unwrap();
    let url = &started.authorization_url;
    assert!(
        url.starts_with(&format!(
            "{}/auth?prompt=login&response_type=code&",
            provider.issuer
        )),
        "{url}"
    );
    assert_eq!(query_value(url, "code_challenge_method"), "S256");
    assert_eq!(query_value(url, "scope"), "openid%20profile%20email");
    assert_eq!(query_value(url, "client_id"), CLIENT);
    let state = query_value(url, "state");
    let challenge = query_value(url, "code_challenge");
    assert_ne!(state, query_value(url, "nonce"));

    // A state this server never issued.
    let forged = CallbackParams {
        state: Some("forged".into()),
        code: Some("c".into()),
        ..CallbackParams::default()
    };
    let error = oidc
        .finish(&forged, Some(&started.binding), 2_000)
        .await
        .unwrap_err();
    assert!(matches!(error, OidcError::UnknownState), "{error}");
    // The right state from another browser (no cookie, or another one): refused, and used up.
    assert!(matches!(
        oidc.take_pending(&state, Some("another-browser"), 2_000),
        Err(OidcError::WrongBrowser)
    ));
    assert!(matches!(
        oidc.take_pending(&state, Some(&started.binding), 2_000),
        Err(OidcError::UnknownState)
    ));
    // A fresh login: its verifier is the challenge's; it works once; a replay is unknown.
    let started = oidc.begin(3_000).await.unwrap();
    let state = query_value(&started.authorization_url, "state");
    let challenge2 = query_value(&started.authorization_url, "code_challenge");
    assert_ne!(challenge, challenge2);
    let login = oidc
        .take_pending(&state, Some(&started.binding), 4_000)
        .unwrap();
    assert_eq!(pkce_challenge(&login.verifier), challenge2);
    assert!(matches!(
        oidc.take_pending(&state, Some(&started.binding), 4_000),
        Err(OidcError::UnknownState)
    ));
    // Too late: expired.
    let started = oidc.begin(5_000).await.unwrap();
    let state = query_value(&started.authorization_url, "state");
    assert!(matches!(
        oidc.take_pending(&state, Some(&started.binding), 5_000 + PENDING_TTL_MS),
        Err(OidcError::UnknownState)
    ));
    // Bounded: the oldest pending logins give way.
    for at in 0..(MAX_PENDING as i64 + 10) {
        oidc.begin(10_000 + at).await.unwrap();
    }
    assert_eq!(oidc.pending.lock().unwrap().len(), MAX_PENDING);
    // The provider's own error comes through as a refusal, after the state checks.
    let started = oidc.begin(20_000).await.unwrap();
    let denied = CallbackParams {
        state: Some(query_value(&started.authorization_url, "state")),
        error: Some("access_denied".into()),
        ..CallbackParams::default()
    };
    let error = oidc
        .finish(&denied, Some(&started.binding), 20_001)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "provider_refused");
    // A callback that names another issuer (RFC 9207 mix-up).
    let started = oidc.begin(30_000).await.unwrap();
    let mixed = CallbackParams {
        state: Some(query_value(&started.authorization_url, "state")),
        code: Some("c".into()),
        iss: Some("https://evil.example".into()),
        ..CallbackParams::default()
    };
    let error = oidc
        .finish(&mixed, Some(&started.binding), 30_001)
        .await
        .unwrap_err();
    assert!(matches!(error, OidcError::WrongIssuer), "{error}");
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let provider = test_provider(vec![]).await;
    // The same server under another name (localhost instead of 127.0.0.1).
    let other_name = provider.issuer.replace("127.0.0.1", "localhost");
    let oidc = Oidc::new(config_for(&other_name)).unwrap();
    let error = oidc.begin(0).await.unwrap_err();
    assert!(matches!(error, OidcError::Discovery(_)), "{error}");
    // Right after a failure, logins fail at once rather than each waiting on the provider.
    let error = oidc.begin(0).await.unwrap_err();
    assert!(error.to_string().contains("moments ago"), "{error}");
}

#[test]
fn the_configuration_is_checked() {
    let good = config_for("https://idp.hospital.example/realms/ward");
    assert_eq!(good.check(), Ok(()));
    assert_eq!(good.page_url(), "http://127.0.0.1:8080/");
    assert_eq!(good.cookie_path(), "/api/v1/auth/oidc");
    let mut plain = good.clone();
    plain.issuer = "http://idp.hospital.example".into();
    assert!(plain.check().unwrap_err().contains("plain http"));
    let mut loopback = good.clone();
    loopback.issuer = "http://localhost:9000".into();
    assert_eq!(loopback.check(), Ok(()));
    let mut elsewhere = good.clone();
    elsewhere.redirect_uri = "https://metaward.example/somewhere".into();
    assert!(elsewhere.check().unwrap_err().contains(CALLBACK_PATH));
    let mut proxied = good.clone();
    proxied.redirect_uri = format!("https://h.example/metaward{CALLBACK_PATH}");
    assert_eq!(proxied.check(), Ok(()));
    assert_eq!(proxied.page_url(), "https://h.example/metaward/");
    assert_eq!(proxied.cookie_path(), "/metaward/api/v1/auth/oidc");
    let mut clear = good.clone();
    clear.redirect_uri = format!("http://metaward.example{CALLBACK_PATH}");
    assert!(clear.check().is_err());
    let mut no_openid = good.clone();
    no_openid.scopes = vec!["email".into()];
    assert!(no_openid.check().is_err());
    let mut secret = good;
    secret.client_secret = Some(Secret("s3cr3t-value".into()));
    assert!(
        !format!("{secret:?}").contains("s3cr3t"),
        "the secret never shows"
    );
}

#[test]
fn a_handoff_code_works_once_and_briefly() {
    let oidc = Oidc::new(config_for("http://127.0.0.1:1")).unwrap();
    let code = oidc.hand_off(json!({ "access_token": "mwa_x" }), 0);
    assert_eq!(oidc.redeem("guess", 1), None);
    assert_eq!(
        oidc.redeem(&code, 1),
        Some(json!({ "access_token": "mwa_x" }))
    );
    assert_eq!(oidc.redeem(&code, 2), None, "once");
    let code = oidc.hand_off(json!({}), 0);
    assert_eq!(oidc.redeem(&code, HANDOFF_TTL_MS), None, "expired");
}

#[test]
fn identities_map_to_linked_users_only() {
    let mut store = Store::open_in_memory().unwrap();
    for (name, disabled) in [("ann", false), ("bob", false), ("cy", true)] {
        store
            .create_user(&store::NewUser {
                name,
                role: "nurse",
                wards: None,
                password_hash: "h",
                at_ms: 1,
            })
            .unwrap();
        store.set_user_disabled(name, disabled).unwrap();
    }
    store.set_user_oidc_subject("ann", Some("sub-ann")).unwrap();
    store.set_user_oidc_subject("cy", Some("sub-cy")).unwrap();
    let identity = |sub: &str, extra: Value| {
        let mut claims = extra.as_object().cloned().unwrap_or_default();
        claims.insert("sub".into(), json!(sub));
        IdClaims {
            sub: sub.to_owned(),
            claims,
        }
    };
    let found = |id: &IdClaims, claim: Option<&str>| find_user(&store, id, claim).unwrap();
    assert_eq!(
        found(&identity("sub-ann", json!({})), None).unwrap().name,
        "ann"
    );
    assert_eq!(
        found(
            &identity("sub-x", json!({ "preferred_username": "bob" })),
            None
        )
        .unwrap_err(),
        Refusal::Unlinked,
        "no claim mapping configured"
    );
    assert_eq!(
        found(
            &identity("sub-x", json!({ "preferred_username": "bob" })),
            Some("preferred_username")
        )
        .unwrap()
        .name,
        "bob"
    );
    assert_eq!(
        found(
            &identity("sub-x", json!({ "preferred_username": "ann" })),
            Some("preferred_username")
        )
        .unwrap_err(),
        Refusal::LinkedElsewhere,
        "ann is linked to another identity"
    );
    assert_eq!(
        found(&identity("sub-x", json!({ "email": "bob" })), Some("email")).unwrap_err(),
        Refusal::Unlinked,
        "an unverified email maps to nobody"
    );
    assert_eq!(
        found(
            &identity("sub-x", json!({ "email": "bob", "email_verified": true })),
            Some("email")
        )
        .unwrap()
        .name,
        "bob"
    );
    assert_eq!(
        found(&identity("sub-cy", json!({})), None).unwrap_err(),
        Refusal::Disabled
    );
    assert_eq!(
        found(&identity("sub-nobody", json!({})), None).unwrap_err(),
        Refusal::Unlinked
    );
}

fn form_value(form: &str, name: &str) -> Option<String> {
    form.split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .map(str::to_owned)
}

/// The whole `finish` against a loopback token endpoint, for each way of authenticating the
/// client: the token request carries the code, the redirect URI and the PKCE verifier of this
/// login, and the ID token it answers is verified.
#[tokio::test]
async fn the_code_is_exchanged_with_the_verifier_and_the_client_credentials() {
    let rsa = rsa_key();
    let basic_default = test_provider_with(vec![rsa_jwk(&rsa, "k")], None).await;
    let post_only =
        test_provider_with(vec![rsa_jwk(&rsa, "k")], Some(vec!["client_secret_post"])).await;
    let public = test_provider_with(vec![rsa_jwk(&rsa, "k")], None).await;
    for (provider, secret, mode) in [
        (&basic_default, Some("s3cret:/+"), "basic"),
        (&post_only, Some("s3cret:/+"), "post"),
        (&public, None, "public"),
    ] {
        let mut config = config_for(&provider.issuer);
        config.client_secret = secret.map(|secret| Secret(secret.into()));
        let oidc = Oidc::new(config).unwrap();
        let started = oidc.begin(NOW * 1000).await.unwrap();
        let url = &started.authorization_url;
        let (state, nonce, challenge) = (
            query_value(url, "state"),
            query_value(url, "nonce"),
            query_value(url, "code_challenge"),
        );
        let mut claims = claims();
        claims["iss"] = json!(provider.issuer);
        claims["nonce"] = json!(nonce);
        *provider.token_answer.lock().unwrap() = (
            StatusCode::OK,
            json!({ "access_token": "at", "token_type": "Bearer",
                    "id_token": sign(&rs256(&rsa), Some("k"), &claims) }),
        );
        let params = CallbackParams {
            code: Some("the-code".into()),
            state: Some(state),
            iss: Some(provider.issuer.clone()),
            ..CallbackParams::default()
        };
        let identity = oidc
            .finish(&params, Some(&started.binding), NOW * 1000 + 1)
            .await
            .unwrap_or_else(|error| panic!("{mode}: {error}"));
        assert_eq!(identity.sub, "248289761001", "{mode}");

        let (authorization, form) = provider.token_requests.lock().unwrap().pop().unwrap();
        assert_eq!(
            form_value(&form, "grant_type").as_deref(),
            Some("authorization_code")
        );
        assert_eq!(form_value(&form, "code").as_deref(), Some("the-code"));
        assert_eq!(
            form_value(&form, "redirect_uri").as_deref(),
            Some("http%3A%2F%2F127.0.0.1%3A8080%2Fapi%2Fv1%2Fauth%2Foidc%2Fcallback")
        );
        let verifier = form_value(&form, "code_verifier").unwrap();
        assert_eq!(pkce_challenge(&verifier), challenge, "{mode}: PKCE");
        match mode {
            "basic" => {
                // RFC 6749 2.3.1: form-encoded, then base64.
                let expected =
                    base64::engine::general_purpose::STANDARD.encode("metaward:s3cret%3A%2F%2B");
                assert_eq!(authorization, Some(format!("Basic {expected}")));
                assert_eq!(form_value(&form, "client_secret"), None);
            }
            "post" => {
                assert_eq!(authorization, None);
                assert_eq!(form_value(&form, "client_id").as_deref(), Some("metaward"));
                assert_eq!(
                    form_value(&form, "client_secret").as_deref(),
                    Some("s3cret%3A%2F%2B")
                );
            }
            _ => {
                assert_eq!(authorization, None);
                assert_eq!(form_value(&form, "client_id").as_deref(), Some("metaward"));
                assert_eq!(form_value(&form, "client_secret"), None);
            }
        }
    }

    // The token endpoint refuses the code: refused with its error code.
    let oidc = Oidc::new(config_for(&public.issuer)).unwrap();
    let started = oidc.begin(NOW * 1000).await.unwrap();
    *public.token_answer.lock().unwrap() =
        (StatusCode::BAD_REQUEST, json!({ "error": "invalid_grant" }));
    let params = CallbackParams {
        code: Some("stale".into()),
        state: Some(query_value(&started.authorization_url, "state")),
        ..CallbackParams::default()
    };
    let error = oidc
        .finish(&params, Some(&started.binding), NOW * 1000 + 1)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "code_refused");
    assert!(error.to_string().contains("invalid_grant"), "{error}");
    // An ID token for another login's nonce (a token injected from elsewhere): refused.
    let started = oidc.begin(NOW * 1000).await.unwrap();
    let mut claims = claims();
    claims["iss"] = json!(public.issuer);
    *public.token_answer.lock().unwrap() = (
        StatusCode::OK,
        json!({ "id_token": sign(&rs256(&rsa), Some("k"), &claims) }),
    );
    let params = CallbackParams {
        code: Some("c".into()),
        state: Some(query_value(&started.authorization_url, "state")),
        ..CallbackParams::default()
    };
    let error = oidc
        .finish(&params, Some(&started.binding), NOW * 1000 + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(error, OidcError::IdToken(IdTokenError::WrongNonce)),
        "{error}"
    );
}

#[test]
fn the_providers_groups_decide_role_and_wards_when_configured() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .create_user(&store::NewUser {
            name: "ann",
            role: "observer",
            wards: None,
            password_hash: "h",
            at_ms: 1,
        })
        .unwrap();
    store.set_user_oidc_subject("ann", Some("sub-ann")).unwrap();
    store
        .create_user(&store::NewUser {
            name: "dan",
            role: "nurse",
            wards: Some(&["w9".to_owned()]),
            password_hash: "h",
            at_ms: 1,
        })
        .unwrap();
    store.set_user_oidc_subject("dan", Some("sub-dan")).unwrap();
    let mut config = config_for("https://idp.example");
    config.username_claim = Some("preferred_username".into());
    config.groups_claim = Some("groups".into());
    config.groups = vec![
        GroupRule {
            group: "icu-doctors".into(),
            role: Role::Physician,
            wards: Some(vec!["icu".into(), "w2".into()]),
        },
        GroupRule {
            group: "nurses".into(),
            role: Role::Nurse,
            wards: Some(vec!["w1".into()]),
        },
    ];
    assert_eq!(config.check(), Ok(()));
    let identity = |sub: &str, extra: Value| {
        let mut claims = extra.as_object().cloned().unwrap_or_default();
        claims.insert("sub".into(), json!(sub));
        IdClaims {
            sub: sub.to_owned(),
            claims,
        }
    };
    let mut sign_in = |id: &IdClaims| sign_in_user(&mut store, id, &config, 5).unwrap();

    // A new identity in a group: a user named by the claim, linked, with the first rule's access.
    let carol = identity(
        "sub-carol",
        json!({ "preferred_username": "carol", "groups": ["staff", "nurses", "icu-doctors"] }),
    );
    let (user, change) = sign_in(&carol).unwrap();
    assert_eq!(
        change,
        AccessChange::Created {
            group: "icu-doctors".into()
        }
    );
    assert_eq!(
        (user.name.as_str(), user.role.as_str(), user.wards.clone()),
        (
            "carol",
            "physician",
            Some(vec!["icu".to_owned(), "w2".to_owned()])
        )
    );
    assert!(user.oidc_managed);
    assert_eq!(user.oidc_subject.as_deref(), Some("sub-carol"));
    // Again: nothing changes. Moved to the nurses: updated.
    assert_eq!(sign_in(&carol).unwrap().1, AccessChange::None);
    let carol = identity(
        "sub-carol",
        json!({ "preferred_username": "carol", "groups": "nurses" }),
    );
    let (user, change) = sign_in(&carol).unwrap();
    assert_eq!(
        change,
        AccessChange::Updated {
            group: "nurses".into()
        }
    );
    assert_eq!(
        (user.role.as_str(), user.wards),
        ("nurse", Some(vec!["w1".to_owned()]))
    );
    // In no configured group any more: refused (the provider manages carol's access).
    let carol = identity("sub-carol", json!({ "groups": ["staff"] }));
    assert_eq!(sign_in(&carol).unwrap_err(), Refusal::NoGroup);
    // An admin-linked user outside the groups keeps the role an admin gave.
    let (user, change) = sign_in(&identity("sub-ann", json!({}))).unwrap();
    assert_eq!(
        (user.role.as_str(), change),
        ("observer", AccessChange::None)
    );
    // ... and in a group, the group decides from then on.
    let (user, _) = sign_in(&identity("sub-ann", json!({ "groups": ["nurses"] }))).unwrap();
    assert_eq!((user.role.as_str(), user.oidc_managed), ("nurse", true));
    // A new identity in no group: refused as before. A subject that is no valid user name
    // gets a hashed name; a claimed name that is taken is not reused.
    assert_eq!(
        sign_in(&identity("sub-x", json!({ "groups": ["staff"] }))).unwrap_err(),
        Refusal::Unlinked
    );
    assert_eq!(
        sign_in(&identity(
            "weird sub/with spaces",
            json!({ "preferred_username": "dan", "groups": ["nurses"] }),
        ))
        .unwrap_err(),
        Refusal::LinkedElsewhere,
        "dan is another identity's user"
    );
    let (user, _) = sign_in(&identity(
        "weird sub/with spaces",
        json!({ "groups": ["nurses"] }),
    ))
    .unwrap();
    assert!(
        user.name.starts_with("sso-") && user.name.len() == 20,
        "{}",
        user.name
    );
    // A disabled user stays refused, groups or not.
    store.set_user_disabled("carol", true).unwrap();
    assert_eq!(
        sign_in_user(
            &mut store,
            &identity("sub-carol", json!({ "groups": ["nurses"] })),
            &config,
            5
        )
        .unwrap()
        .unwrap_err(),
        Refusal::Disabled
    );
    // Groups without the claim that lists them: refused at start.
    let mut no_claim = config.clone();
    no_claim.groups_claim = None;
    assert!(no_claim.check().unwrap_err().contains("groups_claim"));
}

#[test]
fn a_user_found_by_the_username_claim_is_linked_at_first_sign_in() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .create_user(&store::NewUser {
            name: "bob",
            role: "nurse",
            wards: None,
            password_hash: "h",
            at_ms: 1,
        })
        .unwrap();
    let mut config = config_for("https://idp.example");
    config.username_claim = Some("preferred_username".into());
    let identity = |sub: &str| IdClaims {
        sub: sub.to_owned(),
        claims: json!({ "sub": sub, "preferred_username": "bob" })
            .as_object()
            .cloned()
            .unwrap(),
    };
    let (user, change) = sign_in_user(&mut store, &identity("sub-bob"), &config, 1)
        .unwrap()
        .unwrap();
    assert_eq!((user.name.as_str(), change), ("bob", AccessChange::None));
    assert_eq!(user.oidc_subject.as_deref(), Some("sub-bob"));
    // The provider later gives the name `bob` to someone else: not this user.
    assert_eq!(
        sign_in_user(&mut store, &identity("sub-new-bob"), &config, 2)
            .unwrap()
            .unwrap_err(),
        Refusal::LinkedElsewhere
    );
}

/// `force_login`: the authorization request asks for a fresh authentication, and an ID token
/// whose `auth_time` is older than the sign-in (the provider reused someone's session) is refused.
#[tokio::test]
async fn force_login_needs_a_fresh_authentication() {
    let rsa = rsa_key();
    let provider = test_provider(vec![rsa_jwk(&rsa, "k")]).await;
    let mut config = config_for(&provider.issuer);
    config.force_login = true;
    let oidc = Oidc::new(config).unwrap();
    let started_ms = NOW * 1000;
    for (auth_time, accepted) in [
        (Some(NOW + 2), true),
        (Some(NOW - 5), true), // within the leeway
        (Some(NOW - 3600), false),
        (None, false),
    ] {
        let started = oidc.begin(started_ms).await.unwrap();
        let url = &started.authorization_url;
        assert_eq!(query_value(url, "prompt"), "login");
        assert_eq!(query_value(url, "max_age"), "0");
        let mut claims = claims();
        claims["iss"] = json!(provider.issuer);
        claims["nonce"] = json!(query_value(url, "nonce"));
        if let Some(auth_time) = auth_time {
            claims["auth_time"] = json!(auth_time);
        }
        *provider.token_answer.lock().unwrap() = (
            StatusCode::OK,
            json!({ "id_token": sign(&rs256(&rsa), Some("k"), &claims) }),
        );
        let params = CallbackParams {
            code: Some("c".into()),
            state: Some(query_value(url, "state")),
            ..CallbackParams::default()
        };
        let finished = oidc
            .finish(&params, Some(&started.binding), started_ms + 3000)
            .await;
        match (accepted, finished) {
            (true, Ok(_)) => {}
            (false, Err(OidcError::IdToken(IdTokenError::NotReauthenticated))) => {}
            (_, other) => panic!("auth_time {auth_time:?}: {other:?}"),
        }
    }
    // Without force_login, neither parameter is added (the test provider's endpoint URL
    // carries a `prompt` of its own).
    let plain = Oidc::new(config_for(&provider.issuer)).unwrap();
    let url = plain.begin(0).await.unwrap().authorization_url;
    assert!(
        url.matches("prompt=").count() == 1 && !url.contains("max_age="),
        "{url}"
    );
}

#[test]
fn the_binding_cookie_is_http_only_lax_and_secure_over_https() {
    let plain = Oidc::new(config_for("https://idp.example")).unwrap();
    assert_eq!(
        binding_cookie(&plain, "v", 600),
        "metaward_oidc=v; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=600"
    );
    let mut config = config_for("https://idp.example");
    config.redirect_uri = format!("https://ward.example/metaward{CALLBACK_PATH}");
    let secure = Oidc::new(config).unwrap();
    assert_eq!(
        binding_cookie(&secure, "", 0),
        "metaward_oidc=; Path=/metaward/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
    );
}
