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
mod forward;
pub mod io;
mod mail;
mod milter;
mod rcpt;
mod received;
mod relay;
mod reports;
mod sending;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::io::{Conn, Line, Stream};
use crate::model::Address;
use crate::smtp::deliver::Target;
use crate::smtp::inbound::Context;
use crate::smtp::inbound::checks::{ConnectResult, SpfResult};
use crate::smtp::inbound::command::{self, Command, MailParams, Reply, ReversePath};
use crate::smtp::inbound::data::{DataError, DataReader, Limits as DataLimits, Progress};
use crate::smtp::metrics::RejectReason;
use crate::smtp::queue::QueueId;
use crate::smtp::settings::ListenerKind;

/// The longest command line accepted, CRLF included (Postfix's `line_length_limit`); longer lines get 500.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Refused commands (any 4xx or 5xx reply but `451`, which is this server's own trouble, such as a database
/// away) a client may collect without delivering a message; the one that reaches this count ends the session
/// with `421 4.7.0` (Postfix's `smtpd_hard_error_limit`, same default). A delivered message starts the count
/// again.
pub const MAX_ERRORS: u32 = 20;

/// NOOP, RSET, VRFY, EXPN and HELP commands a session may send before each further one counts as an error
/// (Postfix's `smtpd_junk_command_limit`, same default): otherwise a client could hold a connection slot
/// forever with a NOOP every few minutes.
pub const MAX_JUNK_COMMANDS: u32 = 100;

/// RCPTs past `max_recipients` that are answered `452 4.5.3` without counting as errors, as a client that
/// honours the 452 sends the rest in a later transaction (Postfix's `smtpd_recipient_overshoot_limit`, same
/// default). Past it each 452 counts, so a flood of RCPTs ends at [`MAX_ERRORS`].
pub const RECIPIENT_OVERSHOOT: usize = 1000;

/// Bytes per second a DATA phase must average to earn more time than `data_timeout` (Postfix's
/// `smtpd_min_data_rate`): the whole message must arrive within `data_timeout` plus one second per this many
/// bytes received, so a client dribbling bytes cannot hold a session open forever, however steadily it sends.
pub const MIN_DATA_RATE: u64 = 500;

/// What the session knows about its client and the transaction in progress.
pub struct Session {
    server: Arc<Context>,
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
    /// Refused commands since the session started or last delivered a message (see [`MAX_ERRORS`]).
    errors: u32,
    /// NOOP/RSET/VRFY/EXPN/HELP commands in this session (see [`MAX_JUNK_COMMANDS`]).
    junk: u32,
    /// The reply just queued refuses something without counting as an error (a 452 within
    /// [`RECIPIENT_OVERSHOOT`]).
    forgiven: bool,
}

