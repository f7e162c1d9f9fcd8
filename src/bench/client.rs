//! The bench's minimal SMTP client: one TCP connection (upgraded to TLS after STARTTLS when asked), reading
//! multi-line replies with a deadline.
//!
//! Only what a load generator needs: greeting, EHLO (noting PIPELINING, SIZE and STARTTLS), the TLS upgrade,
//! sending command lines or raw payloads, reading replies. Every read has a deadline and a line-length cap, so a
//! hung or hostile server costs the bench a counted error, never a hang or unbounded memory. The STARTTLS and
//! AUTH conversation itself is in [`super::login`].

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest reply line accepted (RFC 5321 allows 512; servers add text).
const MAX_LINE: u64 = 4096;
/// Most lines in one reply (a long EHLO list is some twenty).
const MAX_LINES: usize = 100;

/// One SMTP reply: its code and the text of every line (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Text of each line, in order.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of the last line (for a 250 after DATA: `2.0.0 Ok: queued as <id>`).
    pub fn text(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }

    /// `code text` of the last line, for error messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.text())
    }

    /// True for 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Parses one reply line (without CRLF) into code, "more lines follow", and text.
pub fn parse_line(line: &str) -> Option<(u16, bool, &str)> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    match line.as_bytes().get(3) {
        None => Some((code, false, "")),
        Some(b' ') => Some((code, false, &line[4..])),
        Some(b'-') => Some((code, true, &line[4..])),
        Some(_) => None,
    }
}

/// What the client's connection is: plain TCP, or TLS over it after STARTTLS. A trait object, so one
/// [`Client`] type serves both (the dynamic call costs nothing next to a network round trip).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An SMTP client connection after the greeting and EHLO.
pub struct Client {
    stream: BufReader<Box<dyn Io>>,
    /// The server's address (the TLS server name, as the bench knows no host name).
    peer: IpAddr,
    /// The server offered PIPELINING (in its last EHLO reply).
    pub pipelining: bool,
    /// The server offered SIZE.
    pub size: bool,
    /// The server offered STARTTLS.
    pub starttls: bool,
}

impl Client {
    /// Reads the 220 greeting from `stream` and says EHLO as `helo`; any other answer is an error.
    pub async fn greet(stream: TcpStream, helo: &str, until: Instant) -> io::Result<Client> {
        let peer = stream.peer_addr()?.ip();
        let mut client = Client {
            stream: BufReader::new(Box::new(stream)),
            peer,
            pipelining: false,
            size: false,
            starttls: false,
        };
        let banner = client.reply(until).await?;
        if banner.code != 220 {
            return Err(protocol(format!("greeting was {}", banner.summary())));
        }
        client.ehlo(helo, until).await?;
        Ok(client)
    }

    /// Says EHLO as `helo` and notes the extensions offered (again after STARTTLS, as RFC 3207 requires);
    /// anything but 250 is an error.
    pub async fn ehlo(&mut self, helo: &str, until: Instant) -> io::Result<()> {
        let ehlo = self
            .command(format!("EHLO {helo}\r\n").as_bytes(), until)
            .await?;
        if ehlo.code != 250 {
            return Err(protocol(format!("EHLO answered {}", ehlo.summary())));
        }
        (self.pipelining, self.size, self.starttls) = (false, false, false);
        for ext in ehlo.lines.iter().skip(1) {
            let keyword = ext.split_whitespace().next().unwrap_or("");
            self.pipelining |= keyword.eq_ignore_ascii_case("PIPELINING");
            self.size |= keyword.eq_ignore_ascii_case("SIZE");
            self.starttls |= keyword.eq_ignore_ascii_case("STARTTLS");
        }
        Ok(())
    }

    /// Sends one command line (with its CRLF) and reads the reply.
    pub async fn command(&mut self, line: &[u8], until: Instant) -> io::Result<Reply> {
        self.send(line).await?;
        self.reply(until).await
    }

    /// The TLS handshake after the server's `220` to STARTTLS, with `config`, finished by `until`. The
    /// extensions are forgotten: say EHLO again. Anything the server sent after its 220 and before the
    /// handshake is a protocol error (RFC 3207 says nothing may come in between; a server that does could be
    /// injecting plain-text replies into the TLS session).
    pub async fn upgrade(self, config: Arc<ClientConfig>, until: Instant) -> io::Result<Client> {
        if !self.stream.buffer().is_empty() {
            return Err(protocol(
                "the server sent data after its 220 to STARTTLS".into(),
            ));
        }
        let name = ServerName::IpAddress(self.peer.into());
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout_at(until, connector.connect(name, self.stream.into_inner()))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Client {
            stream: BufReader::new(Box::new(tls)),
            peer: self.peer,
            pipelining: false,
            size: false,
            starttls: false,
        })
    }

    /// Writes `bytes` in one call (commands, pipelined groups, or a dot-stuffed message).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    /// Reads one complete (possibly multi-line) reply, failing at `until`.
    pub async fn reply(&mut self, until: Instant) -> io::Result<Reply> {
        tokio::time::timeout_at(until, self.read_reply())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))?
    }

    async fn read_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        let mut buf = Vec::with_capacity(128);
        loop {
            buf.clear();
            let n = (&mut self.stream)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            if buf.last() != Some(&b'\n') {
                return Err(protocol("reply line too long".into()));
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            let Some((code, more, text)) = parse_line(line) else {
                return Err(protocol(format!("malformed reply line {line:?}")));
            };
            lines.push(text.to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(protocol("reply has too many lines".into()));
            }
        }
    }

    /// Sends QUIT and waits (briefly) for the 221, ignoring failures: the session is over either way.
    pub async fn quit(mut self, until: Instant) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply(until).await;
        }
    }
}

/// An error for a server that answered something the bench cannot continue after.
pub fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        assert_eq!(
            parse_line("250-mx.example.test"),
            Some((250, true, "mx.example.test"))
        );
        assert_eq!(
            parse_line("250 2.0.0 Ok: queued as X1"),
            Some((250, false, "2.0.0 Ok: queued as X1"))
        );
        assert_eq!(parse_line("354"), Some((354, false, "")));
        assert_eq!(parse_line("25"), None);
        assert_eq!(parse_line("abc hello"), None);
        assert_eq!(parse_line("250_x"), None);
        assert_eq!(parse_line("999 x"), None);
    }
}
