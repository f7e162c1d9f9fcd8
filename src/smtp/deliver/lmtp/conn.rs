//! One LMTP connection: commands out, replies in, every step under a timeout, with replies read in bounded
//! pieces so a misbehaving server cannot make us buffer without limit.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest reply line accepted (RFC 5321 allows 512 bytes; servers add some text).
const MAX_LINE: usize = 4096;
/// Most lines in one reply (the LHLO capability list is the longest).
const MAX_LINES: usize = 100;
/// Longest reply text kept in a failure reason.
const MAX_REASON: usize = 400;

/// Why the conversation broke off; always a temporary failure.
#[derive(Debug)]
pub(super) enum LinkError {
    /// A read or write did not finish in time.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// A read or write failed.
    Io(io::Error),
    /// The server sent something that is not an LMTP reply.
    Garbled(&'static str),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Timeout => f.write_str("LMTP server timed out"),
            LinkError::Closed => f.write_str("LMTP server closed the connection"),
            LinkError::Io(e) => write!(f, "LMTP connection failed: {e}"),
            LinkError::Garbled(why) => write!(f, "LMTP server sent a malformed reply ({why})"),
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset => LinkError::Closed,
            _ => LinkError::Io(e),
        }
    }
}

/// A complete (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The reply as one line for logs and SMTP reply texts: `550 5.1.1 <x> no such user`, control characters
    /// blanked, cut to a bounded length.
    pub fn text(&self) -> String {
        let joined = format!("{} {}", self.code, self.lines.join(" / "));
        let clean: String = joined
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_REASON)
            .collect();
        clean.trim_end().to_string()
    }

    /// Whether a LHLO reply advertises `keyword` (the first word of a line after the first, any case).
    pub fn advertises(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

/// A connection to an LMTP server.
pub(super) struct Conn<S> {
    stream: BufReader<S>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a connected stream; `timeout` bounds every later read or write.
    pub fn new(stream: S, timeout: Duration) -> Self {
        Conn {
            stream: BufReader::new(stream),
            timeout,
        }
    }

    /// Sends `bytes` and flushes them.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let stream = self.stream.get_mut();
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    /// Sends a command line (the CRLF is added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, LinkError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// Reads one reply, waiting at most the connection's timeout.
    pub async fn reply(&mut self) -> Result<Reply, LinkError> {
        self.reply_within(self.timeout).await
    }

    /// Reads one reply, waiting at most `timeout` for all of it.
    pub async fn reply_within(&mut self, timeout: Duration) -> Result<Reply, LinkError> {
        match tokio::time::timeout(timeout, self.read_reply()).await {
            Ok(result) => result,
            Err(_) => Err(LinkError::Timeout),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, LinkError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line().await?;
            let (line_code, last, text) = parse_line(&line)?;
            if code.is_some_and(|c| c != line_code) {
                return Err(LinkError::Garbled("reply code changes between lines"));
            }
            code = Some(line_code);
            lines.push(text);
            if last {
                return Ok(Reply {
                    code: line_code,
                    lines,
                });
            }
            if lines.len() >= MAX_LINES {
                return Err(LinkError::Garbled("too many reply lines"));
            }
        }
    }

    /// One line up to its LF (included), at most [`MAX_LINE`] bytes.
    async fn read_line(&mut self) -> Result<Vec<u8>, LinkError> {
        let mut line = Vec::new();
        loop {
            let buf = self.stream.fill_buf().await?;
            if buf.is_empty() {
                return Err(LinkError::Closed);
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > MAX_LINE {
                return Err(LinkError::Garbled("reply line too long"));
            }
            line.extend_from_slice(buf.get(..take).unwrap_or_default());
            self.stream.consume(take);
            if done {
                return Ok(line);
            }
        }
    }
}

/// Splits `250-text\r\n` into its code, whether it is the last line, and its text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), LinkError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .get(..3)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .ok_or(LinkError::Garbled("no reply code"))?;
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..600).contains(&code) {
        return Err(LinkError::Garbled("reply code out of range"));
    }
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, line.get(4..).unwrap_or_default()),
        Some(b'-') => (false, line.get(4..).unwrap_or_default()),
        Some(_) => return Err(LinkError::Garbled("bad separator after the reply code")),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse_into_code_continuation_and_text() {
        let (code, last, text) = parse_line(b"250-PIPELINING\r\n").unwrap();
        assert_eq!((code, last, text.as_str()), (250, false, "PIPELINING"));
        let (code, last, text) = parse_line(b"550 5.1.1 no such user\n").unwrap();
        assert_eq!(
            (code, last, text.as_str()),
            (550, true, "5.1.1 no such user")
        );
        let (code, last, text) = parse_line(b"354\r\n").unwrap();
        assert_eq!((code, last, text.as_str()), (354, true, ""));
        for bad in [
            &b"25\r\n"[..],
            b"abc def\r\n",
            b"250x\r\n",
            b"999 x\r\n",
            b"\r\n",
        ] {
            assert!(parse_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn reply_text_is_one_bounded_line_and_keywords_are_found() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx Hello".into(),
                "pipelining".into(),
                "SIZE 100\x07".into(),
            ],
        };
        assert!(reply.advertises("PIPELINING") && reply.advertises("size"));
        assert!(!reply.advertises("mx") && !reply.advertises("8BITMIME"));
        assert_eq!(reply.text(), "250 mx Hello / pipelining / SIZE 100");
        let long = Reply {
            code: 550,
            lines: vec!["x".repeat(5000)],
        };
        assert_eq!(long.text().len(), MAX_REASON);
    }

    #[tokio::test]
    async fn over_long_lines_and_endless_replies_are_refused() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut conn = Conn::new(client, Duration::from_secs(5));
        server
            .write_all(format!("250 {}\r\n", "x".repeat(MAX_LINE)).as_bytes())
            .await
            .unwrap();
        assert!(matches!(conn.reply().await, Err(LinkError::Garbled(_))));

        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut conn = Conn::new(client, Duration::from_secs(5));
        server
            .write_all("250-x\r\n".repeat(MAX_LINES + 1).as_bytes())
            .await
            .unwrap();
        assert!(matches!(conn.reply().await, Err(LinkError::Garbled(_))));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (client, _server) = tokio::io::duplex(64);
        let mut conn = Conn::new(client, Duration::from_millis(50));
        assert!(matches!(conn.reply().await, Err(LinkError::Timeout)));
    }
}
