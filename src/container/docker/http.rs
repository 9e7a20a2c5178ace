//! The smallest HTTP/1.1 client the Docker Engine API needs: one request
//! per connection on dockerd's Unix socket (`Connection: close`), a JSON
//! body out, the status and body back (Content-Length, chunked, or up to
//! the end).

use super::error::DockerError;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The API version asked for: Docker 20.10's, which every later dockerd
/// still serves.
const API: &str = "/v1.41";

/// A status and body dockerd answered.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body (chunks joined).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self, what: &str) -> Result<serde_json::Value, DockerError> {
        serde_json::from_slice(&self.body).map_err(|e| DockerError::BadAnswer {
            what: what.to_string(),
            why: e.to_string(),
        })
    }

    /// dockerd's own message of an error answer (`{"message": ...}`), or
    /// the body as text.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

/// Sends one request to the dockerd listening on `socket` and reads its
/// answer, within `timeout` for each read.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Response, DockerError> {
    let unreachable = |e: std::io::Error| DockerError::Unreachable {
        socket: PathBuf::from(socket),
        why: e.to_string(),
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {API}{path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(unreachable)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(unreachable)?;
    parse(&raw).ok_or_else(|| DockerError::BadAnswer {
        what: format!("{method} {path}"),
        why: format!(
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ),
    })
}

/// Splits an HTTP/1.1 answer into its status and body.
fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.parse::<usize>().ok(),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Some(Response { status, body })
}

/// Joins the chunks of a chunked body.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_answers_are_read() {
        let r = parse(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"Id\":1}\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{\"Id\":1}\n"[..]));
        let r = parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mes\r\n13\r\nsage\":\"no such x\"}\n\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.message(), "no such x");
        assert!(parse(b"garbage").is_none());
    }
}
