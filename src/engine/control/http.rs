//! Just enough HTTP/1.1 for the control socket, so that `curl --unix-socket` works as well as
//! `archiver ctl`: one request per connection (request line, headers, a `Content-Length` body),
//! one response, `Connection: close`. Generic over the stream, so the same server can sit on a
//! Unix socket or a TCP listener; what a request means is the router's business
//! (`control::Routes`), not this module's.
//!
//! Every request is bounded: at most [`REQUEST_BYTES_MAX`] bytes, all of them within
//! [`READ_TIMEOUT_MS`]; a client that sends more, or too slowly, gets a 413 or 408 and is
//! dropped. No chunked bodies, no keep-alive, no pipelining: nothing a control call needs.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request accepted, head and body together, in bytes. A control call is a line and a
/// few headers; curl's are about 100 bytes.
pub const REQUEST_BYTES_MAX: usize = 16 * 1024;

/// Longest a client may take to send its whole request, in milliseconds.
pub const READ_TIMEOUT_MS: u64 = 5_000;

/// Longest writing the response may take, in milliseconds (a client that stopped reading).
pub const WRITE_TIMEOUT_MS: u64 = 5_000;

/// Bytes read from the stream at a time.
const READ_CHUNK_BYTES: usize = 1_024;

/// One request, as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... as sent (methods are case-sensitive).
    pub method: String,
    /// The path, without the query: `/status`.
    pub path: String,
    /// The query's `key=value` pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; empty without one).
    pub body: Vec<u8>,
}

impl Request {
    /// The value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request's parameters: the query's pairs, then those of a form body
    /// (`curl --data batch_rows=100` sends one). A body that is not UTF-8 adds none.
    pub fn parameters(&self) -> Vec<(String, String)> {
        let mut pairs = self.query.clone();
        if let Ok(body) = std::str::from_utf8(&self.body) {
            pairs.extend(parse_pairs(body.trim()));
        }
        pairs
    }
}

/// One response: a status, a content type and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The methods a path allows, sent as `Allow` with a 405.
    pub allow: Option<&'static str>,
    /// The body.
    pub body: String,
}

impl Response {
    /// `value` as JSON, with a newline so that curl's output ends a line.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        let mut body = serde_json::to_string(value)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot render the answer: {e}\"}}"));
        body.push('\n');
        Response {
            status,
            content_type: "application/json",
            allow: None,
            body,
        }
    }

    /// A JSON object `{"message": ...}` (2xx) or `{"error": ...}` (4xx, 5xx).
    pub fn message(status: u16, message: impl Into<String>) -> Response {
        let key = if status < 400 { "message" } else { "error" };
        Response::json(status, &serde_json::json!({ key: message.into() }))
    }

    /// Plain text (the Prometheus exposition format, for one).
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            allow: None,
            body,
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// More than [`REQUEST_BYTES_MAX`] bytes.
    #[error("the request is larger than {REQUEST_BYTES_MAX} bytes")]
    TooLarge,
    /// Not all sent within [`READ_TIMEOUT_MS`].
    #[error("the request was not complete within {READ_TIMEOUT_MS} ms")]
    Timeout,
    /// Not HTTP/1.x as this server reads it.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// HTTP this server does not do (chunked bodies).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The client closed the connection before sending anything.
    #[error("the client closed the connection without a request")]
    Closed,
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl RequestError {
    /// The status to answer with, if the client is still there to read it.
    fn status(&self) -> Option<u16> {
        match self {
            RequestError::TooLarge => Some(413),
            RequestError::Timeout => Some(408),
            RequestError::Malformed(_) => Some(400),
            RequestError::Unsupported(_) => Some(501),
            RequestError::Closed | RequestError::Io(_) => None,
        }
    }
}

/// Serves one connection: reads one request, answers it with `handle`'s response (or an error
/// status if it could not be read), and closes. Never fails: a client that went away is
/// simply gone.
pub async fn serve<S, H, F>(stream: S, handle: H)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    serve_within(stream, Duration::from_millis(READ_TIMEOUT_MS), handle).await;
}

/// [`serve`] with the time the request may take to arrive.
async fn serve_within<S, H, F>(mut stream: S, read_timeout: Duration, handle: H)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    let read = tokio::time::timeout(read_timeout, read_request(&mut stream))
        .await
        .unwrap_or(Err(RequestError::Timeout));
    let response = match read {
        Ok(request) => handle(request).await,
        Err(error) => match error.status() {
            Some(status) => Response::message(status, error.to_string()),
            None => return,
        },
    };
    let write = async {
        write_response(&mut stream, &response).await?;
        stream.shutdown().await
    };
    if let Err(error) = tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        tracing::debug!("control socket: the answer was not delivered: {error}");
    }
}

