//! One SMTP session with one address of one MX host, driven with lettre's `AsyncSmtpConnection` and its
//! commands (not `send_raw`, which fails the whole message on one refused recipient).
//!
//! Connect to the IP (lettre never resolves names here), greeting and EHLO, STARTTLS as the [`Security`] asks,
//! `MAIL FROM`, one `RCPT TO` per open recipient, `DATA` and the message, `QUIT`. Every step is bounded by the
//! command timeout except the reply to the end of data, which gets the data timeout (RFC 5321 4.5.3.2.6: 10
//! minutes).
//!
//! How a session ends decides what the caller does next ([`End`]): anything that goes wrong before a recipient
//! could be answered, or before the message was sent, leaves the open recipients open for the next address;
//! once the message has been sent, a lost reply defers (the mail may or may not have arrived; trying another
//! host now would risk a duplicate at once).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Quit};
use lettre::transport::smtp::extension::{ClientId, Extension};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::reply::{self, Failure, MailFrom, RcptTo};
use crate::smtp::queue::Outcome;
use crate::tls::Trust;

/// How STARTTLS is used in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security<'a> {
    /// STARTTLS when offered, any certificate; a failed handshake asks for a plain retry. With `Some(domain)`
    /// the domain has an MTA-STS `testing` policy: problems are logged as what `enforce` would refuse.
    Opportunistic(Option<&'a str>),
    /// No STARTTLS (the retry after a failed opportunistic handshake).
    Plain,
    /// STARTTLS required, certificate verified for the MX name (MTA-STS `enforce` of the named domain).
    Verified(&'a str),
}

/// Fixed parameters of every session.
pub struct Params<'a> {
    /// Our name for EHLO.
    pub hostname: &'a str,
    /// Remote port.
    pub port: u16,
    /// Connect, greeting, EHLO, STARTTLS and per-command bound.
    pub timeout: Duration,
    /// Bound on sending the message and reading the final reply.
    pub data_timeout: Duration,
    /// Roots for verified TLS.
    pub trust: &'a Trust,
    /// The peer is our relay host: a permanent refusal of the envelope that is about our permission to
    /// send (see [`refuses_us`]) ends the session with [`End::Refused`] instead of failing the recipients.
    pub relay: bool,
}

/// The message and the recipients still open, by index into `outcomes` of [`run`].
pub struct Envelope<'a> {
    /// Envelope sender, empty for the null sender (already checked safe).
    pub sender: &'a str,
    /// Every recipient of the delivery (already checked safe).
    pub recipients: &'a [String],
    /// The message, CRLF line ends.
    pub message: &'a [u8],
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every recipient that was open has its outcome.
    Done,
    /// This address could not take the mail; recipients still without outcome go to the next address.
    NextAddress(String),
    /// The opportunistic TLS handshake failed: try this address again without STARTTLS.
    RetryPlain(String),
    /// The relay refused MAIL FROM or RCPT TO because of who we are, not because of the message or the
    /// recipient ([`refuses_us`]); only with [`Params::relay`]. Recipients stay open.
    Refused(String),
}

/// What became of TLS in one session, for the TLS reports of the recipient domain (RFC 8460).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// The session ended before STARTTLS could be tried (connection, greeting), or did not try it (plain).
    NotTried,
    /// TLS was established (and the certificate verified when the policy asks for it).
    Established,
    /// The server did not offer STARTTLS.
    NotOffered,
    /// The handshake or the certificate check failed: why.
    Failed(String),
}

/// Whether a permanent reply to MAIL FROM or RCPT TO from a relay host says the relay will not take mail from
/// us: `530` (authentication required) or an enhanced status of class `5.7` (security or policy: relay access
/// denied, sender not owned by the login, encryption required). From a relay, such a refusal is the admin's to
/// fix, the same for every message; bouncing users' mail for it would be wrong. Refusals at DATA or of the
/// message are the message's own (content policy) and bounce as usual.
pub fn refuses_us(text: &str) -> bool {
    let reply = text
        .split_once(": ")
        .map_or(text, |(_, reply)| reply)
        .trim_start();
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or("");
    code == "530" || (code.starts_with('5') && words.next().is_some_and(|w| w.starts_with("5.7.")))
}

