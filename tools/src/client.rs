//! A keep-alive HTTP/1.1 client for load and drills against a running service: one
//! connection, requests in sequence, `Content-Length` answers (what the service sends).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

type Fallible<T> = Result<T, String>;

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Connection {
    authority: String,
    reader: BufReader<TcpStream>,
}

/// An answer: status, body, and the refusal code of an error body (or "").
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub body: Vec<u8>,
}

impl Connection {
    pub fn open(url: &str) -> Fallible<Connection> {
        let authority = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs")?
            .trim_end_matches('/')
            .to_string();
        let stream =
            TcpStream::connect(&authority).map_err(|e| format!("connect {authority}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        Ok(Connection {
            authority,
            reader: BufReader::new(stream),
        })
    }

    /// Sends a request and reads its answer; reconnects once if the server had closed the
    /// connection.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> Fallible<Answer> {
        match self.try_call(method, path, token, body) {
            Ok(answer) => Ok(answer),
            Err(_) => {
                *self = Connection::open(&format!("http://{}", self.authority))?;
                self.try_call(method, path, token, body)
            }
        }
    }

    fn try_call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> Fallible<Answer> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.authority);
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let (content_type, bytes) = body.unwrap_or(("", b""));
        if body.is_some() {
            request.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
        let mut message = request.into_bytes();
        message.extend_from_slice(bytes);
        let written = self.reader.get_mut().write_all(&message);
        // A request refused before its body is read (too large, no token) may be answered
        // and the connection closed while the body is still going out: the write then
        // fails, and the answer is already waiting to be read.
        self.read_answer().map_err(|read_error| match written {
            Err(write_error) => format!("{write_error} (then reading: {read_error})"),
            Ok(()) => read_error,
        })
    }

    fn read_answer(&mut self) -> Fallible<Answer> {
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("connection closed".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(|_| "bad content-length")?;
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("chunked answers are not expected".into());
                }
            }
        }
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        if close {
            *self = Connection::open(&format!("http://{}", self.authority))?;
        }
        Ok(Answer {
            status,
            // Only error bodies carry a code; a 2xx body is not parsed at all.
            code: if status >= 400 {
                error_code(&body)
            } else {
                String::new()
            },
            body,
        })
    }
}

/// The `error.code` of an error body.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Percent-encoding for form values and path segments: the service's own.
pub use jitledger::saml::authn_request::url_encode;
