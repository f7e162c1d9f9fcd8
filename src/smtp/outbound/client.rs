//! The outbound SMTP client: hands one queued message to the mail servers of ONE recipient domain and says,
//! per recipient, what happened ([`Outbound::deliver_domain`]).
//!
//! 1. The envelope is checked (an address that cannot be written on a command line fails at once).
//! 2. [`super::route`] picks the hosts: a null MX fails every recipient (556 5.1.10), a permanent DNS verdict
//!    fails them, a temporary one defers them.
//! 3. The domain's MTA-STS policy ([`super::mta_sts`]): in `enforce` mode only MX hosts matching its `mx:`
//!    patterns are tried, and only over STARTTLS with a certificate verified for the MX name; otherwise the
//!    recipients are deferred, never sent in clear. In `testing` mode what `enforce` would refuse is logged.
//! 4. Hosts in order, each host's addresses IPv4 first, at most [`MAX_SESSIONS`] addresses per delivery, on
//!    the configured port: a refused or silent connection, a 4xx/5xx greeting, a failed EHLO, a 4xx to MAIL
//!    FROM or a connection lost before the message was sent moves on to the next address. Opportunistic
//!    STARTTLS whose handshake fails is retried once on the same address in plain text, as MTAs do.
//! 5. One session ([`super::session`]) settles the recipients: per-recipient RCPT replies, then the reply to
//!    the end of data for every accepted recipient. Recipients still open when every address has been tried
//!    are deferred with the last error.
//!
//! Outcome texts are one line and name where the verdict came from: `HOST[IP]: REPLY` for a remote reply
//! (`mx1.b.test[127.0.0.2]: 550 5.1.1 <x@b.test>: User unknown`), `HOST[IP]: X.Y.Z what happened` when the
//! server gave no reply (`... 4.4.1 connect to port 25 failed: Connection refused`), and `DOMAIN: ...` for
//! verdicts reached without a server (null MX, DNS, MTA-STS, bad envelope). Each carries a three-digit reply
//! code and/or an RFC 3463 enhanced status, so a DSN can show them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::mta_sts::{Policies, Requirement};
use super::relay::{self, deliver::Through, routes::Routes};
use super::reply::envelope_safe;
use super::session::{self, End, Envelope, Params, Security};
use super::tls_reports::TlsReports;
use super::{Route, RouteOptions, route};
use crate::dns::Resolver;
use crate::model::printable;
use crate::reports::send::recorder::Recorder;
use crate::smtp::metrics::Metrics;
use crate::smtp::queue::{Outcome, RecipientResult, Transport};
use crate::smtp::settings::OutboundSettings;
use crate::store::Store;
use crate::tls::Trust;

/// Bound on sending the message and reading the reply to the end of data (RFC 5321 4.5.3.2.6: 10 minutes).
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Most sessions (addresses tried) per delivery, so a domain with many dead hosts cannot hold a delivery slot
/// for hours; the rest is left to the next retry.
pub const MAX_SESSIONS: usize = 10;

/// Delivers messages to other domains' MX hosts. One per server; shared by every delivery task.
pub struct Outbound {
    resolver: Resolver,
    hostname: String,
    port: u16,
    timeout: Duration,
    data_timeout: Duration,
    trust: Trust,
    policies: Policies,
    /// Which relay a sender's mail takes, if any.
    routes: Routes,
    /// The roots that verify relays: webpki-roots, `extra_ca`, and the relay's `ca`.
    relay_trust: Trust,
    /// Counts relay failures that need the admin.
    metrics: Arc<Metrics>,
    /// Sessions with relay hosts kept open between deliveries.
    relay_pool: super::pool::Pool,
    /// Sessions with MX hosts kept open between deliveries.
    mx_pool: super::pool::Pool,
    /// Records TLS outcomes for the TLS reports this server sends (none: not recorded).
    reports: Option<Arc<Recorder>>,
}

