//! A minimal HTTP/1.1 client for talking FHIR to an external EMR: one request per connection
//! (`Connection: close`), `http://` only, a bearer token, a time limit on the whole exchange.
//! Small on purpose: the EMR calls are few and batched, and a TLS stack is a dependency to
//! weigh on its own (docs/emr.md says what is supported).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("only http:// base URLs are supported, not `{0}`")]
    UnsupportedUrl(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("talking to {0}: {1}")]
    Io(String, std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("unreadable answer from {0}")]
    Malformed(String),
}

/// `http://host:port/path` split into the authority and the path prefix (without a trailing /).
pub fn split_base_url(base_url: &str) -> Result<(String, String), HttpError> {
    let rest = base_url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::UnsupportedUrl(base_url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(HttpError::UnsupportedUrl(base_url.to_owned()));
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request; `path` is absolute (the base URL's path included).
pub async fn request(
    authority: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    limit: Duration,
) -> Result<HttpResponse, HttpError> {
    tokio::time::timeout(limit, exchange(authority, method, path, token, body))
        .await
        .map_err(|_| HttpError::Timeout(authority.to_owned(), limit))?
}

async fn exchange(
    authority: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Result<HttpResponse, HttpError> {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|error| HttpError::Connect(authority.to_owned(), error))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/fhir+json\r\n"
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    head.push_str(&format!(
        "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let io = |error| HttpError::Io(authority.to_owned(), error);
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    parse_response(&raw).ok_or_else(|| HttpError::Malformed(authority.to_owned()))
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let rest = &raw[split + 4..];
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(HttpResponse { status, body })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let (authority, path) = split_base_url("http://127.0.0.1:8081/fhir/").unwrap();
        assert_eq!(
            (authority.as_str(), path.as_str()),
            ("127.0.0.1:8081", "/fhir")
        );
        let (authority, path) = split_base_url("http://emr.example").unwrap();
        assert_eq!((authority.as_str(), path.as_str()), ("emr.example:80", ""));
        assert!(split_base_url("https://emr.example/fhir").is_err());
    }

    #[test]
    fn chunked_and_plain_answers() {
        let plain = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"{}"[..]));
        let chunked = parse_response(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (201, &b"abcde"[..])
        );
    }
}
