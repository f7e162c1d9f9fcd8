//! The session's socket: plain or TLS, with a read buffer that keeps pipelined bytes and a write buffer that
//! is flushed only when the client is waiting for answers.
//!
//! Pipelining (RFC 2920) falls out of this shape: replies are queued while more command lines are already in
//! the read buffer, and flushed when the buffer runs dry (the client waits for them) or before anything that
//! must be answered alone (the 354 of DATA, the 220 of STARTTLS, an AUTH challenge).
//!
//! Idle connections cost little: a plain socket waits for readability before any read buffer is allocated, so
//! ten thousand idle clients hold ten thousand small tasks, not ten thousand buffers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::smtp::inbound::command::Reply;

/// Read size for one call; a message arrives in chunks of this.
const CHUNK: usize = 16 * 1024;
/// A read buffer grown beyond this (by a large message) is given back once it is empty.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The transport under a session.
pub enum Stream {
    /// Cleartext TCP.
    Plain(TcpStream),
    /// TLS over TCP (after STARTTLS, or from the start on the submissions listener).
    Tls(Box<TlsStream<TcpStream>>),
    /// Transient, while STARTTLS swaps the transport.
    Closed,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// What reading a command line produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its line ending.
    Line(Vec<u8>),
    /// A line longer than the limit; it has been skipped up to and including its LF.
    TooLong,
    /// The client closed the connection.
    Eof,
}

/// How long [`Conn::finish`] keeps reading (and discarding) after its last reply before closing.
const LINGER: Duration = Duration::from_secs(2);
/// How much [`Conn::finish`] reads at most before closing.
const LINGER_BYTES: usize = 64 * 1024;

/// A stream with its buffers.
pub struct Conn {
    /// The transport.
    pub stream: Stream,
    /// Bytes read and not yet consumed (pipelined commands, message data).
    pub rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Skipping the rest of an over-long line.
    skipping: bool,
    /// How long sending the queued replies may take: a client that stops reading (while pipelining on, say)
    /// must not hold the session forever on a full socket buffer.
    pub write_timeout: Duration,
    /// The code of the last reply queued (0 before any), for the session's error count.
    pub last_code: u16,
    /// A write timed out: part of the buffer may have gone out, so nothing more is sent (a later flush would
    /// repeat those bytes) and [`Conn::finish`] closes at once.
    broken: bool,
}

