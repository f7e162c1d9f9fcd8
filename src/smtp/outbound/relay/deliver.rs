//! One delivery through a relay: the relay's addresses in turn (an IP in the URL, else its A/AAAA records), TLS
//! as the relay asks (implicit, or STARTTLS that must be offered and verify), AUTH when configured, then the
//! same transaction as with an MX host ([`crate::smtp::outbound::session`]). Outcome texts name the relay:
//! `relay HOST[IP]: 250 2.0.0 Ok: queued as ...`, so `mailctl queue show` says which route a message took.
//!
//! A failed TLS handshake, a refused login, or a relay refusing the envelope because of who we are (`530`, `5.7.x`
//! to MAIL FROM or RCPT TO: [`crate::smtp::outbound::session::refuses_us`]) is not the users' fault and not
//! something a retry by the sender fixes: every open recipient is deferred (the mail stays queued), the log says it at ERROR level, and the
//! metrics count it ([`RelayFailure`]); once the admin fixes the relay, the next attempt delivers.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{Relay, RelayTls, Scheme};
use crate::dns::Resolver;
use crate::smtp::metrics::{Metrics, RelayFailure};
use crate::smtp::outbound::MAX_SESSIONS;
use crate::smtp::outbound::mx::{Lookup, resolve_addresses};
use crate::smtp::outbound::pool::Pool;
use crate::smtp::outbound::reply::{self, Failure};
use crate::smtp::outbound::session::{self, End, Envelope, Params, transaction};
use crate::smtp::queue::Outcome;
use crate::tls::strict_config;
use tokio_rustls::TlsConnector;

/// What a delivery through a relay needs besides the relay.
pub struct Through<'a> {
    /// Session parameters (our name, timeouts, the roots that verify the relay); the port is the relay's.
    pub params: Params<'a>,
    /// For the relay's host name.
    pub resolver: &'a Resolver,
    /// Counts failures that need the admin.
    pub metrics: &'a Metrics,
    /// Sessions kept open between deliveries.
    pub pool: &'a Pool,
}

/// How one session with one relay address went wrong, when it did before the transaction.
enum Setback {
    /// Try the next address (connection refused, no greeting, a 4xx to AUTH...).
    Next(String),
    /// The admin must act: the mail stays queued.
    Admin(RelayFailure, String),
}

/// Delivers `envelope` through `relay`, filling the open (None) entries of `outcomes`: over a kept session
/// when there is one ([`Pool`]), else over a new one, which is kept afterwards.
pub async fn deliver(
    relay: &Relay,
    through: &Through<'_>,
    envelope: &Envelope<'_>,
    outcomes: &mut [Option<Outcome>],
) {
    let key = relay.pool_key();
    if let Some((end, _, _)) = through
        .pool
        .on_kept(&key, &through.params, envelope, outcomes, || true)
        .await
    {
        match end {
            End::Done => return,
            End::Refused(why) => {
                let why = format!("{why} (the relay refuses mail from us)");
                return admin(relay, through, RelayFailure::Refused, why, outcomes);
            }
            // The kept session failed before the message went out: a new one gets the open recipients.
            End::NextAddress(_) | End::RetryPlain(_) => {}
        }
        if outcomes.iter().all(Option::is_some) {
            return;
        }
    }
    let host = &relay.url.host;
    let ips = match relay.url.ip() {
        Some(ip) => vec![ip],
        None => match resolve_addresses(through.resolver, host).await {
            Ok((v4, v6)) => v4
                .into_iter()
                .map(IpAddr::V4)
                .chain(v6.into_iter().map(IpAddr::V6))
                .collect(),
            Err(Lookup::Failed(e)) => {
                let why = format!("relay {host}: 4.4.3 cannot resolve the relay host: {e}");
                return fill(outcomes, Outcome::Deferred(reply::one_line(&why)));
            }
            Err(Lookup::Missing) => {
                tracing::error!(target: "mailctl::outbound", relay = %relay.url,
                    "the relay host has no address; mail stays queued until it has one");
                let why = format!("relay {host}: 4.4.4 the relay host name has no address");
                return fill(outcomes, Outcome::Deferred(why));
            }
        },
    };
    let mut last_error = None;
    for ip in ips.into_iter().take(MAX_SESSIONS) {
        let who = format!("relay {host}[{ip}]");
        match connect(relay, through, &who, ip).await {
            Ok(mut conn) => {
                let mut healthy = true;
                let end = transaction(
                    &through.params,
                    &who,
                    envelope,
                    outcomes,
                    &mut conn,
                    &mut healthy,
                )
                .await;
                through.pool.keep_or_close(
                    &key,
                    &through.params,
                    conn,
                    who,
                    session::Tls::NotTried,
                    1,
                    &end,
                    healthy,
                    true,
                );
                match end {
                    End::Done => return,
                    End::NextAddress(why) | End::RetryPlain(why) => last_error = Some(why),
                    End::Refused(why) => {
                        let why = format!("{why} (the relay refuses mail from us)");
                        return admin(relay, through, RelayFailure::Refused, why, outcomes);
                    }
                }
            }
            Err(Setback::Next(why)) => {
                tracing::debug!(target: "mailctl::outbound", relay = %relay.url, "{why}");
                last_error = Some(why);
            }
            Err(Setback::Admin(kind, why)) => return admin(relay, through, kind, why, outcomes),
        }
        if outcomes.iter().all(Option::is_some) {
            return;
        }
    }
    let why = last_error
        .unwrap_or_else(|| format!("relay {host}: 4.4.1 no relay address could be tried"));
    fill(outcomes, Outcome::Deferred(why));
}

