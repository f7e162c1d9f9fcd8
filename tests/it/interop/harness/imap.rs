//! A tiny IMAP4rev1 client over plain TCP: tagged commands, responses read up to the tagged status line,
//! with `{N}` literals read as exactly N bytes (so a message body may contain anything). Every read waits
//! at most [`READ_TIMEOUT`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long any read waits for the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// What the server answered to one command.
#[derive(Debug)]
pub struct Response {
    /// The tagged status line without the tag, e.g. `OK Logged in` or `NO [AUTHENTICATIONFAILED] ...`.
    pub status: String,
    /// Everything before the status line, literals included, as sent.
    pub untagged: Vec<u8>,
}

impl Response {
    /// Whether the status is `OK`.
    pub fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }

    /// The untagged part as text (lossy), for assertions and messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.untagged).into_owned()
    }

    /// The literal that follows `item {N}` in the untagged part (e.g. `BODY[]`), `n`-th occurrence (0-based).
    pub fn literal(&self, item: &str, n: usize) -> Option<Vec<u8>> {
        let needle = format!("{item} {{");
        let hay = &self.untagged;
        let mut from = 0;
        let mut seen = 0;
        while let Some(pos) = find(&hay[from..], needle.as_bytes()) {
            let start = from + pos + needle.len();
            let close = start + find(&hay[start..], b"}\r\n")?;
            let len: usize = std::str::from_utf8(&hay[start..close]).ok()?.parse().ok()?;
            let body = close + 3;
            if seen == n {
                return hay.get(body..body + len).map(<[u8]>::to_vec);
            }
            seen += 1;
            from = body + len;
        }
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A connected client.
pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: usize,
    /// The greeting line.
    pub greeting: String,
}

impl Imap {
    /// Connects and reads the `* OK` greeting.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Imap {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone socket");
        let mut client = Imap {
            reader: BufReader::new(stream),
            writer,
            tag: 0,
            greeting: String::new(),
        };
        let greeting = client.line();
        assert!(
            greeting.starts_with(b"* OK"),
            "not an IMAP greeting: {:?}",
            String::from_utf8_lossy(&greeting)
        );
        client.greeting = String::from_utf8_lossy(&greeting).trim_end().to_string();
        client
    }

    /// One line including its CRLF.
    #[track_caller]
    fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|e| panic!("reading from the IMAP server: {e}"));
        assert!(n > 0, "the IMAP server closed the connection");
        line
    }

    /// Sends `TAG command` and reads the response up to the tagged status line.
    #[track_caller]
    pub fn command(&mut self, command: &str) -> Response {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .expect("send IMAP command");
        let prefix = format!("{tag} ");
        let mut untagged = Vec::new();
        loop {
            let line = self.line();
            if let Some(status) = line.strip_prefix(prefix.as_bytes()) {
                return Response {
                    status: String::from_utf8_lossy(status).trim_end().to_string(),
                    untagged,
                };
            }
            untagged.extend_from_slice(&line);
            // A line ending in `{N}` announces N bytes of literal, then the line goes on.
            let text = String::from_utf8_lossy(&line);
            let trimmed = text.trim_end_matches(['\r', '\n']);
            if let Some(open) = trimmed.rfind('{')
                && trimmed.ends_with('}')
                && let Ok(len) = trimmed[open + 1..trimmed.len() - 1].parse::<usize>()
            {
                let mut literal = vec![0u8; len];
                self.reader
                    .read_exact(&mut literal)
                    .unwrap_or_else(|e| panic!("reading a {len}-byte literal: {e}"));
                untagged.extend_from_slice(&literal);
            }
        }
    }

    /// `LOGIN user password` (both as quoted strings).
    pub fn login(&mut self, user: &str, password: &str) -> Response {
        self.command(&format!("LOGIN {} {}", quoted(user), quoted(password)))
    }
}

/// An IMAP quoted string.
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