/// Runs one session with `host` at `ip`, filling `outcomes[i]` for the open (None) recipients it settles;
/// says how it ended and what became of TLS.
/// With `pool`, a session kept from an earlier delivery to the same host, address, port and security is
/// used first, and a session that ends cleanly is kept for the next one.
pub async fn run(
    params: &Params<'_>,
    host: &str,
    ip: IpAddr,
    security: Security<'_>,
    envelope: &Envelope<'_>,
    outcomes: &mut [Option<Outcome>],
    pool: Option<&super::pool::Pool>,
) -> (End, Tls) {
    let key = pool.map(|_| {
        // The MTA-STS testing domain too: its checks run when a session opens.
        let level = match security {
            Security::Opportunistic(None) => "may".to_string(),
            Security::Opportunistic(Some(domain)) => format!("may testing {domain}"),
            Security::Plain => "plain".to_string(),
            Security::Verified(domain) => format!("verify {domain}"),
        };
        format!("{host}[{ip}]:{} {level}", params.port)
    });
    let demand = pool.zip(key.as_deref()).map(|(p, k)| p.demand(k));
    let wanted = || demand.as_ref().is_some_and(|d| d.shared());
    if let (Some(pool), Some(key)) = (pool, &key)
        && let Some((end, tls, sound)) = pool.on_kept(key, params, envelope, outcomes, wanted).await
    {
        // A kept session that broke (closed by the server while idle) leaves its recipients to a new one; a
        // reply (a 4xx to MAIL FROM) is the host's answer, as on a new session.
        if sound || matches!(end, End::Done) || outcomes.iter().all(Option::is_some) {
            return (end, tls);
        }
    }
    let mut tls = Tls::NotTried;
    let opened = run_session(params, host, ip, security, &mut tls).await;
    let (who, mut conn) = match opened {
        Ok(c) => c,
        Err(end) => return (end, tls),
    };
    let mut healthy = true;
    let end = transaction(params, &who, envelope, outcomes, &mut conn, &mut healthy).await;
    match (pool, &key) {
        (Some(pool), Some(key)) => {
            let keep = wanted();
            pool.keep_or_close(key, params, conn, who, tls.clone(), 1, &end, healthy, keep)
        }
        _ => goodbye(params, conn, healthy),
    }
    (end, tls)
}