/// A failure only the admin can fix: counted, logged at ERROR, every open recipient deferred (never bounced).
fn admin(
    relay: &Relay,
    through: &Through<'_>,
    kind: RelayFailure,
    why: String,
    outcomes: &mut [Option<Outcome>],
) {
    through.metrics.relay_failure(kind);
    tracing::error!(target: "mailctl::outbound", relay = %relay.url, reason = kind.label(),
        "{why}; the mail stays queued until the relay settings are fixed");
    fill(outcomes, Outcome::Deferred(why));
}

/// Sets every open outcome to `outcome`.
fn fill(outcomes: &mut [Option<Outcome>], outcome: Outcome) {
    for o in outcomes.iter_mut().filter(|o| o.is_none()) {
        *o = Some(outcome.clone());
    }
}

/// Connects to the relay at `ip`, secures the connection as the relay asks and logs in; ready for MAIL FROM.
async fn connect(
    relay: &Relay,
    through: &Through<'_>,
    who: &str,
    ip: IpAddr,
) -> Result<AsyncSmtpConnection, Setback> {
    let params = &through.params;
    let (port, secs) = (relay.url.port, params.timeout.as_secs());
    let client_id = ClientId::Domain(params.hostname.to_string());
    let host = relay.url.host.as_str();
    let tls_failed = |e: &dyn std::fmt::Display| {
        Setback::Admin(
            RelayFailure::Tls,
            reply::one_line(&format!("{who}: 4.7.5 TLS with the relay failed: {e}")),
        )
    };
    let tcp = match timeout(
        params.timeout,
        TcpStream::connect(SocketAddr::new(ip, port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(Setback::Next(reply::one_line(&format!(
                "{who}: 4.4.1 connect to port {port} failed: {e}"
            ))));
        }
        Err(_) => {
            return Err(Setback::Next(format!(
                "{who}: 4.4.1 connect to port {port} timed out after {secs} s"
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    let transport: Box<dyn AsyncTokioStream> = match relay.url.scheme {
        Scheme::Starttls => Box::new(tcp),
        Scheme::Implicit => {
            let config = strict_config(params.trust.roots()).map_err(|e| tls_failed(&e))?;
            let name = ServerName::try_from(host.to_string()).map_err(|e| tls_failed(&e))?;
            let handshake = TlsConnector::from(config).connect(name, tcp);
            match timeout(params.timeout * 2, handshake).await {
                Ok(Ok(stream)) => Box::new(Tls(stream)),
                Ok(Err(e)) => return Err(tls_failed(&e)),
                Err(_) => {
                    return Err(Setback::Next(reply::timed_out(
                        who,
                        "the TLS handshake",
                        secs * 2,
                    )));
                }
            }
        }
    };
    let greeting = AsyncSmtpConnection::connect_with_transport(transport, &client_id);
    let mut conn = match timeout(params.timeout * 2, greeting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(Setback::Next(Failure::of(who, "greeting/EHLO", &e).text())),
        Err(_) => {
            return Err(Setback::Next(reply::timed_out(
                who,
                "the greeting/EHLO",
                secs * 2,
            )));
        }
    };
    if relay.url.scheme == Scheme::Starttls && relay.tls == RelayTls::Required {
        if !conn.can_starttls() {
            return Err(Setback::Admin(
                RelayFailure::Tls,
                format!("{who}: 4.7.5 the relay does not offer STARTTLS, which it must"),
            ));
        }
        let tls_params = params.trust.verified(host).map_err(|e| tls_failed(&e))?;
        // Any failure after the relay offered STARTTLS (a refused command, a handshake error, a certificate that
        // does not verify) is one the admin has to look at; lettre reports handshake errors as connection
        // errors, so they are not told apart further.
        match timeout(params.timeout * 2, conn.starttls(tls_params, &client_id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(tls_failed(&e)),
            Err(_) => return Err(Setback::Next(reply::timed_out(who, "STARTTLS", secs * 2))),
        }
    }
    if let Some((user, password)) = &relay.login {
        let credentials = Credentials::new(user.clone(), password.clone());
        let login = conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials);
        match timeout(params.timeout * 2, login).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_permanent() || e.is_client() => {
                return Err(Setback::Admin(
                    RelayFailure::Auth,
                    Failure::of(&format!("{who}: 4.7.8 login as {user} refused"), "AUTH", &e)
                        .text(),
                ));
            }
            Ok(Err(e)) => return Err(Setback::Next(Failure::of(who, "AUTH", &e).text())),
            Err(_) => return Err(Setback::Next(reply::timed_out(who, "AUTH", secs * 2))),
        }
    }
    Ok(conn)
}

/// The relay's implicit-TLS stream, handed to lettre as its transport (lettre's own implicit TLS reports a
/// failed handshake like a refused connection; done here, the two are told apart).
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}
