//! Single sign-on's HTTP edge on a running server, without a browser: what `/auth/config`
//! says, the redirect to the provider (PKCE S256, state, nonce, the HttpOnly browser-binding
//! cookie), and the callback's refusals (an unknown state, a state from another browser, the
//! provider's own error), each sent back to the page as `#sso_error=` and audited as a failed
//! login; a made-up hand-off code is refused. The whole flow against a real provider, through a
//! browser, is `web/tests/sso.test.mjs`.

use std::time::Duration;

use serde_json::json;
use server::auth::oidc::{CALLBACK_PATH, OidcConfig};
use server::sinks::http_client::{self, HttpResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

/// Serves a provider's discovery document on loopback (the login needs only that; nothing here
/// reaches the token endpoint).
async fn discovery_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "code_challenge_methods_supported": ["S256"],
    })
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let document = document.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let found = String::from_utf8_lossy(&request)
                    .starts_with("GET /.well-known/openid-configuration ");
                let answer = if found {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{document}",
                        document.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    issuer
}

async fn get(server: &Server, path: &str, cookie: Option<&str>) -> HttpResponse {
    let (origin, _) =
        http_client::split_base_url(&format!("http://{}", server.http_addr())).unwrap();
    let mut headers = Vec::new();
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    http_client::send(
        &origin,
        "GET",
        path,
        &headers,
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_routes_redirect_and_refuse_as_documented() {
    let issuer = discovery_server().await;
    let (server, _dir) = start_server_with(|config| {
        config.oidc = Some(OidcConfig {
            issuer: issuer.clone(),
            client_id: "metaward".into(),
            client_secret: None,
            redirect_uri: format!("http://127.0.0.1:8080{CALLBACK_PATH}"),
            scopes: vec!["openid".into()],
            display_name: "Hospital login".into(),
            username_claim: None,
            ca_file: None,
            groups_claim: None,
            groups: Vec::new(),
            force_login: false,
        })
    })
    .await;
    let http_addr = server.http_addr();

    let config = http_as(http_addr, None, "GET", "/api/v1/auth/config", None).await;
    assert_eq!(config.status, 200);
    assert_eq!(
        config.json(),
        json!({ "password": true, "sso": { "name": "Hospital login", "login": "/api/v1/auth/oidc/login" } })
    );

    // To the provider, with everything the code flow with PKCE needs, and a binding cookie.
    let login = get(&server, "/api/v1/auth/oidc/login", None).await;
    assert_eq!(login.status, 302);
    let location = login.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{issuer}/authorize?")),
        "{location}"
    );
    assert_eq!(query_value(&location, "response_type"), "code");
    assert_eq!(query_value(&location, "code_challenge_method"), "S256");
    assert_eq!(query_value(&location, "code_challenge").len(), 43);
    assert_eq!(
        query_value(&location, "redirect_uri"),
        "http%3A%2F%2F127.0.0.1%3A8080%2Fapi%2Fv1%2Fauth%2Foidc%2Fcallback"
    );
    let state = query_value(&location, "state");
    assert!(!query_value(&location, "nonce").is_empty());
    let set_cookie = login.header("set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // The callback: refused back to the page with a reason, never a 200 or a session.
    let refused = |response: &HttpResponse, reason: &str| {
        assert_eq!(response.status, 302);
        assert_eq!(
            response.header("location"),
            Some(format!("http://127.0.0.1:8080/#sso_error={reason}").as_str())
        );
    };
    let forged = get(
        &server,
        "/api/v1/auth/oidc/callback?code=c&state=made-up",
        Some(&cookie),
    )
    .await;
    refused(&forged, "bad_state");
    // The real state, from a browser without the cookie: refused, and the state is used up.
    let elsewhere = get(
        &server,
        &format!("/api/v1/auth/oidc/callback?code=c&state={state}"),
        None,
    )
    .await;
    refused(&elsewhere, "wrong_browser");
    let replayed = get(
        &server,
        &format!("/api/v1/auth/oidc/callback?code=c&state={state}"),
        Some(&cookie),
    )
    .await;
    refused(&replayed, "bad_state");
    // The provider's own refusal (the user cancelled), with a fresh login.
    let login = get(&server, "/api/v1/auth/oidc/login", None).await;
    let state = query_value(login.header("location").unwrap(), "state");
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let cancelled = get(
        &server,
        &format!("/api/v1/auth/oidc/callback?error=access_denied&state={state}"),
        Some(&cookie),
    )
    .await;
    refused(&cancelled, "provider_refused");

    let redeem = http_as(
        http_addr,
        None,
        "POST",
        "/api/v1/auth/oidc/redeem",
        Some(r#"{"code":"guessed"}"#),
    )
    .await;
    assert_eq!(redeem.status, 401, "{}", redeem.body);
    assert_eq!(redeem.json()["error"]["code"], "bad_code");

    // Each refusal is a failed login in the audit trail.
    let outcomes: Vec<String> = eventually("the refusals in the audit trail", || async {
        let trail = get_json(http_addr, "/api/v1/audit").await;
        let outcomes: Vec<String> = trail["entry"]
            .as_array()?
            .iter()
            .map(|entry| &entry["resource"])
            .filter(|event| event["subtype"][0]["code"] == "login_failed")
            .filter_map(|event| event["outcomeDesc"].as_str().map(str::to_owned))
            .collect();
        (outcomes.len() >= 4).then_some(outcomes)
    })
    .await;
    assert_eq!(
        outcomes,
        [
            "oidc_bad_state",
            "oidc_wrong_browser",
            "oidc_bad_state",
            "oidc_provider_refused"
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_link_users_to_identities_over_the_api() {
    let (server, _dir) = start_server().await;
    let http_addr = server.http_addr();
    let created = http(
        http_addr,
        "POST",
        "/api/v1/users",
        Some(r#"{"name":"ann","role":"nurse","wards":["w1"],"oidc_subject":"sub-ann"}"#),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["oidc_subject"], "sub-ann");
    assert_eq!(created.json()["oidc_managed"], false);
    // One identity, one user: refused before anything is created.
    let taken = http(
        http_addr,
        "POST",
        "/api/v1/users",
        Some(r#"{"name":"bob","role":"nurse","wards":"*","oidc_subject":"sub-ann"}"#),
    )
    .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let users = get_json(http_addr, "/api/v1/users").await;
    assert!(
        !users
            .as_array()
            .unwrap()
            .iter()
            .any(|user| user["name"] == "bob"),
        "{users}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sso_the_routes_say_it_is_not_configured() {
    let (server, _dir) = start_server().await;
    let http_addr = server.http_addr();
    let config = http_as(http_addr, None, "GET", "/api/v1/auth/config", None).await;
    assert_eq!(config.json(), json!({ "password": true, "sso": null }));
    let login = http_as(http_addr, None, "GET", "/api/v1/auth/oidc/login", None).await;
    assert_eq!(login.status, 404);
    assert_eq!(login.json()["error"]["code"], "sso_not_configured");
    server.shutdown().await;
}
