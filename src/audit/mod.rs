//! `mailctl audit`: what a receiving server sees when it checks a domain, finding by finding.
//!
//! The runner first learns the domain's MX hosts and their addresses (every later check needs them), then runs
//! every check family concurrently over one shared [`Resolver`] (whose cache makes repeated lookups free). Each
//! check is a small async function from the shared [`Context`] and the domain to [`Finding`]s: it never prints,
//! never exits, and never turns a DNS failure into "missing" (that is [`Status::Unknown`]).

pub mod checks;
pub mod report;

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::dns::Resolver;
use crate::model::DomainName;
use crate::store::DkimKeyRow;

/// How a finding came out. Order matters: later is worse for the exit code (see [`report::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As a receiver wants it.
    Pass,
    /// Worth knowing, not a problem.
    Info,
    /// Works, but some receivers will frown.
    Warn,
    /// Could not be tested (timeout, SERVFAIL, refused connection on the auditing side).
    Unknown,
    /// Receivers will reject or junk mail because of this.
    Fail,
}

impl Status {
    /// Upper-case name as shown in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Info => "INFO",
            Status::Warn => "WARN",
            Status::Unknown => "UNKNOWN",
            Status::Fail => "FAIL",
        }
    }
}

/// One observation about one subject (a record, a host, an IP).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable check id, e.g. `mx.present`, `ptr.fcrdns`, `spf.lookups`.
    pub id: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was checked: a name, an IP, `mail.example.org (192.0.2.1)`.
    pub subject: String,
    /// What was seen, in one or a few lines.
    pub detail: String,
    /// The exact record or setting that fixes it, when there is one.
    pub fix: Option<String>,
}

impl Finding {
    /// A finding without a fix.
    pub fn new(
        id: &'static str,
        status: Status,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Finding {
            id,
            status,
            subject: subject.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    /// Adds the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// The standard UNKNOWN for a lookup that got no answer.
    pub fn unknown_dns(
        id: &'static str,
        subject: impl Into<String>,
        what: &str,
        reason: &str,
    ) -> Self {
        Finding::new(
            id,
            Status::Unknown,
            subject,
            format!("could not test: DNS lookup of {what} failed after a retry ({reason})"),
        )
    }
}

/// What the admin asked for, shared by every domain of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Outbound IPs (`--ip`, else `server.public_ips`).
    pub ips: Vec<IpAddr>,
    /// Extra DKIM selectors to try (`--selector`).
    pub selectors: Vec<String>,
    /// IP blocklist zones.
    pub ip_lists: Vec<String>,
    /// Domain blocklist zones.
    pub domain_lists: Vec<String>,
    /// Per-step timeout (DNS query, SMTP reply).
    pub timeout: Duration,
    /// Probe port 25 of the MX hosts.
    pub connect: bool,
    /// Also try to relay through each MX.
    pub relay_test: bool,
    /// Fetch the MTA-STS policy over HTTPS.
    pub fetch_policy: bool,
    /// Port of the SMTP probe (25; `--smtp-port`).
    pub smtp_port: u16,
    /// Port of the MTA-STS policy fetch (443; `--https-port`).
    pub https_port: u16,
    /// Probe this IP instead of each MX address (`--connect-to`).
    pub connect_to: Option<IpAddr>,
    /// The trusted roots (webpki-roots, plus `--extra-ca`).
    pub trust: crate::tls::Trust,
    /// Name this host uses in EHLO when probing.
    pub helo_name: String,
}

/// What the database knows about a domain (nothing, for a domain mailctl does not host).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The domain is in the database.
    pub hosted: bool,
    /// Its live DKIM keys.
    pub dkim_keys: Vec<DkimKeyRow>,
    /// `server.hostname`, the name the MX should carry.
    pub hostname: Option<String>,
    /// The relay host the domain's mail leaves through (`mailctl relay set`, else `[server.outbound.relay]` for
    /// a hosted domain), if any.
    pub relay: Option<crate::records::Relayed>,
    /// What the DMARC and TLS reports stored for the domain over the last [`REPORTS_DAYS`] days say (None: no
    /// database, or the domain is not hosted).
    pub reports: Option<crate::reports::summary::DomainSummary>,
}

/// How many days of stored reports the `reports.*` checks read.
pub const REPORTS_DAYS: i64 = 7;

impl Known {
    /// The relay host when it sends from addresses of its own (not one on this machine): then receivers judge
    /// its IP, not this server's.
    pub fn remote_relay(&self) -> Option<&crate::records::Relayed> {
        self.relay.as_ref().filter(|r| !r.local)
    }
}

/// One MX host with its addresses.
#[derive(Debug, Clone, Serialize)]
pub struct MxHost {
    /// Exchange name without the trailing dot.
    pub name: String,
    /// Preference.
    pub preference: u16,
    /// A and AAAA addresses.
    pub ips: Vec<IpAddr>,
}