impl Outbound {
    /// A client saying EHLO as `hostname`, resolving through `resolver`, connecting to `settings.port` with
    /// `settings.timeout` per step, fetching MTA-STS policies from `settings.mta_sts_port`. Trusts webpki-roots
    /// plus the CA certificates of `settings.extra_ca` (and for the relay, of `relay.ca`), and reads the relay's
    /// password file; an unusable file is a usage error naming its key.
    pub fn new(
        resolver: Resolver,
        hostname: String,
        settings: &OutboundSettings,
    ) -> crate::error::Result<Outbound> {
        let usage = |key: &str, e: String| crate::error::Error::usage(format!("{key}: {e}"));
        let trust = Trust::load(settings.extra_ca.as_deref())
            .map_err(|e| usage("server.outbound.extra_ca", e))?;
        let mut relay_trust = trust.clone();
        if let Some(ca) = settings.relay.as_ref().and_then(|r| r.ca.as_ref()) {
            let pem = std::fs::read_to_string(ca)
                .map_err(|e| usage("server.outbound.relay.ca", format!("{}: {e}", ca.display())))?;
            relay_trust = relay_trust
                .with_extra_pem(&pem)
                .map_err(|e| usage("server.outbound.relay.ca", format!("{}: {e}", ca.display())))?;
        }
        let configured = settings.relay.as_ref().map(|r| r.load()).transpose()?;
        let mut policies = Policies::new(trust.clone(), settings.timeout);
        policies.set_port(settings.mta_sts_port);
        Ok(Outbound {
            resolver,
            hostname,
            port: settings.port,
            timeout: settings.timeout,
            data_timeout: DATA_TIMEOUT,
            policies,
            trust,
            routes: Routes::new(configured),
            relay_trust,
            metrics: Arc::new(Metrics::default()),
            relay_pool: super::pool::Pool::default(),
            mx_pool: super::pool::Pool::default(),
            reports: None,
        })
    }

    /// Records each session's TLS outcome with `recorder`, for the domains that ask for TLS reports.
    pub fn with_reports(mut self, recorder: Arc<Recorder>) -> Outbound {
        self.reports = Some(recorder);
        self
    }

    /// The recorder of TLS outcomes, when set.
    pub(super) fn reports(&self) -> Option<&Recorder> {
        self.reports.as_deref()
    }

    /// The resolver deliveries use.
    pub(super) fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Reads per-sender-domain relay routes (`mailctl relay set`) from `store`.
    pub fn with_routes(mut self, store: Store) -> Outbound {
        self.routes.set_store(store);
        self
    }

