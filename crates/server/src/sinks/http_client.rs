//! A minimal HTTP/1.1 client for the few outbound calls metaward makes (FHIR to an external EMR,
//! OpenID Connect discovery, keys and token exchange): one request per connection
//! (`Connection: close`), `http://` or `https://`, a time limit on the whole exchange, an upper
//! bound on the answer's size.
//!
//! HTTPS is rustls with the `ring` backend, trusting either the CA certificates of a configured
//! PEM file (a hospital's own CA) or, without one, the Mozilla root set bundled by
//! `webpki-roots` (the same roots browsers trust; the machine's own store is not read, so a
//! deployment behind an internal CA names its file). Small on purpose: the calls are few and
//! batched, and a general HTTP client is a dependency to weigh on its own.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest answer read (a FHIR search page of 1000 resources fits many times over).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("only http:// and https:// URLs are supported, not `{0}`")]
    UnsupportedUrl(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("talking to {0}: {1}")]
    Io(String, std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("unreadable answer from {0}")]
    Malformed(String),
    #[error("the answer from {0} is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge(String),
    #[error("the CA file {0}: {1}")]
    CaFile(String, String),
}

/// Whom HTTPS connections trust.
#[derive(Clone)]
pub struct Trust {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trust")
    }
}

impl Trust {
    /// The Mozilla root set (webpki-roots), built once.
    pub fn public_roots() -> Trust {
        static ROOTS: OnceLock<Trust> = OnceLock::new();
        ROOTS
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                Trust::with_roots(roots)
            })
            .clone()
    }

    /// Only the CA certificates in a PEM file (e.g. the hospital's own CA).
    pub fn ca_file(path: &Path) -> Result<Trust, HttpError> {
        let shown = path.display().to_string();
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|error| HttpError::CaFile(shown.clone(), error.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|error| HttpError::CaFile(shown.clone(), error.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| HttpError::CaFile(shown.clone(), error.to_string()))?;
        }
        if roots.is_empty() {
            return Err(HttpError::CaFile(shown, "no certificate in it".into()));
        }
        Ok(Trust::with_roots(roots))
    }

    /// The configured CA file, or the public roots without one.
    pub fn from_option(ca_file: Option<&Path>) -> Result<Trust, HttpError> {
        ca_file.map_or_else(|| Ok(Trust::public_roots()), Trust::ca_file)
    }

    fn with_roots(roots: rustls::RootCertStore) -> Trust {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Trust {
            config: Arc::new(config),
        }
    }
}

/// Where requests go: scheme, host and port (and, for https, whom to trust).
#[derive(Clone, Debug)]
pub struct Origin {
    pub host: String,
    pub port: u16,
    /// `Some` for https.
    pub tls: Option<Trust>,
}

impl Origin {
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// `host:port`, as a `Host` header and in messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `http://host:port` or `https://host:port`, for comparing absolute URLs.
    pub fn prefix(&self) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }

    /// Whether the host is this machine (127.0.0.0/8, ::1, `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.prefix())
    }
}

/// `http(s)://host[:port]/path` split into the origin and the path (without a trailing `/`;
/// with its query, if any). https trusts the public roots; see [`split_url_with`].
pub fn split_base_url(base_url: &str) -> Result<(Origin, String), HttpError> {
    split_url_with(base_url, None)
}

/// As [`split_base_url`], with the trust for https (`None`: the public roots).
pub fn split_url_with(url: &str, trust: Option<&Trust>) -> Result<(Origin, String), HttpError> {
    let unsupported = || HttpError::UnsupportedUrl(url.to_owned());
    let (rest, https) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, false)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, true)
    } else {
        return Err(unsupported());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(unsupported());
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // [v6]:port
        let (host, after) = bracketed.split_once(']').ok_or_else(unsupported)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| unsupported())?,
            None if after.is_empty() => default_port,
            None => return Err(unsupported()),
        };
        (host.to_owned(), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().map_err(|_| unsupported())?),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err(unsupported());
    }
    let tls = https.then(|| trust.cloned().unwrap_or_else(Trust::public_roots));
    Ok((Origin { host, port, tls }, path))
}

pub struct HttpResponse {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one FHIR request (`application/fhir+json`, an optional bearer token); `path` is
/// absolute (the base URL's path included).
pub async fn request(
    origin: &Origin,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    limit: Duration,
) -> Result<HttpResponse, HttpError> {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![
        ("Accept", "application/fhir+json"),
        ("Content-Type", "application/fhir+json"),
    ];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization));
    }
    send(origin, method, path, &headers, body, limit).await
}

/// Sends one request with the given headers (`Host`, `Connection` and `Content-Length` are
/// added); `path` is absolute.
pub async fn send(
    origin: &Origin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    limit: Duration,
) -> Result<HttpResponse, HttpError> {
    tokio::time::timeout(limit, exchange(origin, method, path, headers, body))
        .await
        .map_err(|_| HttpError::Timeout(origin.prefix(), limit))?
}

