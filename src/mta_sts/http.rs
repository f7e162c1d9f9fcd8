//! The little HTTP/1.1 client side mailctl needs (MTA-STS policy fetches, the ACME client), parsed without
//! sockets: a status line, headers, and a body framed by `Content-Length`, `Transfer-Encoding: chunked` or the
//! end of the connection, everything capped.

use super::MAX_BODY;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A response as far as the policy fetch cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `Location`, if any.
    pub location: Option<String>,
    /// Every header field, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (for a policy fetch, empty for non-200 answers, which are not read further).
    pub body: Vec<u8>,
}

impl Response {
    /// The policy text, or why a sender would not use this response (RFC 8461 3.3).
    pub fn policy_text(self) -> Result<String, String> {
        let shown = |s: &Option<String>| crate::model::printable(s.as_deref().unwrap_or("none"));
        if (300..400).contains(&self.status) {
            return Err(format!(
                "HTTP {} redirect to {} (RFC 8461 forbids following redirects)",
                self.status,
                shown(&self.location)
            ));
        }
        if self.status != 200 {
            return Err(format!("HTTP {} instead of 200", self.status));
        }
        let media = self
            .content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        if media.as_deref() != Some("text/plain") {
            return Err(format!(
                "Content-Type is {}, not text/plain",
                shown(&self.content_type)
            ));
        }
        String::from_utf8(self.body).map_err(|_| "the policy is not UTF-8 text".to_string())
    }
}

/// Parses what arrived so far of a policy fetch: `Ok(None)` means "need more" (never returned when `eof`).
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    parse(
        buf,
        eof,
        Expect {
            max_body: MAX_BODY,
            every_status: false,
            head_only: false,
        },
    )
}

/// How a response is framed and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The largest body accepted.
    pub max_body: usize,
    /// Read the body of every status (else of 200 only).
    pub every_status: bool,
    /// The answer to a HEAD request: no body, whatever its headers say.
    pub head_only: bool,
}

/// Parses what arrived so far: `Ok(None)` means "need more" (never returned when `eof`), framed as `expect`
/// says. A 1xx, 204 or 304 answer has no body either (RFC 9112 6.3).
pub fn parse(buf: &[u8], eof: bool, expect: Expect) -> Result<Option<Response>, String> {
    let Expect {
        max_body,
        every_status,
        head_only,
    } = expect;
    let too_large = || format!("the body is larger than {} KiB", max_body / 1024);
    let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("response headers larger than 16 KiB".into())
        } else if eof {
            Err("the connection closed before the response headers ended".into())
        } else {
            Ok(None)
        };
    };
    if head_end > MAX_HEAD {
        return Err("response headers larger than 16 KiB".into());
    }
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") && code.len() == 3 => {
            code.parse::<u16>().ok()
        }
        _ => None,
    }
    .ok_or_else(|| {
        let shown: String = status_line.chars().take(80).collect();
        format!(
            "not an HTTP/1.x status line: \"{}\"",
            crate::model::printable(&shown)
        )
    })?;
    let (mut content_type, mut location, mut length, mut chunked) = (None, None, None, false);
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        headers.push((name.trim().to_string(), value.clone()));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value),
            "location" => location = Some(value),
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| "invalid Content-Length".to_string())?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut response = Response {
        status,
        content_type,
        location,
        headers,
        body: Vec::new(),
    };
    if (status != 200 && !every_status)
        || head_only
        || status < 200
        || status == 204
        || status == 304
    {
        return Ok(Some(response));
    }
    let rest = &buf[head_end + 4..];
    let body = if chunked {
        dechunk(rest, max_body).map_err(|e| e.unwrap_or_else(too_large))?
    } else if let Some(n) = length {
        if n > max_body {
            return Err(format!(
                "the body is {n} bytes, more than {} KiB",
                max_body / 1024
            ));
        }
        rest.get(..n).map(<[u8]>::to_vec)
    } else if eof {
        Some(rest.to_vec())
    } else {
        None
    };
    match body {
        Some(b) if b.len() > max_body => Err(too_large()),
        Some(b) => {
            response.body = b;
            Ok(Some(response))
        }
        None if rest.len() > max_body + 8 * 1024 => Err(too_large()),
        None if eof => Err("the connection closed before the body was complete".into()),
        None => Ok(None),
    }
}

/// Decodes a chunked body; `Ok(None)` when incomplete. Trailers are ignored. `Err(None)`: larger than
/// `max_body`.
fn dechunk(mut rest: &[u8], max_body: usize) -> Result<Option<Vec<u8>>, Option<String>> {
    let mut body = Vec::new();
    loop {
        let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|_| size_text.len() <= 8)
            .ok_or_else(|| Some("invalid chunk size".to_string()))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if body.len() + size > max_body {
            return Err(None);
        }
        let Some(chunk) = rest.get(..size) else {
            return Ok(None);
        };
        body.extend_from_slice(chunk);
        rest = &rest[size..];
        match rest.get(..2) {
            Some(b"\r\n") => rest = &rest[2..],
            Some(_) => return Err(Some("malformed chunk".into())),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n";

    #[test]
    fn content_length_frames_the_body() {
        let full = format!("{OK}Content-Length: 5\r\n\r\nhello, and more");
        let r = parse_response(full.as_bytes(), false).unwrap().unwrap();
        assert_eq!(r.policy_text().unwrap(), "hello");
        let part = format!("{OK}Content-Length: 5\r\n\r\nhel");
        assert_eq!(parse_response(part.as_bytes(), false), Ok(None));
        assert!(parse_response(part.as_bytes(), true).is_err());
    }

    #[test]
    fn chunked_and_close_delimited_bodies() {
        let chunked =
            format!("{OK}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n");
        let r = parse_response(chunked.as_bytes(), false).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        let closed = format!("{OK}\r\nuntil eof");
        assert_eq!(parse_response(closed.as_bytes(), false), Ok(None));
        let r = parse_response(closed.as_bytes(), true).unwrap().unwrap();
        assert_eq!(r.body, b"until eof");
    }

    #[test]
    fn redirects_wrong_type_and_errors_are_refused() {
        let moved = b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\n\r\n";
        let err = parse_response(moved, false)
            .unwrap()
            .unwrap()
            .policy_text()
            .unwrap_err();
        assert!(
            err.contains("redirect to https://elsewhere.example/"),
            "{err}"
        );
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n";
        let err = parse_response(html, false)
            .unwrap()
            .unwrap()
            .policy_text()
            .unwrap_err();
        assert!(err.contains("text/html"), "{err}");
        let missing = b"HTTP/1.0 404 Not Found\r\n\r\n";
        assert!(
            parse_response(missing, false)
                .unwrap()
                .unwrap()
                .policy_text()
                .is_err()
        );
    }

    #[test]
    fn oversized_and_garbage_responses_are_errors() {
        let big = format!("{OK}Content-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(parse_response(big.as_bytes(), false).is_err());
        let chunk = format!(
            "{OK}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY + 1
        );
        assert!(parse_response(chunk.as_bytes(), false).is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        assert!(parse_response(&vec![b'a'; MAX_HEAD + 1], false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_response(b"partial", true).is_err());
    }
}