    /// Counts relay failures in `metrics` (the daemon's, served on its endpoint).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Outbound {
        self.metrics = metrics;
        self
    }

    /// Also trusts the CA certificates in `pem`, for verified STARTTLS and policy fetches (what
    /// `[server.outbound] extra_ca` does from a file); the error says why the PEM is unusable.
    pub fn with_extra_ca(mut self, pem: &str) -> Result<Outbound, String> {
        self.trust = self.trust.with_extra_pem(pem)?;
        self.policies.set_trust(self.trust.clone());
        Ok(self)
    }

    /// Fetches MTA-STS policies from `port` instead of `settings.mta_sts_port`.
    pub fn with_mta_sts_port(mut self, port: u16) -> Outbound {
        self.policies.set_port(port);
        self
    }

    /// Waits `timeout` instead of [`DATA_TIMEOUT`] for the reply to the end of data. For tests only.
    pub fn with_data_timeout(mut self, timeout: Duration) -> Outbound {
        self.data_timeout = timeout;
        self
    }

    /// Delivers `message` (CRLF line ends) from `sender` (empty for the null sender, as DSNs use) to
    /// `recipients`, all at `domain`, in one transaction per session. Returns one result per recipient, in
    /// the order given. Never fails as a whole: every problem is some recipient's outcome.
    pub async fn deliver_domain(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Vec<RecipientResult> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; recipients.len()];
        self.deliver(domain, sender, recipients, message, &mut outcomes)
            .await;
        recipients
            .iter()
            .zip(outcomes)
            .map(|(address, outcome)| RecipientResult {
                address: address.clone(),
                outcome: outcome.unwrap_or_else(|| {
                    Outcome::Deferred(format!(
                        "{}: 4.4.1 no mail host could be tried",
                        printable(domain)
                    ))
                }),
            })
            .collect()
    }

    async fn deliver(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &[u8],
        outcomes: &mut [Option<Outcome>],
    ) {
        let shown = printable(domain);
        let fill = |outcomes: &mut [Option<Outcome>], outcome: Outcome| {
            for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                *o = Some(outcome.clone());
            }
        };
        if !sender.is_empty() && !envelope_safe(sender) {
            let why = format!(
                "{shown}: 5.1.7 the envelope sender cannot be sent by SMTP: {}",
                printable(sender)
            );
            return fill(outcomes, Outcome::Failed(why));
        }
        for (rcpt, outcome) in recipients.iter().zip(outcomes.iter_mut()) {
            if !envelope_safe(rcpt) {
                *outcome = Some(Outcome::Failed(format!(
                    "{shown}: 5.1.3 the recipient address cannot be sent by SMTP: {}",
                    printable(rcpt)
                )));
            }
        }
        if outcomes.iter().all(Option::is_some) {
            return;
        }
        let envelope = Envelope {
            sender,
            recipients,
            message,
        };
        match self.routes.for_sender(sender).await {
            Ok(None) => {}
            Ok(Some(relay)) => {
                let through = Through {
                    params: Params {
                        hostname: &self.hostname,
                        port: relay.url.port,
                        timeout: self.timeout,
                        data_timeout: self.data_timeout,
                        trust: &self.relay_trust,
                        relay: true,
                    },
                    resolver: &self.resolver,
                    metrics: &self.metrics,
                    pool: &self.relay_pool,
                };
                return relay::deliver::deliver(&relay, &through, &envelope, outcomes).await;
            }
            Err(why) => {
                tracing::error!(target: "mailctl::outbound", domain = shown, "{why}");
                return fill(outcomes, Outcome::Deferred(format!("{shown}: 4.3.0 {why}")));
            }
        }

        let hosts = match route(&self.resolver, domain, &RouteOptions::new(&self.hostname)).await {
            Route::Hosts(hosts) => hosts,
            Route::NullMx => {
                let why = format!("{shown}: 556 5.1.10 domain does not accept mail (null MX)");
                return fill(outcomes, Outcome::Failed(why));
            }
            Route::Permanent(e) => {
                let why = format!("{shown}: {} {}", e.status, printable(&e.reason));
                return fill(outcomes, Outcome::Failed(why));
            }
            Route::Temporary(e) => {
                let why = format!("{shown}: {} {}", e.status, printable(&e.reason));
                return fill(outcomes, Outcome::Deferred(why));
            }
        };

        let requirement = Requirement::of(self.policies.lookup(&self.resolver, domain).await);
        let hosts: Vec<_> = match &requirement {
            Requirement::Enforce(policy) => {
                let allowed: Vec<_> = hosts
                    .into_iter()
                    .filter(|h| policy.allows_mx(&h.name))
                    .collect();
                if allowed.is_empty() {
                    let why = format!(
                        "{shown}: 4.7.5 no MX host matches the MTA-STS policy (mx: {})",
                        printable(&policy.mx.join(", "))
                    );
                    return fill(outcomes, Outcome::Deferred(why));
                }
                allowed
            }
            Requirement::Testing(policy) => {
                for host in hosts.iter().filter(|h| !policy.allows_mx(&h.name)) {
                    tracing::warn!(target: "mailctl::outbound", domain = shown, host = host.name,
                        "MTA-STS (testing): MX host not in the policy; enforce would not deliver there");
                }
                hosts
            }
            Requirement::None => hosts,
        };
        let security = match &requirement {
            Requirement::Enforce(_) => Security::Verified(&shown),
            Requirement::Testing(_) => Security::Opportunistic(Some(&shown)),
            Requirement::None => Security::Opportunistic(None),
        };

        let params = Params {
            hostname: &self.hostname,
            port: self.port,
            timeout: self.timeout,
            data_timeout: self.data_timeout,
            trust: &self.trust,
            relay: false,
        };
        let mut last_error = None;
        let addresses = hosts
            .iter()
            .flat_map(|h| h.addresses().map(move |ip| (h.name.as_str(), ip)))
            .take(MAX_SESSIONS);
        let mut tls_reports = TlsReports::new(self, domain, &requirement, message);
        for (host, ip) in addresses {
            let (mut end, tls) = session::run(
                &params,
                host,
                ip,
                security,
                &envelope,
                outcomes,
                Some(&self.mx_pool),
            )
            .await;
            tls_reports.seen(host, ip, tls).await;
            if let End::RetryPlain(why) = end {
                last_error = Some(why);
                end = session::run(
                    &params,
                    host,
                    ip,
                    Security::Plain,
                    &envelope,
                    outcomes,
                    Some(&self.mx_pool),
                )
                .await
                .0;
            }
            match end {
                End::Done => break,
                End::NextAddress(why) | End::RetryPlain(why) | End::Refused(why) => {
                    tracing::debug!(target: "mailctl::outbound", domain = shown, "{why}");
                    last_error = Some(why);
                }
            }
            if outcomes.iter().all(Option::is_some) {
                break;
            }
        }
        let why =
            last_error.unwrap_or_else(|| format!("{shown}: 4.4.1 no mail host could be tried"));
        fill(outcomes, Outcome::Deferred(why));
    }
}

impl Transport for Outbound {
    fn deliver_domain<'a>(
        &'a self,
        domain: &'a str,
        sender: &'a str,
        recipients: &'a [String],
        message: &'a [u8],
    ) -> BoxFuture<'a, Vec<RecipientResult>> {
        Box::pin(Outbound::deliver_domain(
            self, domain, sender, recipients, message,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manager spawns deliveries on the multi-threaded runtime: the future must be `Send`.
    #[allow(dead_code)]
    fn deliver_future_is_send(outbound: &Outbound) {
        fn send<T: Send>(_: &T) {}
        send(&outbound.deliver_domain("b.test", "a@a.test", &[], b""));
    }
}