/// One mail transaction: MAIL FROM, the accepted recipients, and what the checks said so far.
pub struct Transaction {
    /// The message's one id: in the `250` reply, the `Received:` field, the log line, the Maildir file names
    /// and the outbound queue (`mailctl queue show ID`).
    id: QueueId,
    /// The envelope sender as text (`""` for `<>`).
    sender: String,
    /// MAIL FROM parameters.
    params: MailParams,
    /// SPF of the sender (MX listener).
    spf: Option<SpfResult>,
    /// Every accepted RCPT, as the client wrote it.
    recipients: Vec<String>,
    /// (mailbox, RCPT) for every RCPT that led to a local mailbox (through aliases or directly).
    led_to: Vec<(String, String)>,
    /// Where the message goes: each mailbox once, however many RCPTs lead to it.
    targets: Vec<Target>,
    /// Addresses in other domains (a logged-in user's recipients, alias targets outside): queued for delivery.
    remote: Vec<String>,
    /// Hosted domains whose aliases sent this message to `remote` addresses (the forwarding domains, in RCPT
    /// order): the first signs, seals and gives the SRS address of forwarded copies.
    forwarders: Vec<String>,
    /// Where SRS addresses of ours led back to (bounces on their way to the original senders): queued like
    /// `remote`, but never held back as forwarded mail is.
    returned: Vec<String>,
    /// Mailbox quotas in bytes (0 = none) and usage seen at RCPT, per target.
    quotas: Vec<(u64, u64)>,
    /// RCPTs refused, with the reply code, for the log line.
    refused: Vec<String>,
    /// Alias expansions, for the log line.
    via: Vec<String>,
    /// RCPTs refused because `max_recipients` was reached.
    overshoot: usize,
    /// The sending limits of a logged-in user, when any apply.
    sending: Option<Box<sending::Sending>>,
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
    pub async fn run(server: Arc<Context>, kind: ListenerKind, peer: SocketAddr, stream: Stream) {
        let mut session = Session {
            server,
            kind,
            peer,
            tls: None,
            helo: None,
            login: None,
            connect_checks: None,
            txn: None,
            errors: 0,
            junk: 0,
            forgiven: false,
        };
        let mut conn = Conn::new(stream);
        conn.write_timeout = session.server.settings.limits.command_timeout;
        if let Stream::Tls(tls) = &conn.stream {
            session.tls = Some(crate::tls::server::describe(tls.get_ref().1));
        }
        let hostname = &session.server.settings.hostname;
        // A client that talks before it is greeted is not waiting for replies: a spam bot firing its whole
        // transaction blind, or a client confused about where it is. Either way nothing it says is taken.
        if conn
            .input_before_greeting(session.server.settings.limits.greet_pause)
            .await
        {
            session.server.metrics.rejected(RejectReason::Protocol);
            tracing::info!(target: "mailctl::smtp", listener = kind.name(), client = %peer.ip(),
                "client sent commands before the greeting; refused");
            let refusal = Reply::new(
                554,
                Some((5, 5, 0)),
                format!(
                    "{hostname} Error: SMTP protocol synchronization (command sent before the greeting)"
                ),
            );
            conn.queue(&refusal);
            let _ = conn.finish().await;
            return;
        }
        let banner = Reply::new(220, None, format!("{hostname} ESMTP mailctl"));
        conn.queue(&banner);
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
                    () = shutdown.recv() => {
                        let bye = Reply::new(421, Some((4, 3, 2)), format!(
                            "{} shutting down, try again later", self.server.settings.hostname));
                        conn.queue(&bye);
                        return conn.flush().await;
                    }
                }
            } else {
                conn.read_line(MAX_COMMAND_LINE, timeout).await
            };
            conn.last_code = 0;
            self.forgiven = false;
            let mut delivered = false;
            let mut junk = false;
            let next = match line {
                Ok(Line::Line(line)) => match command::parse(&line) {
                    Ok(command) => {
                        let data = matches!(command, Command::Data);
                        junk = matches!(
                            command,
                            Command::Noop
                                | Command::Rset
                                | Command::Vrfy(_)
                                | Command::Expn(_)
                                | Command::Help
                        );
                        let next = self.dispatch(conn, command).await?;
                        delivered = data && conn.last_code == 250;
                        next
                    }
                    Err(e) => {
                        self.server.metrics.rejected(RejectReason::Protocol);
                        conn.queue(&e.reply());
                        Next::Continue
                    }
                },
                Ok(Line::TooLong) => {
                    self.server.metrics.rejected(RejectReason::Protocol);
                    conn.queue(&Reply::new(500, Some((5, 5, 2)), "Line too long"));
                    Next::Continue
                }
                Ok(Line::Eof) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.server.metrics.rejected(RejectReason::Timeout);
                    self.abandon("timeout");
                    let bye = Reply::new(421, Some((4, 4, 2)), "Timeout, closing connection");
                    conn.queue(&bye);
                    return conn.finish().await;
                }
                Err(e) => return Err(e),
            };
            if let Next::Close = next {
                return conn.finish().await;
            }
            if junk {
                self.junk = self.junk.saturating_add(1);
            }
            let refused = conn.last_code >= 400 && conn.last_code != 451 && !self.forgiven;
            if delivered {
                self.errors = 0;
            } else if refused || (junk && self.junk > MAX_JUNK_COMMANDS) {
                self.errors += 1;
                if self.errors >= MAX_ERRORS {
                    self.server.metrics.rejected(RejectReason::Protocol);
                    tracing::info!(target: "mailctl::smtp", listener = self.kind.name(),
                        client = %self.peer.ip(), errors = self.errors, "too many errors; disconnecting");
                    self.abandon("too many errors");
                    let bye = Reply::new(
                        421,
                        Some((4, 7, 0)),
                        format!(
                            "{} Error: too many errors, closing connection",
                            self.server.settings.hostname
                        ),
                    );
                    conn.queue(&bye);
                    return conn.finish().await;
                }
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
            Command::Bdat { size, .. } => return Box::pin(self.bdat(conn, size)).await,
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
                conn.queue(&bye);
                return Ok(Next::Close);
            }
        };
        conn.queue(&reply);
        Ok(Next::Continue)
    }

    /// STARTTLS: answer 220, drop anything pipelined behind the command, handshake, and forget everything the
    /// client said in clear (RFC 3207 4.2: the session starts over, EHLO included).
    async fn starttls(&mut self, conn: &mut Conn) -> std::io::Result<Next> {
        let tls = match (&self.server.tls, &conn.stream) {
            (Some(tls), Stream::Plain(_)) => tls.acceptor(),
            (None, _) => {
                conn.queue(&Reply::new(502, Some((5, 5, 1)), "STARTTLS not available"));
                return Ok(Next::Continue);
            }
            (Some(_), _) => {
                conn.queue(&Reply::new(503, Some((5, 5, 1)), "TLS already active"));
                return Ok(Next::Continue);
            }
        };
        if self.helo.is_none() {
            conn.queue(&Reply::new(503, Some((5, 5, 1)), "Send EHLO first"));
            return Ok(Next::Continue);
        }
        conn.queue(&Reply::new(220, Some((2, 0, 0)), "Ready to start TLS"));
        conn.flush().await?;
        conn.discard_input();
        let Stream::Plain(tcp) = std::mem::replace(&mut conn.stream, Stream::Closed) else {
            return Ok(Next::Close);
        };
        let handshake = tls.accept(tcp);
        match tokio::time::timeout(self.server.settings.limits.command_timeout, handshake).await {
            Ok(Ok(stream)) => {
                self.tls = Some(crate::tls::server::describe(stream.get_ref().1));
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
            conn.queue(&refusal);
            return Ok(Next::Continue);
        }
        conn.queue(&Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
        conn.flush().await?;
        let limits = DataLimits {
            max_size: self.server.settings.limits.max_message_size,
            max_line: DataLimits::RFC_MAX_LINE,
        };
        let mut reader = DataReader::new(limits);
        let mut message = Vec::with_capacity(8192);
        let started = Instant::now();
        let outcome = loop {
            let progress = reader.feed(&conn.rbuf, &mut message);
            match progress {
                Progress::NeedMore => {
                    let n = conn.rbuf.len();
                    conn.consume(n);
                    // Refused as too large long ago and still streaming: stop reading (and paying for) it.
                    let max = self.server.settings.limits.max_message_size;
                    if reader.size() > max.saturating_add(max.max(1 << 20)) {
                        self.server.metrics.rejected(RejectReason::Size);
                        self.abandon("message far over the size limit");
                        let reply = Reply::new(
                            552,
                            Some((5, 3, 4)),
                            "Message size exceeds fixed maximum message size",
                        );
                        conn.queue(&reply);
                        return Ok(Next::Close);
                    }
                    match self.fill_data(conn, started, reader.size()).await? {
                        Some(()) => {}
                        None => {
                            self.abandon("timeout or disconnect during DATA");
                            return Ok(Next::Close);
                        }
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
                let reply = error.reply();
                self.server.metrics.rejected(match error {
                    DataError::TooLarge => RejectReason::Size,
                    DataError::BareLineFeed | DataError::BareCarriageReturn => {
                        RejectReason::Smuggling
                    }
                    DataError::NulByte | DataError::LineTooLong => RejectReason::Protocol,
                });
                self.finish_log(reader.size(), "", &reply);
                reply
            }
        };
        conn.queue(&reply);
        Ok(Next::Continue)
    }

    /// Reads more message bytes (DATA, or a BDAT chunk being skipped) into the read buffer. Each read may take
    /// `data_timeout`, and the whole phase `data_timeout` plus one second per [`MIN_DATA_RATE`] bytes received
    /// so far. `None` when the phase is over: the client went away, or it was too slow and has been sent
    /// `421 4.4.2`.
    async fn fill_data(
        &mut self,
        conn: &mut Conn,
        started: Instant,
        received: u64,
    ) -> std::io::Result<Option<()>> {
        let idle = self.server.settings.limits.data_timeout;
        let allowed = idle.saturating_add(Duration::from_secs(received / MIN_DATA_RATE));
        let wait = allowed.saturating_sub(started.elapsed()).min(idle);
        let filled = if wait.is_zero() {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            conn.fill(wait).await
        };
        match filled {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(())),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.server.metrics.rejected(RejectReason::Timeout);
                let bye = Reply::new(421, Some((4, 4, 2)), "Timeout, closing connection");
                conn.queue(&bye);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// BDAT (RFC 3030) is not offered: EHLO lists no CHUNKING. A client that sends it anyway follows it with
    /// exactly `size` octets of message, which are read and thrown away before the `502`, so that a chunk is
    /// never taken for commands: a message relayed to this server with BDAT by a careless upstream would
    /// otherwise run its own MAIL, RCPT and DATA here, under the upstream's name (smuggling by another road).
    /// A chunk larger than the message size limit is not waited for: `552` and the connection is closed.
    async fn bdat(&mut self, conn: &mut Conn, size: u64) -> std::io::Result<Next> {
        if size > self.server.settings.limits.max_message_size {
            self.server.metrics.rejected(RejectReason::Size);
            let reply = Reply::new(
                552,
                Some((5, 3, 4)),
                "Message size exceeds fixed maximum message size",
            );
            conn.queue(&reply);
            return Ok(Next::Close);
        }
        let started = Instant::now();
        let mut left = size;
        loop {
            let take = conn
                .rbuf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            conn.consume(take);
            left -= take as u64;
            if left == 0 {
                break;
            }
            if self.fill_data(conn, started, size - left).await?.is_none() {
                self.abandon("timeout or disconnect during BDAT");
                return Ok(Next::Close);
            }
        }
        self.server.metrics.rejected(RejectReason::Protocol);
        let reply = Reply::new(
            502,
            Some((5, 5, 1)),
            "BDAT not implemented (CHUNKING is not offered)",
        );
        conn.queue(&reply);
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

/// The null sender or the address, as text.
fn sender_text(from: &ReversePath) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Path(p) => p.to_string(),
    }
}
