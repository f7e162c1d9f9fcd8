//! AUTH PLAIN and LOGIN (RFC 4954): only on submission listeners, only under TLS, never twice, and with
//! failures per client IP slowed down and then locked out.
//!
//! The password check runs on the blocking pool (the hash functions are deliberately slow) against the
//! mailbox row: the mailbox and its domain must be active and `smtp_active` set, as the Dovecot passdb query
//! that `mailctl config dovecot` generates requires for SMTP. The main password or any of the mailbox's app
//! passwords (postfixadmin's `mailbox_app_password`) logs in; a mailbox with a TOTP secret takes app passwords
//! only, unless the client's address is one of its `totp_exception_address` rows.

use std::time::Duration;

use super::io::{Conn, Line};
use super::{Next, Session, temporary_failure};
use crate::model::Address;
use crate::smtp::inbound::command::{self, AuthError, Reply};
use crate::smtp::inbound::limits::Penalty;
use crate::smtp::metrics::RejectReason;

impl Session {
    pub(super) async fn auth(
        &mut self,
        conn: &mut Conn,
        mechanism: &str,
        initial: Option<String>,
    ) -> std::io::Result<Next> {
        if let Some(refusal) = self.auth_refusal() {
            self.server.metrics.rejected(RejectReason::AuthRequired);
            conn.queue(&refusal);
            return Ok(Next::Continue);
        }
        let ip = self.peer.ip();
        if self.server.auth_throttle.locked(ip) {
            return Ok(self.locked_out(conn));
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let response = match initial {
                    Some(text) => Ok(text),
                    None => match challenge(conn, "").await? {
                        Some(answer) => answer,
                        None => return Ok(Next::Close),
                    },
                };
                response
                    .and_then(|r| command::decode_plain(&r))
                    .map(|c| (c.authcid, c.password, c.authzid))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(text) => Ok(text),
                    None => match challenge(conn, "VXNlcm5hbWU6").await? {
                        Some(answer) => answer,
                        None => return Ok(Next::Close),
                    },
                }
                .and_then(|t| command::decode_login_step(&t));
                match user {
                    Ok(user) => match challenge(conn, "UGFzc3dvcmQ6").await? {
                        Some(answer) => answer
                            .and_then(|t| command::decode_login_step(&t))
                            .map(|p| (user, p, None)),
                        None => return Ok(Next::Close),
                    },
                    Err(e) => Err(e),
                }
            }
            _ => {
                conn.queue(&Reply::new(
                    504,
                    Some((5, 5, 4)),
                    "Unrecognized authentication mechanism",
                ));
                return Ok(Next::Continue);
            }
        };
        let (user, password, authzid) = match credentials {
            Ok(c) => c,
            Err(e @ (AuthError::Cancelled | AuthError::InvalidBase64 | AuthError::TooLong)) => {
                conn.queue(&e.reply());
                return Ok(Next::Continue);
            }
            Err(AuthError::Malformed(_)) => (String::new(), String::new(), None),
        };
        // Acting as someone else (a different authzid) is not a feature this server has.
        let authzid_ok = authzid.is_none_or(|z| z.is_empty() || z.eq_ignore_ascii_case(&user));
        let verdict = if authzid_ok {
            self.check_password(&user, password).await
        } else {
            Ok(None)
        };
        match verdict {
            Ok(Some(login)) => {
                self.server.auth_throttle.succeeded(ip);
                self.server.metrics.auth(true);
                tracing::info!(target: "mailctl::smtp", client = %ip, login = %login, "authenticated");
                self.login = Some(login);
                conn.queue(&Reply::new(
                    235,
                    Some((2, 7, 0)),
                    "Authentication successful",
                ));
                Ok(Next::Continue)
            }
            Ok(None) => {
                self.server.metrics.auth(false);
                tracing::info!(target: "mailctl::smtp", client = %ip, user = %user.escape_debug(), "authentication failed");
                match self.server.auth_throttle.failed(ip) {
                    Penalty::LockedOut => Ok(self.locked_out(conn)),
                    Penalty::Delay(delay) => {
                        conn.flush().await?;
                        tokio::time::sleep(delay).await;
                        conn.queue(&Reply::new(
                            535,
                            Some((5, 7, 8)),
                            "Authentication credentials invalid",
                        ));
                        Ok(Next::Continue)
                    }
                }
            }
            Err(()) => {
                self.server.metrics.rejected(RejectReason::Tempfail);
                conn.queue(&temporary_failure());
                Ok(Next::Continue)
            }
        }
    }

    /// Why AUTH cannot be used right now, if it cannot.
    fn auth_refusal(&self) -> Option<Reply> {
        if !self.kind.offers_auth() {
            return Some(Reply::new(
                503,
                Some((5, 5, 1)),
                "AUTH not available on this listener",
            ));
        }
        if self.tls.is_none() {
            return Some(Reply::new(
                538,
                Some((5, 7, 11)),
                "Encryption required for requested authentication mechanism",
            ));
        }
        if self.login.is_some() {
            return Some(Reply::new(503, Some((5, 5, 1)), "Already authenticated"));
        }
        if self.txn.is_some() {
            return Some(Reply::new(
                503,
                Some((5, 5, 1)),
                "AUTH not allowed during a mail transaction",
            ));
        }
        if self.helo.is_none() {
            return Some(Reply::new(503, Some((5, 5, 1)), "Send EHLO first"));
        }
        None
    }

    fn locked_out(&mut self, conn: &mut Conn) -> Next {
        self.server.metrics.rejected(RejectReason::AuthLockout);
        conn.queue(&Reply::new(
            421,
            Some((4, 7, 0)),
            "Too many authentication failures, closing connection",
        ));
        Next::Close
    }

    /// The login's address when the password matches an active mailbox allowed to use SMTP; `None` for any
    /// kind of mismatch (which the client must not be able to tell apart); `Err` when the database failed.
    async fn check_password(&self, user: &str, password: String) -> Result<Option<Address>, ()> {
        let Ok(address) = user.trim().parse::<Address>() else {
            return Ok(None);
        };
        let username = address.to_string();
        let ip = self.peer.ip().to_canonical().to_string();
        let lookup = async {
            let mut tx = self.server.store.begin().await?;
            let hashes =
                crate::provision::login_hashes(&mut tx, &username, true, Some(&ip)).await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(hashes)
        };
        let stored = self.lookup("AUTH", lookup).await?;
        // Verify even for unknown users (against a dummy hash) so timing does not reveal which logins exist.
        let ok =
            tokio::task::spawn_blocking(move || crate::password::verify_any(&stored, &password))
                .await
                .unwrap_or(false);
        Ok(ok.then_some(address))
    }
}

/// Sends a `334` challenge and reads the client's answer line; `None` when the client went away.
async fn challenge(
    conn: &mut Conn,
    prompt: &str,
) -> std::io::Result<Option<Result<String, AuthError>>> {
    conn.queue(&Reply::new(334, None, prompt));
    match conn
        .read_line(command::auth::MAX_AUTH_LINE, Duration::from_secs(60))
        .await?
    {
        Line::Line(bytes) => Ok(Some(Ok(String::from_utf8_lossy(&bytes).into_owned()))),
        Line::TooLong => Ok(Some(Err(AuthError::TooLong))),
        Line::Eof => Ok(None),
    }
}
