//! One SMTP session: the state of a connection and the loop that reads commands and sends replies.
//!
//! The loop (this file) owns the socket; the stages own the decisions. Each stage takes the session state and
//! a parsed command and returns a [`Reply`]; none of them writes to the socket, which keeps pipelining correct
//! (replies are queued in order and flushed when the client waits) and keeps the stages testable:
//!
//! - [`ehlo`]: EHLO/HELO and the capability list;
//! - [`auth`]: AUTH PLAIN and LOGIN, submission listeners only, only under TLS, with failure throttling;
//! - [`mail`]: MAIL FROM: SIZE, sender ownership for logged-in users, SPF and the connect-time checks for
//!   mail from other servers;
//! - [`rcpt`]: RCPT TO: recipient resolution, relay policy, quotas, the recipient limit;
//! - [`data`]: after the message is read: the checks, trace headers, delivery, the final reply.
//!
//! The DATA bytes and the STARTTLS switch need the socket, so they are driven from here.

mod auth;
mod data;
mod ehlo;
pub mod io;
mod mail;
mod rcpt;
mod received;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use self::io::{Conn, Line, Stream};
use crate::model::Address;
use crate::smtp::checks::{ConnectResult, SpfResult};
use crate::smtp::command::{self, Command, MailParams, Reply, ReversePath};
use crate::smtp::data::{DataReader, Limits as DataLimits, Progress};
use crate::smtp::deliver::Target;
use crate::smtp::server::{Server, stopping};
use crate::smtp::settings::ListenerKind;

/// The longest command line accepted, CRLF included (Postfix's `line_length_limit`); longer lines get 500.
pub const MAX_COMMAND_LINE: usize = 2048;

/// What the session knows about its client and the transaction in progress.
pub struct Session {
    server: Arc<Server>,
    kind: ListenerKind,
    peer: SocketAddr,
    /// `TLSv1.3:TLS13_...` once TLS is up.
    tls: Option<String>,
    /// The EHLO/HELO name, and whether it was EHLO.
    helo: Option<(String, bool)>,
    /// The authenticated user.
    login: Option<Address>,
    /// iprev and DNSBL, computed once per connection when the first transaction starts (MX listener only).
    connect_checks: Option<ConnectResult>,
    /// The transaction in progress (after MAIL FROM).
    txn: Option<Transaction>,
}

/// One mail transaction: MAIL FROM, the accepted recipients, and what the checks said so far.
pub struct Transaction {
    /// Queue id, for the reply, the Received header and the log line.
    id: String,
    /// The envelope sender as text (`""` for `<>`).
    sender: String,
    /// MAIL FROM parameters.
    params: MailParams,
    /// SPF of the sender (MX listener).
    spf: Option<SpfResult>,
    /// Every accepted RCPT, as the client wrote it.
    recipients: Vec<String>,
    /// Where the message goes: each mailbox once, however many RCPTs lead to it.
    targets: Vec<Target>,
    /// Addresses in other domains (a logged-in user's recipients, alias targets outside): queued for delivery.
    remote: Vec<String>,
    /// Mailbox quotas in bytes (0 = none) and usage seen at RCPT, per target.
    quotas: Vec<(u64, u64)>,
    /// RCPTs refused, with the reply code, for the log line.
    refused: Vec<String>,
    /// Alias expansions, for the log line.
    via: Vec<String>,
}

/// What the loop does after a reply.
enum Next {
    /// Read the next command.
    Continue,
    /// Flush and close the connection.
    Close,
}

impl Session {
    /// Runs a session to its end on an accepted connection. Never panics on client input; every I/O error ends
    /// the session quietly (the client went away).
    pub async fn run(server: Arc<Server>, kind: ListenerKind, peer: SocketAddr, stream: Stream) {
        let mut session = Session {
            server,
            kind,
            peer,
            tls: None,
            helo: None,
            login: None,
            connect_checks: None,
            txn: None,
        };
        let mut conn = Conn::new(stream);
        if let Stream::Tls(tls) = &conn.stream {
            session.tls = Some(crate::smtp::server::tls::describe(tls.get_ref().1));
        }
        let banner = Reply::new(
            220,
            None,
            format!("{} ESMTP mailctl", session.server.settings.hostname),
        );
        conn.queue(&banner.to_bytes());
        let _ = session.serve(&mut conn).await;
        session.abandon("connection closed");
    }

