//! A raw, blocking SMTP client for the `serve` tests: it sends exactly the bytes a test gives it (pipelined
//! commands, smuggling payloads, over-long lines) and parses replies strictly, so a test can assert the reply
//! codes byte for byte where a polished client such as lettre would hide them.
//!
//! Every read waits at most [`READ_TIMEOUT`] (or the client's own timeout), so a server that hangs fails the
//! test instead of hanging CI. TLS (STARTTLS or implicit) uses rustls with the ring provider and trusts only
//! the test CA's root. The `try_*` methods return errors instead of panicking, for the load and durability
//! senders that must survive a server killed under them.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, ServerName};

pub use crate::serve::reply::Reply;

/// How long any single read waits for the server before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket, plain or under TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A connected client. `banner` is the greeting it read on connect.
pub struct SmtpClient {
    conn: Option<Conn>,
    /// Bytes received but not yet parsed into a reply.
    pending: Vec<u8>,
    /// The greeting (220 ...) read when connecting.
    pub banner: Reply,
    timeout: Duration,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// A rustls client configuration trusting only `root`.
pub fn tls_config(root: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("add the test CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Runs the TLS handshake over `tcp` for `server_name`, trusting `root`.
fn handshake(
    tcp: TcpStream,
    root: &CertificateDer<'static>,
    server_name: &str,
) -> io::Result<Conn> {
    let name = ServerName::try_from(server_name.to_string()).map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(tls_config(root), name).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Conn::Tls(Box::new(stream)))
}

impl SmtpClient {
    /// Connects and reads the banner; panics if either fails.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> SmtpClient {
        SmtpClient::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Connects and reads the banner.
    pub fn try_connect(addr: SocketAddr) -> io::Result<SmtpClient> {
        let tcp = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
        SmtpClient::greet(Conn::Plain(tcp))
    }

    /// Connects with TLS from the first byte (the `submissions` listener) and reads the banner.
    #[track_caller]
    pub fn connect_tls(
        addr: SocketAddr,
        root: &CertificateDer<'static>,
        server_name: &str,
    ) -> SmtpClient {
        let open = || -> io::Result<SmtpClient> {
            let tcp = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
            tcp.set_read_timeout(Some(READ_TIMEOUT))?;
            SmtpClient::greet(handshake(tcp, root, server_name)?)
        };
        open().unwrap_or_else(|e| panic!("TLS connect to {addr}: {e}"))
    }

    fn greet(conn: Conn) -> io::Result<SmtpClient> {
        conn.tcp().set_nodelay(true)?;
        let mut client = SmtpClient {
            conn: Some(conn),
            pending: Vec::new(),
            banner: Reply {
                code: 0,
                lines: Vec::new(),
            },
            timeout: READ_TIMEOUT,
        };
        client.banner = client.try_read_reply()?;
        Ok(client)
    }

    /// Changes how long each read waits (for replies a server may legitimately take long to give).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn conn(&mut self) -> io::Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection lost"))
    }

    /// Sends `bytes` as they are (no CRLF added).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let conn = self.conn()?;
        conn.write_all(bytes)?;
        conn.flush()
    }