/// Opens a session with `host` at `ip` as `security` asks: connection, greeting, EHLO, STARTTLS. `Err` says
/// how it ended before a transaction could start.
async fn run_session(
    params: &Params<'_>,
    host: &str,
    ip: IpAddr,
    security: Security<'_>,
    tls: &mut Tls,
) -> Result<(String, AsyncSmtpConnection), End> {
    let who = format!("{host}[{ip}]");
    let secs = params.timeout.as_secs();
    let addr = SocketAddr::new(ip, params.port);
    let tcp = match timeout(params.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(End::NextAddress(reply::one_line(&format!(
                "{who}: 4.4.1 connect to port {} failed: {e}",
                params.port
            ))));
        }
        Err(_) => {
            return Err(End::NextAddress(format!(
                "{who}: 4.4.1 connect to port {} timed out after {secs} s",
                params.port
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    let client_id = ClientId::Domain(params.hostname.to_string());
    // Greeting and EHLO are one call in lettre: each gets the command timeout.
    let greeting = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &client_id);
    let mut conn = match timeout(params.timeout * 2, greeting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Err(End::NextAddress(
                Failure::of(&who, "greeting/EHLO", &e).text(),
            ));
        }
        Err(_) => {
            return Err(End::NextAddress(reply::timed_out(
                &who,
                "the greeting/EHLO",
                secs * 2,
            )));
        }
    };

    let upgraded = starttls(params, host, &who, security, &client_id, &mut conn).await;
    *tls = match (&upgraded, security) {
        (_, Security::Plain) => Tls::NotTried,
        (Ok(()), _) if conn.is_encrypted() => Tls::Established,
        (Ok(()), _) => Tls::NotOffered,
        (Err(_), Security::Verified(_)) if !conn.can_starttls() => Tls::NotOffered,
        (Err(End::NextAddress(why) | End::RetryPlain(why)), _) => Tls::Failed(why.clone()),
        (Err(_), _) => Tls::Failed(String::new()),
    };
    upgraded?;
    Ok((who, conn))
}

/// Says QUIT in the background when the connection is still usable. After a timeout or a broken connection
/// there is nobody to say goodbye to. The goodbye does not hold up the caller: the outcomes are final once the
/// reply to the data came, and the queue records them as soon as the caller returns. Waiting for QUIT's reply
/// first would widen the window in which a crash makes a delivered message go out again by one round trip.
pub(super) fn goodbye(params: &Params<'_>, mut conn: AsyncSmtpConnection, healthy: bool) {
    if healthy && !conn.has_broken() {
        // Short: this connection no longer counts against the per-domain and total limits.
        let limit = params.timeout.min(Duration::from_secs(5));
        tokio::spawn(async move {
            let _ = timeout(limit, conn.command(Quit)).await;
        });
    }
}

/// STARTTLS as `security` asks; `Err` ends the session.
async fn starttls(
    params: &Params<'_>,
    host: &str,
    who: &str,
    security: Security<'_>,
    client_id: &ClientId,
    conn: &mut AsyncSmtpConnection,
) -> Result<(), End> {
    let secs = params.timeout.as_secs();
    match security {
        Security::Plain => Ok(()),
        Security::Opportunistic(testing) => {
            if !conn.can_starttls() {
                if let Some(domain) = testing {
                    tracing::warn!(target: "mailctl::outbound", domain, host = who,
                        "MTA-STS (testing): STARTTLS not offered; enforce would not deliver");
                }
                return Ok(());
            }
            let upgraded = match params.trust.opportunistic(host) {
                Ok(tls) => match timeout(params.timeout * 2, conn.starttls(tls, client_id)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {secs} s")),
                },
                Err(e) => Err(e.to_string()),
            };
            match upgraded {
                Ok(()) => {
                    if let Some(domain) = testing {
                        let chain = conn.certificate_chain().unwrap_or_default();
                        if let Err(e) = params.trust.check_chain(&chain, host) {
                            tracing::warn!(target: "mailctl::outbound", domain, host = who,
                                "MTA-STS (testing): certificate not valid ({e}); enforce would not deliver");
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(target: "mailctl::outbound", host = who,
                        "opportunistic STARTTLS failed ({e}); retrying without TLS");
                    Err(End::RetryPlain(reply::one_line(&format!(
                        "{who}: 4.7.5 STARTTLS failed: {e}"
                    ))))
                }
            }
        }
        Security::Verified(domain) => {
            if !conn.can_starttls() {
                let _ = timeout(params.timeout, conn.command(Quit)).await;
                return Err(End::NextAddress(format!(
                    "{who}: 4.7.5 STARTTLS not offered, required by the MTA-STS policy of {domain}"
                )));
            }
            let upgraded = match params.trust.verified(host) {
                Ok(tls) => match timeout(params.timeout * 2, conn.starttls(tls, client_id)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {secs} s")),
                },
                Err(e) => Err(e.to_string()),
            };
            upgraded.map_err(|e| {
                End::NextAddress(reply::one_line(&format!(
                    "{who}: 4.7.5 TLS required by the MTA-STS policy of {domain} failed: {e}"
                )))
            })
        }
    }
}

/// MAIL, RCPT, DATA and the message; `healthy` is cleared when the connection can no longer be used.
pub(super) async fn transaction(
    params: &Params<'_>,
    who: &str,
    envelope: &Envelope<'_>,
    outcomes: &mut [Option<Outcome>],
    conn: &mut AsyncSmtpConnection,
    healthy: &mut bool,
) -> End {
    let secs = params.timeout.as_secs();
    let info = conn.server_info();
    let smtputf8 = info.supports_feature(Extension::SmtpUtfEight);
    let eight_bit = info.supports_feature(Extension::EightBitMime);
    let open: Vec<usize> = (0..outcomes.len())
        .filter(|i| outcomes[*i].is_none())
        .collect();
    let no_utf8 = || format!("{who}: 5.6.7 SMTPUTF8 is required but not offered by the server");
    if !smtputf8 && !envelope.sender.is_ascii() {
        for i in &open {
            outcomes[*i] = Some(Outcome::Failed(no_utf8()));
        }
        return End::Done;
    }
    let mut mail_params = Vec::new();
    let utf8_envelope =
        !envelope.sender.is_ascii() || open.iter().any(|i| !envelope.recipients[*i].is_ascii());
    if smtputf8 && (utf8_envelope || !header_section(envelope.message).is_ascii()) {
        mail_params.push("SMTPUTF8");
    }
    if eight_bit && !envelope.message.is_ascii() {
        mail_params.push("BODY=8BITMIME");
    }
    let mail = MailFrom {
        sender: envelope.sender,
        params: &mail_params,
    };
    match timeout(params.timeout, conn.command(mail)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => match Failure::of(who, "MAIL FROM", &e) {
            Failure::Permanent(text) if params.relay && refuses_us(&text) => {
                return End::Refused(text);
            }
            Failure::Permanent(text) => {
                for i in &open {
                    outcomes[*i] = Some(Outcome::Failed(text.clone()));
                }
                return End::Done;
            }
            other => {
                *healthy = !matches!(other, Failure::Broken(_));
                return End::NextAddress(other.text());
            }
        },
        Err(_) => {
            *healthy = false;
            return End::NextAddress(reply::timed_out(who, "MAIL FROM", secs));
        }
    }

    let mut accepted = Vec::new();
    for &i in &open {
        let rcpt = envelope.recipients[i].as_str();
        if !smtputf8 && !rcpt.is_ascii() {
            outcomes[i] = Some(Outcome::Failed(no_utf8()));
            continue;
        }
        match timeout(params.timeout, conn.command(RcptTo(rcpt))).await {
            Ok(Ok(_)) => accepted.push(i),
            Ok(Err(e)) => match Failure::of(who, "RCPT TO", &e) {
                Failure::Permanent(text) if params.relay && refuses_us(&text) => {
                    return End::Refused(text);
                }
                Failure::Permanent(text) => outcomes[i] = Some(Outcome::Failed(text)),
                Failure::Transient(text) => outcomes[i] = Some(Outcome::Deferred(text)),
                Failure::Broken(text) => {
                    *healthy = false;
                    return End::NextAddress(text);
                }
            },
            Err(_) => {
                *healthy = false;
                return End::NextAddress(reply::timed_out(who, "RCPT TO", secs));
            }
        }
    }
    if accepted.is_empty() {
        return End::Done;
    }
    let settle = |outcomes: &mut [Option<Outcome>], outcome: Outcome| {
        for i in &accepted {
            outcomes[*i] = Some(outcome.clone());
        }
    };

    match timeout(params.timeout, conn.command(Data)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => match Failure::of(who, "DATA", &e) {
            Failure::Permanent(text) => {
                settle(outcomes, Outcome::Failed(text));
                return End::Done;
            }
            Failure::Transient(text) => {
                settle(outcomes, Outcome::Deferred(text));
                return End::Done;
            }
            Failure::Broken(text) => {
                *healthy = false;
                return End::NextAddress(text);
            }
        },
        Err(_) => {
            *healthy = false;
            return End::NextAddress(reply::timed_out(who, "DATA", secs));
        }
    }

    // lettre dot-stuffs and appends CRLF . CRLF; without the message's own final CRLF the body ends exactly
    // where the message does.
    let message = crlf(envelope.message);
    let body = message.strip_suffix(b"\r\n").unwrap_or(&message);
    let outcome = match timeout(params.data_timeout, conn.message(body)).await {
        Ok(Ok(response)) if reply::is_completion(&response) => {
            Outcome::Delivered(reply::positive(who, &response))
        }
        Ok(Ok(response)) => {
            // Out of step with the server: not a session to carry another transaction.
            *healthy = false;
            Outcome::Deferred(format!(
                "{} (unexpected reply to the end of data)",
                reply::positive(who, &response)
            ))
        }
        Ok(Err(e)) => match Failure::of(who, "the end of data", &e) {
            Failure::Permanent(text) => Outcome::Failed(text),
            Failure::Transient(text) => Outcome::Deferred(text),
            Failure::Broken(text) => {
                *healthy = false;
                Outcome::Deferred(text)
            }
        },
        Err(_) => {
            *healthy = false;
            Outcome::Deferred(reply::timed_out(
                who,
                "the end of data",
                params.data_timeout.as_secs(),
            ))
        }
    };
    settle(outcomes, outcome);
    End::Done
}

/// `message` with every bare CR or LF made a CRLF. Queued messages already have CRLF line ends; this makes
/// sure no stray LF ever reaches a receiver that might read `LF . LF` as the end of data (SMTP smuggling),
/// since lettre only dot-stuffs after CRLF.
fn crlf(message: &[u8]) -> Cow<'_, [u8]> {
    let bare = message.iter().enumerate().any(|(i, b)| match b {
        b'\r' => message.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || message[i - 1] != b'\r',
        _ => false,
    });
    if !bare {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' if message.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// The header section of a message (up to the first empty line), or all of it.
fn header_section(message: &[u8]) -> &[u8] {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message, |end| &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_ends_become_crlf() {
        assert!(matches!(crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*crlf(b"a\n.\nb\rc\r\n"), b"a\r\n.\r\nb\r\nc\r\n");
        assert_eq!(&*crlf(b"\n"), b"\r\n");
    }

    #[test]
    fn the_header_section_ends_at_the_first_empty_line() {
        assert_eq!(header_section(b"A: b\r\n\r\nbody\r\n"), b"A: b");
        assert_eq!(header_section(b"A: b\r\n"), b"A: b\r\n");
    }

    #[test]
    fn a_relay_refuses_us_with_530_or_a_5_7_status() {
        for ours in [
            "relay r.test[127.0.0.4]: 530 5.7.0 Authentication required",
            "relay r.test[127.0.0.4]: 554 5.7.1 <bob@b.test>: Relay access denied",
            "relay r.test[127.0.0.4]: 553 5.7.1 <a@a.test>: Sender address rejected: not owned by user x",
            "530 Must issue a STARTTLS command first",
        ] {
            assert!(refuses_us(ours), "{ours}");
        }
        for theirs in [
            "relay r.test[127.0.0.4]: 550 5.1.1 <bob@b.test>: Recipient address rejected",
            "relay r.test[127.0.0.4]: 552 5.3.4 Message size exceeds fixed limit",
            "relay r.test[127.0.0.4]: 450 4.7.1 try later",
            "relay r.test[127.0.0.4]: 550 no 5.7.1 here",
        ] {
            assert!(!refuses_us(theirs), "{theirs}");
        }
    }
}
