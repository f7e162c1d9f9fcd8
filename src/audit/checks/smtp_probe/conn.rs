//! One SMTP connection as the probe drives it: send a command line, read one reply, every read bounded by the
//! timeout (the whole reply, so a server dripping one byte at a time cannot hold the probe) and by the caps of
//! [`super::reply`].

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::reply::{MAX_LINE, Reply, ReplyBuilder, ReplyError};

/// Why a step of the dialogue got no usable reply.
#[derive(Debug)]
pub enum ConnError {
    /// Nothing (complete) within the timeout.
    Timeout(Duration),
    /// The server closed the connection.
    Closed,
    /// A socket error.
    Io(std::io::Error),
    /// The server sent something that is not an SMTP reply.
    Reply(ReplyError),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Timeout(t) => write!(f, "no reply within {} s", t.as_secs()),
            ConnError::Closed => write!(f, "the server closed the connection"),
            ConnError::Io(e) => write!(f, "connection error: {e}"),
            ConnError::Reply(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl From<ReplyError> for ConnError {
    fn from(e: ReplyError) -> Self {
        ConnError::Reply(e)
    }
}

/// A plain or TLS stream with a read buffer and the per-step timeout.
pub struct Conn<S> {
    reader: BufReader<S>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S, timeout: Duration) -> Self {
        Conn {
            reader: BufReader::new(stream),
            timeout,
        }
    }

    /// Reads one complete reply within the timeout.
    pub async fn read_reply(&mut self) -> Result<Reply, ConnError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_reply_untimed())
            .await
            .unwrap_or(Err(ConnError::Timeout(timeout)))
    }

    async fn read_reply_untimed(&mut self) -> Result<Reply, ConnError> {
        let mut builder = ReplyBuilder::default();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let limit = (MAX_LINE + 1) as u64;
            let n = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut line)
                .await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            if !line.ends_with(b"\n") {
                return Err(if line.len() > MAX_LINE {
                    ConnError::Reply(ReplyError::LineTooLong)
                } else {
                    ConnError::Closed
                });
            }
            if let Some(reply) = builder.push(&line)? {
                return Ok(reply);
            }
        }
    }

    /// Sends `line` (CRLF added) and reads the reply, each within the timeout.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ConnError> {
        let timeout = self.timeout;
        let data = format!("{line}\r\n");
        let stream = self.reader.get_mut();
        let write = async {
            stream.write_all(data.as_bytes()).await?;
            stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| ConnError::Timeout(timeout))??;
        self.read_reply().await
    }

    /// Best-effort end of the session: RSET and QUIT (replies ignored), then a clean shutdown.
    pub async fn finish(mut self) {
        for command in ["RSET", "QUIT"] {
            if self.command(command).await.is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(self.timeout, self.reader.get_mut().shutdown()).await;
    }

    /// The stream for a TLS handshake after `220` to STARTTLS. Anything the server already sent beyond that
    /// reply would be read as if it came through TLS (the STARTTLS injection flaw), so it is an error.
    pub fn into_stream(self) -> Result<S, String> {
        if self.reader.buffer().is_empty() {
            Ok(self.reader.into_inner())
        } else {
            Err(format!(
                "the server sent {} bytes of plain text after its reply to STARTTLS",
                self.reader.buffer().len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn replies(server_says: &[u8]) -> Vec<Result<Reply, String>> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        server.write_all(server_says).await.unwrap();
        drop(server);
        let mut conn = Conn::new(client, Duration::from_secs(1));
        let mut out = Vec::new();
        loop {
            let r = conn.read_reply().await.map_err(|e| e.to_string());
            let stop = r.is_err();
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn reads_consecutive_multi_line_replies() {
        let got = replies(b"220 a\r\n250-b\r\n250 c\r\n").await;
        assert_eq!(got[0].as_ref().unwrap().code, 220);
        assert_eq!(got[1].as_ref().unwrap().lines, ["b", "c"]);
        assert_eq!(got[2], Err("the server closed the connection".into()));
    }

    #[tokio::test]
    async fn overlong_line_and_half_line_are_errors() {
        let mut long = b"220 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 5000));
        assert!(
            replies(&long).await[0]
                .as_ref()
                .unwrap_err()
                .contains("longer than")
        );
        assert_eq!(
            replies(b"220 no line end").await[0],
            Err("the server closed the connection".into())
        );
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (client, _server) = tokio::io::duplex(1024);
        let mut conn = Conn::new(client, Duration::from_millis(50));
        assert!(matches!(
            conn.read_reply().await,
            Err(ConnError::Timeout(_))
        ));
    }
}