    async fn serve(&mut self, conn: &mut Conn) -> std::io::Result<()> {
        let mut shutdown = self.server.shutdown.clone();
        loop {
            let timeout = self.server.settings.limits.command_timeout;
            let line = if self.txn.is_none() && conn.rbuf.is_empty() {
                // Idle between transactions: a shutdown ends the session here, never mid-transaction.
                conn.flush().await?;
                tokio::select! {
                    line = conn.read_line(MAX_COMMAND_LINE, timeout) => line,
                    _ = stopping(&mut shutdown) => {
                        let bye = Reply::new(421, Some((4, 3, 2)), format!(
                            "{} shutting down, try again later", self.server.settings.hostname));
                        conn.queue(&bye.to_bytes());
                        return conn.flush().await;
                    }
                }
            } else {
                conn.read_line(MAX_COMMAND_LINE, timeout).await
            };
            let line = match line {
                Ok(Line::Line(l)) => l,
                Ok(Line::TooLong) => {
                    self.server.metrics.rejected("protocol");
                    conn.queue(&Reply::new(500, Some((5, 5, 2)), "Line too long").to_bytes());
                    continue;
                }
                Ok(Line::Eof) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.server.metrics.rejected("timeout");
                    let bye = Reply::new(421, Some((4, 4, 2)), "Timeout, closing connection");
                    conn.queue(&bye.to_bytes());
                    return conn.flush().await;
                }
                Err(e) => return Err(e),
            };
            let command = match command::parse(&line) {
                Ok(c) => c,
                Err(e) => {
                    self.server.metrics.rejected("protocol");
                    conn.queue(&e.reply().to_bytes());
                    continue;
                }
            };
            match self.dispatch(conn, command).await? {
                Next::Continue => {}
                Next::Close => return conn.flush().await,
            }
        }
    }

    async fn dispatch(&mut self, conn: &mut Conn, command: Command) -> std::io::Result<Next> {
        let reply = match command {
            Command::Ehlo(name) => self.ehlo(name, true),
            Command::Helo(name) => self.ehlo(name, false),
            // The larger stages are boxed: an idle session's future then holds only what waiting for a line
            // needs, which is what ten thousand idle connections cost.
            Command::StartTls => return Box::pin(self.starttls(conn)).await,
            Command::Auth { mechanism, initial } => {
                return Box::pin(self.auth(conn, &mechanism, initial)).await;
            }
            Command::Mail { from, params } => Box::pin(self.mail(from, params)).await,
            Command::Rcpt { to, params } => Box::pin(self.rcpt(to, params)).await,
            Command::Data => return Box::pin(self.data(conn)).await,
            Command::Bdat { .. } => Reply::new(502, Some((5, 5, 1)), "BDAT not implemented"),
            Command::Rset => {
                self.abandon("reset");
                Reply::new(250, Some((2, 0, 0)), "Ok")
            }
            Command::Noop => Reply::new(250, Some((2, 0, 0)), "Ok"),
            Command::Vrfy(_) => Reply::new(
                252,
                Some((2, 5, 0)),
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Expn(_) => Reply::new(502, Some((5, 5, 1)), "EXPN not available"),
            Command::Help => Reply::new(214, Some((2, 0, 0)), "See RFC 5321"),
            Command::Quit => {
                self.abandon("quit");
                let bye = Reply::new(221, Some((2, 0, 0)), "Bye");
                conn.queue(&bye.to_bytes());
                return Ok(Next::Close);
            }
        };
        conn.queue(&reply.to_bytes());
        Ok(Next::Continue)
    }

    /// STARTTLS: answer 220, drop anything pipelined behind the command, handshake, and forget everything the
    /// client said in clear (RFC 3207 4.2: the session starts over, EHLO included).
    async fn starttls(&mut self, conn: &mut Conn) -> std::io::Result<Next> {
        let tls = match (&self.server.tls, &conn.stream) {
            (Some(tls), Stream::Plain(_)) => tls.acceptor(),
            (None, _) => {
                conn.queue(&Reply::new(502, Some((5, 5, 1)), "STARTTLS not available").to_bytes());
                return Ok(Next::Continue);
            }
            (Some(_), _) => {
                conn.queue(&Reply::new(503, Some((5, 5, 1)), "TLS already active").to_bytes());
                return Ok(Next::Continue);
            }
        };
        if self.helo.is_none() {
            conn.queue(&Reply::new(503, Some((5, 5, 1)), "Send EHLO first").to_bytes());
            return Ok(Next::Continue);
        }
        conn.queue(&Reply::new(220, Some((2, 0, 0)), "Ready to start TLS").to_bytes());
        conn.flush().await?;
        conn.discard_input();
        let Stream::Plain(tcp) = std::mem::replace(&mut conn.stream, Stream::Closed) else {
            return Ok(Next::Close);
        };
        let handshake = tls.accept(tcp);
        match tokio::time::timeout(self.server.settings.limits.command_timeout, handshake).await {
            Ok(Ok(stream)) => {
                self.tls = Some(crate::smtp::server::tls::describe(stream.get_ref().1));
                conn.stream = Stream::Tls(Box::new(stream));
                self.abandon("starttls");
                self.helo = None;
                Ok(Next::Continue)
            }
            Ok(Err(e)) => {
                tracing::debug!(client = %self.peer.ip(), error = %e, "TLS handshake failed");
                Ok(Next::Close)
            }
            Err(_) => Ok(Next::Close),
        }
    }

    /// DATA: 354, read the message with the smuggling-safe reader, then hand it to the data stage.
    async fn data(&mut self, conn: &mut Conn) -> std::io::Result<Next> {
        if let Some(refusal) = self.data_refusal() {
            conn.queue(&refusal.to_bytes());
            return Ok(Next::Continue);
        }
        conn.queue(&Reply::new(354, None, "End data with <CR><LF>.<CR><LF>").to_bytes());
        conn.flush().await?;
        let limits = DataLimits {
            max_size: self.server.settings.limits.max_message_size,
            max_line: DataLimits::RFC_MAX_LINE,
        };
        let mut reader = DataReader::new(limits);
        let mut message = Vec::with_capacity(8192);
        let outcome = loop {
            let progress = reader.feed(&conn.rbuf, &mut message);
            match progress {
                Progress::NeedMore => {
                    let n = conn.rbuf.len();
                    conn.consume(n);
                    match conn.fill(self.server.settings.limits.data_timeout).await {
                        Ok(0) => return Ok(Next::Close),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            self.server.metrics.rejected("timeout");
                            self.abandon("timeout during DATA");
                            let bye =
                                Reply::new(421, Some((4, 4, 2)), "Timeout, closing connection");
                            conn.queue(&bye.to_bytes());
                            return Ok(Next::Close);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Progress::Done { consumed } => {
                    conn.consume(consumed);
                    break Ok(message);
                }
                Progress::Rejected { consumed, error } => {
                    conn.consume(consumed);
                    break Err(error);
                }
            }
        };
        let received_at = Instant::now();
        let reply = match outcome {
            Ok(message) => self.finish_data(message, received_at).await,
            Err(error) => {
                let (code, enhanced, text) = error.reply();
                let reply = Reply::new(code, parse_enhanced(enhanced), text);
                self.server.metrics.rejected(match error {
                    crate::smtp::data::DataError::TooLarge => "size",
                    crate::smtp::data::DataError::BareLineFeed
                    | crate::smtp::data::DataError::BareCarriageReturn => "smuggling",
                    _ => "protocol",
                });
                self.finish_log(reader.size(), "", &reply);
                reply
            }
        };
        conn.queue(&reply.to_bytes());
        Ok(Next::Continue)
    }

    /// Ends the transaction in progress without a message, logging it when it got as far as MAIL FROM.
    fn abandon(&mut self, why: &str) {
        if self.txn.is_some() {
            let reply = Reply::new(0, None, why);
            self.finish_log(0, "", &reply);
        }
    }

    /// The one log line of a transaction, written when it ends; clears the transaction.
    fn finish_log(&mut self, size: u64, checks: &str, reply: &Reply) {
        let Some(txn) = self.txn.take() else {
            return;
        };
        let result = if reply.code() == 0 {
            format!("abandoned ({})", reply.text())
        } else {
            format!("{} {}", reply.code(), reply.text())
        };
        let ptr = self
            .connect_checks
            .as_ref()
            .and_then(|c| c.ptr.as_deref())
            .unwrap_or("unknown");
        tracing::info!(
            target: "mailctl::smtp",
            id = %txn.id,
            listener = self.kind.name(),
            client = %self.peer.ip(),
            ptr,
            tls = self.tls.as_deref().unwrap_or("none"),
            helo = self.helo.as_ref().map(|h| h.0.as_str()).unwrap_or(""),
            login = self.login.as_ref().map(|l| l.to_string()).unwrap_or_default(),
            from = %format!("<{}>", txn.sender),
            to = %txn.recipients.join(","),
            refused = %txn.refused.join(","),
            via = %txn.via.join("; "),
            size,
            checks,
            result = %result,
            "transaction"
        );
    }
}

/// How long a database read may take before the client gets a temporary failure.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Session {
    /// Runs a database read for a stage (`"AUTH"`, `"MAIL"`, ...), bounded by [`LOOKUP_TIMEOUT`]. A failure or
    /// timeout is logged with the stage and becomes `Err(())`, which the stage answers with
    /// [`temporary_failure`]: a database problem is never a permanent refusal.
    async fn lookup<T>(
        &self,
        stage: &'static str,
        read: impl std::future::Future<Output = crate::error::Result<T>>,
    ) -> Result<T, ()> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, read).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(target: "mailctl::smtp", stage, error = %e, "database error");
                Err(())
            }
            Err(_) => {
                tracing::warn!(target: "mailctl::smtp", stage, "database timeout");
                Err(())
            }
        }
    }
}

/// The reply to a database failure: the client should retry later.
fn temporary_failure() -> Reply {
    Reply::new(
        451,
        Some((4, 3, 0)),
        "Temporary local problem, try again later",
    )
}

/// `"5.3.4"` → `(5, 3, 4)`.
fn parse_enhanced(text: &str) -> Option<(u8, u16, u16)> {
    let mut parts = text.split('.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    Some((class, subject, detail))
}

/// A fresh queue id: 12 hex digits of time and randomness, unique enough to find one transaction in the logs.
fn queue_id() -> String {
    use rand::Rng as _;
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let random: u32 = rand::thread_rng().r#gen();
    format!(
        "{:08X}{:06X}",
        (micros & 0xFFFF_FFFF) as u32,
        random & 0xFF_FFFF
    )
}

/// The null sender or the address, as text.
fn sender_text(from: &ReversePath) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Path(p) => p.to_string(),
    }
}