impl Conn {
    /// Wraps a fresh stream.
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            skipping: false,
            write_timeout: Duration::from_secs(300),
            last_code: 0,
            broken: false,
        }
    }

    /// Queues a reply for the client (all its lines), to go out at the next flush.
    pub fn queue(&mut self, reply: &Reply) {
        self.last_code = reply.code();
        self.wbuf.extend_from_slice(&reply.to_bytes());
    }

    /// Sends everything queued, within [`Conn::write_timeout`].
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let send = async {
            if !self.wbuf.is_empty() {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
                if self.wbuf.capacity() > KEEP_CAPACITY {
                    self.wbuf = Vec::new();
                }
            }
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, send).await {
            Ok(r) => r,
            Err(_) => {
                self.broken = true;
                self.wbuf = Vec::new();
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    /// Sends what is queued and closes the sending side (FIN, or TLS close_notify), so the last reply reaches
    /// the client before the socket goes away.
    ///
    /// Then input still arriving is read and thrown away for a moment (at most [`LINGER`] or [`LINGER_BYTES`]):
    /// closing a socket with unread input makes the kernel send a reset, which can destroy the last reply
    /// before the client reads it, exactly when it matters (a 554 to a client that talked before the greeting,
    /// the 421 of the error limit, both sent to clients that are still writing).
    pub async fn finish(&mut self) -> io::Result<()> {
        if self.broken {
            return Ok(());
        }
        self.flush().await?;
        let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
        let drain = async {
            let mut sink = vec![0u8; CHUNK];
            let mut drained = 0;
            while drained < LINGER_BYTES {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
        Ok(())
    }

    /// Whether the client sent anything before being greeted: waits up to `pause` for input (zero: looks only
    /// at what has already arrived), without consuming it. Only a cleartext socket can tell; under implicit
    /// TLS the handshake already made the client wait for the server.
    ///
    /// Bytes already in the socket when the greeting is about to be sent were sent before the client could
    /// have seen it, so a `true` is never a false alarm. A client whose early bytes are still in flight at
    /// that moment is not caught; a `pause` gives them time to arrive (sendmail's `greet_pause`, nginx's
    /// `smtp_greeting_delay`).
    pub async fn input_before_greeting(&mut self, pause: Duration) -> bool {
        let Stream::Plain(tcp) = &self.stream else {
            return false;
        };
        if !pause.is_zero() {
            let mut byte = [0u8; 1];
            if let Ok(Ok(n)) = tokio::time::timeout(pause, tcp.peek(&mut byte)).await {
                return n > 0;
            }
        }
        // A non-blocking peek that does not depend on the reactor having seen the socket yet: tokio's own
        // try_* methods answer "would block" until it has. The std socket is already non-blocking.
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return false;
        };
        let Ok(std_tcp) = tcp.into_std() else {
            return false;
        };
        let mut byte = [0u8; 1];
        let waiting = matches!(std_tcp.peek(&mut byte), Ok(n) if n > 0);
        match TcpStream::from_std(std_tcp) {
            Ok(tcp) => self.stream = Stream::Plain(tcp),
            Err(_) => return true,
        }
        waiting
    }

    /// Reads more bytes into the read buffer, waiting at most `timeout`. `Ok(0)` at end of stream.
    ///
    /// Cancel-safe (the shutdown signal may interrupt it): bytes are appended only by a completed read.
    pub async fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        if self.rbuf.is_empty() {
            // Between commands an idle client holds no buffer at all.
            self.rbuf = Vec::new();
        }
        let read = async {
            loop {
                match &mut self.stream {
                    Stream::Plain(tcp) => {
                        tcp.readable().await?;
                        self.rbuf.reserve(CHUNK);
                        match tcp.try_read_buf(&mut self.rbuf) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            other => return other,
                        }
                    }
                    other => {
                        self.rbuf.reserve(CHUNK);
                        return other.read_buf(&mut self.rbuf).await;
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Removes `n` consumed bytes from the front of the read buffer.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.drain(..n.min(self.rbuf.len()));
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
            self.rbuf = Vec::new();
        }
    }

    /// Drops everything the client sent but the server has not read: after STARTTLS, bytes sent in clear
    /// behind the command must never be treated as commands of the TLS session (CVE-2011-0411).
    pub fn discard_input(&mut self) {
        self.rbuf = Vec::new();
    }

    /// Takes the next line from the buffer if one is complete; `None` when more input is needed.
    pub fn take_line(&mut self, max: usize) -> Option<Line> {
        loop {
            let lf = self.rbuf.iter().position(|&b| b == b'\n');
            if self.skipping {
                match lf {
                    Some(i) => {
                        self.consume(i + 1);
                        self.skipping = false;
                        return Some(Line::TooLong);
                    }
                    None => {
                        self.rbuf.clear();
                        return None;
                    }
                }
            }
            match lf {
                Some(i) if i < max => {
                    let mut line: Vec<u8> = self.rbuf[..i].to_vec();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.consume(i + 1);
                    return Some(Line::Line(line));
                }
                Some(_) => self.skipping = true,
                None if self.rbuf.len() >= max => self.skipping = true,
                None => return None,
            }
        }
    }

    /// Reads the next command line, flushing queued replies first when the client must be waiting for them.
    ///
    /// `timeout` bounds the whole line, not each read: a client dribbling one byte at a time (slowloris) is cut
    /// off when the line is not complete in time, however steadily the bytes come (Postfix's
    /// `smtpd_per_record_deadline`). The error is [`io::ErrorKind::TimedOut`].
    pub async fn read_line(&mut self, max: usize, timeout: Duration) -> io::Result<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.take_line(max) {
                return Ok(line);
            }
            self.flush().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if self.fill(left).await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }
}