/// Reads one request: the head up to the blank line, then `Content-Length` bytes of body.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, RequestError> {
    let mut buffer = Vec::with_capacity(READ_CHUNK_BYTES);
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > REQUEST_BYTES_MAX {
            return Err(RequestError::TooLarge);
        }
        if read_more(stream, &mut buffer).await? == 0 {
            return Err(if buffer.is_empty() {
                RequestError::Closed
            } else {
                RequestError::Malformed("the request ended before its blank line".into())
            });
        }
    };
    let body_start = head_end + 4;
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| RequestError::Malformed("the request head is not UTF-8".into()))?;
    let mut request = parse_head(head)?;
    let length = content_length(&request.headers)?;
    if body_start.saturating_add(length) > REQUEST_BYTES_MAX {
        return Err(RequestError::TooLarge);
    }
    while buffer.len() < body_start + length {
        if read_more(stream, &mut buffer).await? == 0 {
            return Err(RequestError::Malformed(
                "the body is shorter than its Content-Length".into(),
            ));
        }
    }
    request.body = buffer[body_start..body_start + length].to_vec();
    Ok(request)
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    let read = stream.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The request line and headers (the body is read after).
fn parse_head(head: &str) -> Result<Request, RequestError> {
    let malformed = |what: &str| RequestError::Malformed(what.to_string());
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "the request line is not `METHOD TARGET HTTP/1.1`",
        ));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || method.is_empty() {
        return Err(malformed(
            "the request line is not `METHOD TARGET HTTP/1.1`",
        ));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a header line has no colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    // An absolute target (`http://host/path`, as sent through proxies) names the same path.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') {
        return Err(malformed("the target is not a path"));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: parse_pairs(query),
        headers,
        body: Vec::new(),
    })
}

/// The body length the headers announce (0 without `Content-Length`); chunked bodies are
/// refused.
fn content_length(headers: &[(String, String)]) -> Result<usize, RequestError> {
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(RequestError::Unsupported(
            "a Transfer-Encoding body; send Content-Length",
        ));
    }
    let mut lengths = headers.iter().filter(|(n, _)| n == "content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(0),
        (Some((_, value)), None) => value
            .parse()
            .map_err(|_| RequestError::Malformed(format!("Content-Length {value:?}"))),
        (Some(_), Some(_)) => Err(RequestError::Malformed("two Content-Length headers".into())),
    }
}

/// `a=1&b=x%20y` as pairs, percent-decoded (`+` is a space); a pair without `=` has an empty
/// value.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `response` whole.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
) -> std::io::Result<()> {
    let allow = response
        .allow
        .map_or(String::new(), |methods| format!("Allow: {methods}\r\n"));
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.flush().await
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `input` as one connection with a handler that echoes what it read.
    async fn exchange(input: &[u8]) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn(serve(server, |request: Request| async move {
            Response::json(
                200,
                &serde_json::json!({
                    "method": request.method,
                    "path": request.path,
                    "parameters": request.parameters(),
                }),
            )
        }));
        client.write_all(input).await.unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        serving.await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_request_is_read_and_answered_with_connection_close() {
        let out = exchange(
            b"POST /set?batch_rows=5&x=a%20b+c HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nsleep_ms=10",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["method"], "POST");
        assert_eq!(value["path"], "/set");
        assert_eq!(
            value["parameters"],
            serde_json::json!([["batch_rows", "5"], ["x", "a b c"], ["sleep_ms", "10"]])
        );
        let length: usize = out
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
    }

    #[tokio::test]
    async fn bad_requests_get_a_4xx_or_5xx_with_the_reason() {
        let big = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(REQUEST_BYTES_MAX));
        let body_too_big = format!(
            "POST /set HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            REQUEST_BYTES_MAX
        );
        let cases: &[(&[u8], &str)] = &[
            (b"GARBAGE\r\n\r\n", "400 Bad Request"),
            (b"GET /status HTTP/2\r\n\r\n", "400 Bad Request"),
            (
                b"GET /status HTTP/1.1\r\nno colon\r\n\r\n",
                "400 Bad Request",
            ),
            (b"GET status HTTP/1.1\r\n\r\n", "400 Bad Request"),
            (
                b"POST /set HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"POST /set HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "501 Not Implemented",
            ),
            (big.as_bytes(), "413 Content Too Large"),
            (body_too_big.as_bytes(), "413 Content Too Large"),
        ];
        for (input, status) in cases {
            let out = exchange(input).await;
            assert!(
                out.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{}: {out}",
                String::from_utf8_lossy(&input[..input.len().min(60)])
            );
            assert!(out.contains("\"error\":"), "{out}");
        }
    }

    #[tokio::test]
    async fn a_client_too_slow_gets_408() {
        let (mut client, server) = tokio::io::duplex(1024);
        let serving = tokio::spawn(serve_within(server, Duration::from_millis(50), |_| async {
            Response::message(200, "x")
        }));
        client.write_all(b"GET /status HTTP/1.1\r\n").await.unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        serving.await.unwrap();
        assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    }

    #[tokio::test]
    async fn an_absolute_target_names_its_path() {
        let out = exchange(b"GET http://x/status?a=1 HTTP/1.1\r\n\r\n").await;
        assert!(out.contains("\"path\":\"/status\""), "{out}");
        assert!(out.contains("[\"a\",\"1\"]"), "{out}");
    }
}