    /// Sends `bytes` as they are; panics on error.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("send to the server: {e}"));
    }

    /// Reads more bytes into `pending`; `Ok(0)` at end of stream.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("no reply from the server in time"));
        }
        let conn = self.conn()?;
        conn.tcp().set_read_timeout(Some(left))?;
        let mut buf = [0u8; 16 * 1024];
        // A signal arriving while the read waits (EINTR) is no answer from the server: wait again.
        let read = loop {
            match conn.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out("no reply from the server in time"))
            }
            Err(e) => Err(e),
        }
    }

    /// Takes one complete line (CRLF or LF ended) out of `pending`, if there is one.
    fn take_line(&mut self) -> Option<String> {
        let end = self.pending.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.pending.drain(..=end).collect();
        let text = String::from_utf8_lossy(&line);
        Some(text.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Reads one (possibly multi-line) reply.
    pub fn try_read_reply(&mut self) -> io::Result<Reply> {
        let deadline = Instant::now() + self.timeout;
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let Some(line) = self.take_line() else {
                if self.fill(deadline)? == 0 {
                    self.conn = None;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed by the server (after {lines:?})"),
                    ));
                }
                continue;
            };
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad reply line {line:?}"),
                )
            };
            let digits = line.get(..3).ok_or_else(bad)?;
            let this: u16 = digits.parse().map_err(|_| bad())?;
            if *code.get_or_insert(this) != this {
                return Err(bad());
            }
            let sep = line.as_bytes().get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_string());
            match sep {
                Some(b'-') => continue,
                Some(b' ') | None => return Ok(Reply { code: this, lines }),
                Some(_) => return Err(bad()),
            }
        }
    }

    /// Reads one reply; panics on timeout or a closed connection.
    #[track_caller]
    pub fn read_reply(&mut self) -> Reply {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    /// Sends `line` plus CRLF and reads the reply.
    pub fn try_command(&mut self, line: &str) -> io::Result<Reply> {
        self.try_send(format!("{line}\r\n").as_bytes())?;
        self.try_read_reply()
    }

    /// Sends `line` plus CRLF and reads the reply; panics on I/O errors.
    #[track_caller]
    pub fn command(&mut self, line: &str) -> Reply {
        self.try_command(line)
            .unwrap_or_else(|e| panic!("command {line:?}: {e}"))
    }

    /// `EHLO name`, asserting a 250.
    #[track_caller]
    pub fn ehlo(&mut self, name: &str) -> Reply {
        let reply = self.command(&format!("EHLO {name}"));
        assert_eq!(reply.code, 250, "EHLO refused: {}", reply.raw());
        reply
    }

    /// Whether bytes the server sent are waiting unread (after waiting up to `wait` for some).
    pub fn has_unread(&mut self, wait: Duration) -> bool {
        if !self.pending.is_empty() {
            return true;
        }
        matches!(self.fill(Instant::now() + wait), Ok(n) if n > 0)
    }

    /// `STARTTLS` (asserting 220), then the TLS handshake trusting `root` for `server_name`. Panics if the
    /// server sent anything after its 220 before the handshake (it must not answer commands pipelined after
    /// STARTTLS in plaintext).
    #[track_caller]
    pub fn starttls(&mut self, root: &CertificateDer<'static>, server_name: &str) {
        self.command("STARTTLS").expect(220, "");
        self.upgrade(root, server_name);
    }

    /// The TLS handshake on the current plain connection (after the server's 220 to STARTTLS was read).
    #[track_caller]
    pub fn upgrade(&mut self, root: &CertificateDer<'static>, server_name: &str) {
        assert!(
            self.pending.is_empty(),
            "the server sent plaintext after its STARTTLS reply: {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        let Some(Conn::Plain(tcp)) = self.conn.take() else {
            panic!("STARTTLS on a connection that is not plain");
        };
        tcp.set_read_timeout(Some(self.timeout)).expect("timeout");
        let conn = handshake(tcp, root, server_name)
            .unwrap_or_else(|e| panic!("TLS handshake after STARTTLS: {e}"));
        self.conn = Some(conn);
    }

    /// [`SmtpClient::starttls`] with errors (a reply other than 220, a failed handshake) returned instead of
    /// panics, for senders that must survive a server killed under them.
    pub fn try_starttls(
        &mut self,
        root: &CertificateDer<'static>,
        server_name: &str,
    ) -> io::Result<()> {
        let reply = self.try_command("STARTTLS")?;
        if reply.code != 220 || !self.pending.is_empty() {
            return Err(io::Error::other(format!("STARTTLS: {}", reply.raw())));
        }
        let Some(Conn::Plain(tcp)) = self.conn.take() else {
            return Err(io::Error::other(
                "STARTTLS on a connection that is not plain",
            ));
        };
        tcp.set_read_timeout(Some(self.timeout))?;
        self.conn = Some(handshake(tcp, root, server_name)?);
        Ok(())
    }

    /// `AUTH PLAIN` with an initial response; returns the reply.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Reply {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {token}"))
    }

    /// MAIL, each RCPT (each asserted 250), DATA (asserted 354), then the message (dot-stuffed, terminated);
    /// returns the reply to the end of data.
    #[track_caller]
    pub fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> Reply {
        self.command(&format!("MAIL FROM:<{from}>")).expect(250, "");
        for rcpt in rcpts {
            self.command(&format!("RCPT TO:<{rcpt}>")).expect(250, "");
        }
        self.command("DATA").expect(354, "");
        self.send(&data_bytes(message));
        self.read_reply()
    }

    /// The same transaction as [`SmtpClient::send_mail`], with errors (of any kind, including a non-2xx/3xx
    /// reply) returned instead of panics; `Ok` carries the final reply.
    pub fn try_send_mail(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &[u8],
    ) -> io::Result<Reply> {
        let refused = |r: Reply| io::Error::other(format!("refused: {}", r.raw()));
        let r = self.try_command(&format!("MAIL FROM:<{from}>"))?;
        if r.code != 250 {
            return Err(refused(r));
        }
        for rcpt in rcpts {
            let r = self.try_command(&format!("RCPT TO:<{rcpt}>"))?;
            if r.code != 250 {
                return Err(refused(r));
            }
        }
        let r = self.try_command("DATA")?;
        if r.code != 354 {
            return Err(refused(r));
        }
        self.try_send(&data_bytes(message))?;
        self.try_read_reply()
    }

    /// Asserts that the server closes the connection (end of stream or reset) without sending anything more.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + self.timeout;
        loop {
            assert!(
                self.pending.is_empty(),
                "expected the connection to be closed, got {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            match self.fill(deadline) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    panic!("expected the connection to be closed, it stayed open")
                }
                Err(_) => return,
            }
        }
    }
}

/// The DATA payload for `message`: leading dots doubled, a CRLF added if missing, then `.` CRLF.
pub fn data_bytes(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