/// What the MX check learned, which later checks build on.
#[derive(Debug, Clone, Default)]
pub struct MxFacts {
    /// Hosts by preference.
    pub hosts: Vec<MxHost>,
    /// The domain publishes a null MX (accepts no mail).
    pub null_mx: bool,
}

impl MxFacts {
    /// Every MX address with the host it belongs to.
    pub fn addresses(&self) -> Vec<(String, IpAddr)> {
        self.hosts
            .iter()
            .flat_map(|h| h.ips.iter().map(move |ip| (h.name.clone(), *ip)))
            .collect()
    }
}

/// Everything a check may use.
pub struct Context<'a> {
    /// The run's resolver (shared cache).
    pub resolver: &'a Resolver,
    /// The run's options.
    pub options: &'a Options,
    /// What the database knows about this domain.
    pub known: &'a Known,
    /// What the MX check found.
    pub mx: &'a MxFacts,
}

/// All findings for one domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainReport {
    /// The domain.
    pub domain: String,
    /// Worst status among the findings.
    pub status: Status,
    /// Every finding, in check order.
    pub findings: Vec<Finding>,
}

/// Every check family, by id prefix.
pub const FAMILIES: &[&str] = &[
    "mx", "ptr", "smtp", "spf", "dkim", "dmarc", "dnsbl", "mta_sts", "tls_rpt", "reports",
];

/// Refuses `--only`/`--skip` patterns that name no family (`spff`): a typo must not turn an audit into a
/// silent "0 passed".
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    let family = pattern.split('.').next().unwrap_or("");
    let well_formed = pattern
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if well_formed && FAMILIES.contains(&family) && pattern.split('.').count() <= 2 {
        Ok(())
    } else {
        Err(format!(
            "unknown check '{}' (families: {})",
            crate::model::printable(pattern),
            FAMILIES.join(", ")
        ))
    }
}

/// Which check ids a run keeps (`--only`, `--skip`), by id or id prefix (`spf` matches `spf.lookups`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Keep only these.
    pub only: Vec<String>,
    /// Drop these.
    pub skip: Vec<String>,
}

impl Selection {
    fn matches(pattern: &str, id: &str) -> bool {
        id == pattern || id.starts_with(&format!("{pattern}."))
    }

    /// Whether a finding id is kept.
    pub fn keeps(&self, id: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| Self::matches(p, id)))
            && !self.skip.iter().any(|p| Self::matches(p, id))
    }

    /// Whether any id of a check family (its prefix) can be kept, so the family must run.
    pub fn runs(&self, family: &str) -> bool {
        let only = self.only.is_empty()
            || self
                .only
                .iter()
                .any(|p| Self::matches(p, family) || Self::matches(family, p));
        only && !self.skip.iter().any(|p| p == family)
    }
}

/// How many per-step timeouts one domain's audit may take in all (each step is bounded, their sum is not).
const DEADLINE_STEPS: u32 = 15;

/// Audits one domain, within a deadline of [`DEADLINE_STEPS`] timeouts.
pub async fn audit_domain(
    resolver: &Resolver,
    options: &Options,
    selection: &Selection,
    domain: &DomainName,
    known: &Known,
) -> DomainReport {
    let deadline = options.timeout * DEADLINE_STEPS;
    let checks = run_checks(resolver, options, selection, domain, known);
    let mut findings = match tokio::time::timeout(deadline, checks).await {
        Ok(findings) => findings,
        Err(_) => vec![Finding::new(
            "mx.present",
            Status::Unknown,
            domain.to_string(),
            format!(
                "the audit did not finish within {} s (slow DNS or SMTP); nothing is reported",
                deadline.as_secs()
            ),
        )],
    };
    if findings.is_empty() {
        findings.push(Finding::new(
            "mx.present",
            Status::Unknown,
            domain.to_string(),
            "no check ran (check --only, --skip and --no-connect)",
        ));
    }
    let status = findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Pass);
    DomainReport {
        domain: domain.to_string(),
        status,
        findings,
    }
}

async fn run_checks(
    resolver: &Resolver,
    options: &Options,
    selection: &Selection,
    domain: &DomainName,
    known: &Known,
) -> Vec<Finding> {
    let (mut findings, mx) = checks::mx::check(resolver, domain).await;
    let ctx = Context {
        resolver,
        options,
        known,
        mx: &mx,
    };
    findings.extend(checks::run_all(&ctx, selection, domain).await);
    // MX problems stay visible whatever is selected: every other family builds on the MX hosts, and an
    // unanswered MX lookup must not turn `--only smtp` into a silent pass.
    findings.retain(|f| {
        selection.keeps(f.id)
            || (f.id.starts_with("mx.") && !matches!(f.status, Status::Pass | Status::Info))
    });
    findings
}
