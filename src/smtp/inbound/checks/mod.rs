//! Inbound checks on mail from other servers (MX listener only): iprev and DNSBL at connect, SPF at MAIL FROM,
//! DKIM and DMARC after DATA; each with its configured [`Action`] (reject / mark into Junk / off).
//!
//! The shape follows maddy's check pipeline: each check only reports an [`Outcome`]; this module alone turns
//! outcomes into consequences (a reply, the Junk folder) according to the [`CheckPolicy`], and writes what it
//! found into the `Authentication-Results:` header (RFC 8601, see [`results`]) and a one-line summary for the log.
//!
//! Rules that hold for every check:
//! - Only definite failures have consequences. A DNS timeout or SERVFAIL is `temperror` and never rejects or
//!   marks: a receiver must not lose mail because its own DNS is slow.
//! - Every DNS-using step is bounded: the resolver's per-query timeouts, plus an overall limit per step
//!   ([`STEP_TIMEOUT`]) after which the step counts as `temperror`, so no client waits on DNS forever.
//! - A check whose action is `off` runs no lookup and is not reported. SPF and DKIM still run for DMARC when
//!   DMARC is on (DMARC is defined over their results), but they are then neither reported nor acted on.

mod content;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod forwarding;
pub mod iprev;
pub mod results;
pub mod spf;

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::{AuthenticatedMessage, SpfOutput};

use crate::dns::Resolver;
use crate::smtp::inbound::command::Reply;
use crate::smtp::metrics::RejectReason;
use crate::smtp::settings::{Action, CheckPolicy};
use content::{Decision, fallback_domain, report_dkim};
pub use results::Outcome;

/// The longest any one check step (iprev, all DNSBL zones, SPF, DKIM, DMARC) may take before it counts as
/// `temperror`. SPF alone may need ten lookups; receivers commonly give it 20 s, the client's patience is less.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The checks, shared by every session.
pub struct Checks {
    resolver: Resolver,
    policy: CheckPolicy,
    hostname: String,
    step_timeout: Duration,
}

/// What is known about the client once it has connected.
#[derive(Debug, Clone, Default)]
pub struct ConnectResult {
    /// The client IP's PTR name when it forward-confirms (iprev pass), for logs and the Received header.
    pub ptr: Option<String>,
    /// Set when a check with action reject failed: the reply to give at the first MAIL/RCPT.
    pub reject: Option<Reply>,
    /// A check with action mark failed: deliver into Junk.
    pub junk: bool,
    /// The check behind `reject` (or else `junk`): `dnsbl` or `iprev`, for logs and metrics labels.
    pub reason: Option<RejectReason>,
    /// The iprev result, when iprev ran.
    pub iprev: Option<iprev::Iprev>,
    /// The blocklist answers, when DNSBL checks ran.
    pub dnsbl: Option<dnsbl::Dnsbl>,
}

impl ConnectResult {
    /// For the log line of a connection refused before any message: `iprev=fail dnsbl=listed:bl.example`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(i) = &self.iprev {
            parts.push(format!("iprev={}", i.outcome));
        }
        if let Some(d) = &self.dnsbl {
            parts.push(format!("dnsbl={}", d.summary()));
        }
        parts.join(" ")
    }
}

/// The SPF result of one transaction.
#[derive(Debug, Clone, Default)]
pub struct SpfResult {
    /// Set when SPF failed with action reject: the reply to MAIL FROM.
    pub reject: Option<Reply>,
    /// SPF failed with action mark.
    pub junk: bool,
    /// `spf` when `reject` or `junk` is set (for logs and metrics labels).
    pub reason: Option<RejectReason>,
    /// The reported SPF result; `None` when the SPF check is off (or did not run).
    pub outcome: Option<Outcome>,
    /// The evaluation itself (also made, unreported, for DMARC when SPF is off but DMARC is on).
    pub eval: Option<spf::Spf>,
}

