//! ID tokens (OpenID Connect Core 3.1.3.7): a compact JWS signed with RS256, PS256 or ES256,
//! verified with `ring` against the provider's JWKS, then its issuer, audience, authorized
//! party, lifetime and nonce. Never `none`, never HMAC.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{LEEWAY_S, b64url_decode};

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
    #[error("the provider did not authenticate the person again for this sign-in (auth_time)")]
    NotReauthenticated,
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
