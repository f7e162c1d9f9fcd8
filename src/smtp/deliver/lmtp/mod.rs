//! An LMTP client (RFC 2033) for delivering to Dovecot's (or any) LMTP server over TCP or a unix socket.
//!
//! One connection per delivery: `LHLO`, `MAIL FROM`, one `RCPT TO` per target, `DATA` with the message
//! dot-stuffed, then, as LMTP differs from SMTP, one reply per accepted recipient, so a message can reach some
//! mailboxes and not others. Commands go one at a time (over a local socket a round trip costs microseconds,
//! and lock-step keeps every reply tied to its command).
//!
//! Failures: a rejected recipient fails with the server's reply as reason, temporary for 4xx and permanent for
//! 5xx. Anything that breaks the conversation (connection refused, a timeout, a closed or garbled connection)
//! is temporary, for every recipient still waiting for its reply: the sender retries, which is right when the
//! message did not arrive and at worst a duplicate when the connection broke after the server had stored it.
//!
//! Junk filing is not possible over LMTP (see the parent module): junk targets are delivered like the others.

mod conn;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use self::conn::{Conn, LinkError, Reply};
use super::{Failure, Target};
use crate::smtp::inbound::data::stuff;

/// Where the LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `HOST:PORT`, as in `lmtp:HOST:PORT` in the config.
    Tcp(String),
    /// A unix socket path, e.g. `/run/dovecot/lmtp`.
    Unix(PathBuf),
}

/// Delivers messages to one LMTP server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Arc<Endpoint>,
    hostname: Arc<str>,
    timeouts: Timeouts,
}

/// How long to wait for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting, every command's reply, every write.
    pub command: Duration,
    /// Each reply after the end of the message data, when the server stores the message (RFC 5321 §4.5.3.2.6
    /// suggests 10 minutes: giving up earlier risks a duplicate of a message the server then stores).
    pub data_end: Duration,
}

impl Default for Timeouts {
    /// 60 seconds per command, 10 minutes per final reply.
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(60),
            data_end: Duration::from_secs(600),
        }
    }
}

impl Client {
    /// A client for the server at `endpoint`, greeting it as `hostname` in `LHLO`.
    pub fn new(endpoint: Endpoint, hostname: &str) -> Client {
        Client {
            endpoint: Arc::new(endpoint),
            hostname: Arc::from(hostname),
            timeouts: Timeouts::default(),
        }
    }

    /// The same client with other timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Client {
        self.timeouts = timeouts;
        self
    }

    /// Delivers `message` from `sender` (empty for `<>`) to the targets' mailboxes. `Ok(failed)`: delivered to
    /// every target except those listed; `Err`: delivered to none (temporary if any failure was).
    pub async fn deliver(
        &self,
        sender: &str,
        message: &[u8],
        targets: Vec<Target>,
    ) -> Result<Vec<(Target, Failure)>, Failure> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        if has_control(sender) {
            return Err(Failure::permanent(
                "sender address contains control characters",
            ));
        }
        let total = targets.len();
        let failed = match self.connect().await {
            Ok(Stream::Tcp(stream)) => self.transaction(stream, sender, message, targets).await,
            Ok(Stream::Unix(stream)) => self.transaction(stream, sender, message, targets).await,
            Err(e) => {
                tracing::warn!(endpoint = ?self.endpoint, error = %e, "cannot connect to the LMTP server");
                Err(Failure::transient(format!("LMTP server unavailable: {e}")))
            }
        }?;
        if failed.len() >= total {
            let reasons = failed.iter().map(|(_, f)| f);
            return Err(Failure::combine(reasons)
                .unwrap_or_else(|| Failure::transient("LMTP delivery failed")));
        }
        Ok(failed)
    }

    async fn connect(&self) -> std::io::Result<Stream> {
        let connect = async {
            match &*self.endpoint {
                Endpoint::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok(Stream::Tcp(stream))
                }
                Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            }
        };
        tokio::time::timeout(self.timeouts.command, connect)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    /// The conversation on a connected stream; returns the targets that failed. `Err` when the conversation
    /// broke off before the message was sent (nothing was delivered).
    async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        sender: &str,
        message: &[u8],
        targets: Vec<Target>,
    ) -> Result<Vec<(Target, Failure)>, Failure> {
        let mut conn = Conn::new(stream, self.timeouts.command);
        let greeting = conn.reply().await.map_err(broken)?;
        if greeting.code != 220 {
            return Err(Failure::transient(format!(
                "LMTP server not ready: {}",
                greeting.text()
            )));
        }
        let lhlo = conn
            .command(&format!("LHLO {}", self.hostname))
            .await
            .map_err(broken)?;
        if !lhlo.positive() {
            return Err(Failure::transient(format!(
                "LMTP server refused LHLO: {}",
                lhlo.text()
            )));
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if lhlo.advertises("8BITMIME") && !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let utf8 = !sender.is_ascii() || targets.iter().any(|t| !t.mailbox.is_ascii());
        if utf8 && lhlo.advertises("SMTPUTF8") {
            mail.push_str(" SMTPUTF8");
        }
        let reply = conn.command(&mail).await.map_err(broken)?;
        if !reply.positive() {
            return Err(refused(&reply));
        }

        let mut failed = Vec::new();
        let mut accepted = Vec::new();
        for target in targets {
            if has_control(&target.mailbox) {
                let failure = Failure::permanent("recipient address contains control characters");
                failed.push((target, failure));
                continue;
            }
            let reply = conn
                .command(&format!("RCPT TO:<{}>", target.mailbox))
                .await
                .map_err(broken)?;
            if reply.positive() {
                accepted.push(target);
            } else {
                failed.push((target, refused(&reply)));
            }
        }
        if accepted.is_empty() {
            quit(&mut conn).await;
            return Ok(failed);
        }

        let reply = conn.command("DATA").await.map_err(broken)?;
        if reply.code != 354 {
            let failure = refused(&reply);
            failed.extend(accepted.into_iter().map(|t| (t, failure.clone())));
            quit(&mut conn).await;
            return Ok(failed);
        }
        conn.send(&stuff(message)).await.map_err(broken)?;

        let mut waiting = accepted.into_iter();
        for target in waiting.by_ref() {
            match conn.reply_within(self.timeouts.data_end).await {
                Ok(reply) if reply.positive() => {}
                Ok(reply) => failed.push((target, refused(&reply))),
                Err(e) => {
                    let failure = broken(e);
                    failed.push((target, failure.clone()));
                    failed.extend(waiting.map(|t| (t, failure.clone())));
                    return Ok(failed);
                }
            }
        }
        quit(&mut conn).await;
        Ok(failed)
    }
}

/// A connected stream of either kind.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Ends the session politely, without waiting for the `221`: everything that matters has been answered.
async fn quit<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>) {
    let _ = conn.send(b"QUIT\r\n").await;
}

/// A broken conversation: temporary.
fn broken(e: LinkError) -> Failure {
    tracing::warn!(error = %e, "LMTP delivery broke off");
    Failure::transient(e.to_string())
}

/// A refusal by the server: temporary for 4xx (and anything unexpected), permanent for 5xx.
fn refused(reply: &Reply) -> Failure {
    Failure {
        temporary: !(500..600).contains(&reply.code),
        reason: reply.text(),
    }
}

/// Whether an address would break the command line it is put on.
fn has_control(address: &str) -> bool {
    address.chars().any(char::is_control)
}