/// The verdict on one message.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The complete `Authentication-Results:` header field, folded, ending in CRLF.
    pub authentication_results: String,
    /// Set when a check with action reject failed (DMARC p=reject ...): the reply to the end of DATA.
    pub reject: Option<Reply>,
    /// Deliver into the Junk folder (a mark action failed here, at MAIL FROM or at connect).
    pub junk: bool,
    /// One line for the transaction log, e.g. `iprev=pass spf=pass dkim=pass dmarc=pass dnsbl=clean`.
    pub summary: String,
    /// The check behind `reject` (or else `junk`): `dmarc`, `dkim`, `spf`, `iprev` or `dnsbl`.
    pub reason: Option<RejectReason>,
    /// The DKIM results, when DKIM was checked and reported.
    pub dkim: Option<dkim::Dkim>,
    /// The DMARC result, when DMARC was checked.
    pub dmarc: Option<dmarc::Dmarc>,
}

impl Checks {
    /// Checks that query DNS through `resolver` and answer as `hostname` (the authserv-id).
    pub fn new(resolver: Resolver, policy: CheckPolicy, hostname: String) -> Checks {
        Checks {
            resolver,
            policy,
            hostname,
            step_timeout: STEP_TIMEOUT,
        }
    }

    /// The same checks with another per-step limit than [`STEP_TIMEOUT`] (tests use a short one).
    pub fn with_step_timeout(mut self, timeout: Duration) -> Checks {
        self.step_timeout = timeout;
        self
    }

    /// The actions in force.
    pub fn policy(&self) -> &CheckPolicy {
        &self.policy
    }

    /// At connect: iprev and DNSBL of the client IP, concurrently.
    pub async fn connect(&self, ip: IpAddr) -> ConnectResult {
        let ip = ip.to_canonical();
        let p = &self.policy;
        let auth = self.resolver.authenticator();
        let iprev = async {
            match p.iprev {
                Action::Off => None,
                _ => Some(iprev::check(auth, ip, self.step_timeout).await),
            }
        };
        let lists = async {
            match p.dnsbl {
                Action::Off => None,
                _ if p.dnsbl_lists.is_empty() => None,
                _ => {
                    Some(dnsbl::check(&self.resolver, ip, &p.dnsbl_lists, self.step_timeout).await)
                }
            }
        };
        let (iprev, lists) = tokio::join!(iprev, lists);
        let mut d = Decision::default();
        if let Some(zone) = lists.as_ref().and_then(|l| l.listed_zone()) {
            d.apply(p.dnsbl, RejectReason::Dnsbl, || {
                Reply::new(
                    554,
                    Some((5, 7, 1)),
                    format!("client [{ip}] blocked using {zone}"),
                )
            });
        }
        if iprev.as_ref().is_some_and(|i| i.failed()) {
            d.apply(p.iprev, RejectReason::Iprev, || {
                Reply::new(
                    550,
                    Some((5, 7, 25)),
                    format!("reverse DNS validation failed for [{ip}]"),
                )
            });
        }
        ConnectResult {
            ptr: iprev.as_ref().and_then(|i| i.ptr.clone()),
            reject: d.reject,
            junk: d.junk,
            reason: d.reason,
            iprev,
            dnsbl: lists,
        }
    }

    /// At MAIL FROM: SPF of `sender` (empty for the null sender, then of the HELO name). Nothing runs when the
    /// connection is already refused.
    pub async fn mail_from(
        &self,
        conn: &ConnectResult,
        ip: IpAddr,
        helo: &str,
        sender: &str,
    ) -> SpfResult {
        let p = &self.policy;
        if conn.reject.is_some() || (p.spf == Action::Off && p.dmarc == Action::Off) {
            return SpfResult::default();
        }
        let auth = self.resolver.authenticator();
        let eval = spf::check(
            auth,
            ip.to_canonical(),
            helo,
            sender,
            &self.hostname,
            self.step_timeout,
        )
        .await;
        let mut d = Decision::default();
        if p.spf != Action::Off && eval.outcome == Outcome::Fail {
            d.apply(p.spf, RejectReason::Spf, || {
                Reply::new(
                    550,
                    Some((5, 7, 23)),
                    format!("SPF check failed for {}", eval.domain),
                )
            });
        }
        SpfResult {
            reject: d.reject,
            junk: d.junk,
            reason: d.reason,
            outcome: (p.spf != Action::Off).then_some(eval.outcome),
            eval: Some(eval),
        }
    }