async fn exchange(
    origin: &Origin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpResponse, HttpError> {
    let shown = origin.prefix();
    let tcp = tokio::net::TcpStream::connect((origin.host.as_str(), origin.port))
        .await
        .map_err(|error| HttpError::Connect(shown.clone(), error))?;
    let path = if path.is_empty() { "/" } else { path };
    let default_port = if origin.is_https() { 443 } else { 80 };
    let host = if origin.port == default_port {
        origin
            .authority()
            .rsplit_once(':')
            .map(|(h, _)| h.to_owned())
            .unwrap_or_default()
    } else {
        origin.authority()
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let raw = match &origin.tls {
        None => talk(tcp, &head, body, &shown).await?,
        Some(trust) => {
            let name = ServerName::try_from(origin.host.clone())
                .map_err(|_| HttpError::UnsupportedUrl(shown.clone()))?;
            let tls = tokio_rustls::TlsConnector::from(trust.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|error| HttpError::Tls(shown.clone(), error))?;
            talk(tls, &head, body, &shown).await?
        }
    };
    parse_response(&raw).ok_or(HttpError::Malformed(shown))
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &str,
    body: &[u8],
    shown: &str,
) -> Result<Vec<u8>, HttpError> {
    let io = |error| HttpError::Io(shown.to_owned(), error);
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => {
                raw.extend_from_slice(&buffer[..read]);
                if raw.len() > MAX_ANSWER_BYTES {
                    return Err(HttpError::TooLarge(shown.to_owned()));
                }
            }
            // Many HTTPS servers close without TLS close_notify after `Connection: close`: the
            // answer is complete when its length (checked in `parse_response`) says so.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {
                break;
            }
            Err(error) => return Err(io(error)),
        }
    }
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        // A connection cut short must not pass for a whole answer.
        let length: usize = length.parse().ok()?;
        rest.get(..length)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// `application/x-www-form-urlencoded` / URL query encoding of one value (RFC 3986 unreserved
/// characters kept, everything else percent-encoded).
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `name=value&…`, each part encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let (origin, path) = split_base_url("http://127.0.0.1:8081/fhir/").unwrap();
        assert_eq!(
            (origin.authority().as_str(), path.as_str()),
            ("127.0.0.1:8081", "/fhir")
        );
        assert!(!origin.is_https() && origin.is_loopback());
        let (origin, path) = split_base_url("http://emr.example").unwrap();
        assert_eq!(
            (origin.authority().as_str(), path.as_str()),
            ("emr.example:80", "")
        );
        assert!(!origin.is_loopback());
        let (origin, path) = split_base_url("https://emr.example/fhir").unwrap();
        assert_eq!(
            (origin.prefix().as_str(), path.as_str()),
            ("https://emr.example:443", "/fhir")
        );
        let (origin, path) = split_base_url("https://[::1]:8443/a?b=c").unwrap();
        assert_eq!(
            (origin.host.as_str(), origin.port, path.as_str()),
            ("::1", 8443, "/a?b=c")
        );
        assert!(origin.is_loopback());
        for bad in ["ftp://x", "http://", "https://user@host/", "http://h:port/"] {
            assert!(split_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_and_plain_answers() {
        let plain = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(plain.header("Content-Length"), Some("2"));
        let chunked = parse_response(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (201, &b"abcde"[..])
        );
        // Cut short: not an answer.
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}").is_none());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[
                ("redirect_uri", "http://h/cb?x=1"),
                ("scope", "openid email")
            ]),
            "redirect_uri=http%3A%2F%2Fh%2Fcb%3Fx%3D1&scope=openid%20email"
        );
    }

    /// A real TLS server on loopback with a certificate from a self-signed CA (rcgen): the client
    /// trusts it through the CA file, and refuses it with the public roots.
    #[tokio::test]
    async fn https_with_a_configured_ca() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let files = crate::tls::TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&files.cert, leaf.pem()).unwrap();
        std::fs::write(&files.key, leaf_key.serialize_pem()).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let acceptor = crate::tls::acceptor(&files).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request);
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let body = format!("{{\"path\":\"{path}\"}}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });

        let trust = Trust::ca_file(&ca_file).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let (origin, path) =
                split_url_with(&format!("https://{host}:{port}/hello"), Some(&trust)).unwrap();
            let answer = send(&origin, "GET", &path, &[], None, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body, b"{\"path\":\"/hello\"}");
        }
        // The public roots do not know this CA: the handshake fails, nothing is sent.
        let (origin, path) = split_base_url(&format!("https://localhost:{port}/hello")).unwrap();
        let refused = send(&origin, "GET", &path, &[], None, Duration::from_secs(10)).await;
        assert!(
            matches!(refused, Err(HttpError::Tls(..))),
            "{:?}",
            refused.err()
        );
        // A CA file without a certificate is refused up front.
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        assert!(Trust::ca_file(&dir.path().join("empty.pem")).is_err());
    }
}