    /// After DATA: DKIM and DMARC, and the combined verdict with the Authentication-Results header.
    pub async fn message(
        &self,
        conn: &ConnectResult,
        spf: &SpfResult,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        message: &[u8],
    ) -> Verdict {
        let ip = ip.to_canonical();
        let p = &self.policy;
        let mut header = results::Header::new(&self.hostname);
        let mut summary = Vec::new();
        let mut d = Decision {
            junk: conn.junk || spf.junk,
            reason: if conn.junk {
                conn.reason
            } else {
                spf.reason.filter(|_| spf.junk)
            },
            ..Decision::default()
        };
        if let Some(i) = &conn.iprev {
            header.add(
                "iprev",
                i.outcome.as_str(),
                &[("policy.iprev", &ip.to_string())],
            );
            summary.push(format!("iprev={}", i.outcome));
        }
        if let (Some(outcome), Some(eval)) = (spf.outcome, &spf.eval) {
            header.add("spf", outcome.as_str(), &[eval.identity.property()]);
            summary.push(format!("spf={outcome}"));
        }
        let mut verdict = Verdict::default();
        if p.dkim != Action::Off || p.dmarc != Action::Off {
            let parsed = AuthenticatedMessage::parse(message).map(|mut m| {
                dkim::limit(&mut m);
                m
            });
            let mail_from_domain = spf
                .eval
                .as_ref()
                .map_or_else(|| fallback_domain(helo, sender), |e| e.domain.clone());
            let spf_output = spf.eval.as_ref().map_or_else(
                || SpfOutput::new(mail_from_domain.clone()),
                |e| e.output.clone(),
            );
            let (dkim, dmarc) = self
                .content(parsed.as_ref(), &mail_from_domain, &spf_output)
                .await;
            if p.dkim != Action::Off {
                report_dkim(&mut header, &mut summary, &dkim);
                if dkim.failed() {
                    d.apply(p.dkim, RejectReason::Dkim, || {
                        Reply::new(550, Some((5, 7, 20)), "no valid DKIM signature found")
                    });
                }
                verdict.dkim = Some(dkim);
            }
            if let Some(dm) = dmarc {
                self.act_on_dmarc(&mut d, &dm);
                let from = [("header.from", dm.domain.as_str())];
                header.add(
                    "dmarc",
                    dm.outcome.as_str(),
                    if dm.domain.is_empty() { &[] } else { &from },
                );
                summary.push(format!("dmarc={}", dm.outcome));
                verdict.dmarc = Some(dm);
            }
        }
        if let Some(lists) = &conn.dnsbl {
            summary.push(format!("dnsbl={}", lists.summary()));
        }
        if let Some(seen) = verdict.dmarc.as_mut().and_then(|dm| dm.seen.as_mut()) {
            seen.record.row.source_ip = Some(ip);
            if let (Some(spf::Identity::Helo(_)), Some(result)) = (
                spf.eval.as_ref().map(|e| &e.identity),
                seen.record.auth_results.spf.first_mut(),
            ) {
                result.scope = mail_auth::report::SPFDomainScope::Helo;
            }
            seen.done(d.reject.is_some(), d.junk);
        }
        verdict.authentication_results = header.render();
        verdict.summary = if summary.is_empty() {
            "none".to_string()
        } else {
            summary.join(" ")
        };
        verdict.reject = d.reject;
        verdict.junk = d.junk;
        verdict.reason = d.reason;
        verdict
    }

    /// The Authentication-Results header for mail submitted by an authenticated user.
    pub fn submission_results(&self, login: &str) -> String {
        let mut header = results::Header::new(&self.hostname);
        header.add("auth", "pass", &[("smtp.auth", login)]);
        header.render()
    }
}
