//! What the stored reports say per domain over a period: the mail receivers saw as the domain, by source IP and
//! whose IP it is (this server's, its relay's, someone else's), DKIM and SPF aligned pass rates, what receivers
//! quarantined or rejected, the failing sources with their likely cause, and TLS sessions to the domain's MX.
//!
//! The verdict is about the domain's own mail: the share of messages from this server's IPs (and its relay's)
//! that failed DMARC at receivers, against warning and critical thresholds. Mail from other IPs that fails is
//! forgery or a service that should be authorized; it is listed, not judged. Without `public_ips` configured
//! every message counts as own mail, and the summary says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::store::{ReporterTotals, SourceTotals, TlsTotals};

/// How many sources and failing sources a domain's summary lists.
pub const LISTED: usize = 10;

/// Warning and critical thresholds, as fractions of own mail (or TLS sessions) that failed.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// At or above: WARNING.
    pub warn: f64,
    /// At or above: CRITICAL.
    pub crit: f64,
}

/// A verdict, ordered from best to worst as monitoring ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Below the thresholds.
    Ok,
    /// No reports to judge.
    Unknown,
    /// At or above the warning threshold.
    Warning,
    /// At or above the critical threshold.
    Critical,
}

impl Status {
    /// The word monitoring plugins print: `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// The exit code monitoring plugins use: 0, 1, 2, 3.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
}

/// Whose IP a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Whose {
    /// One of this server's `public_ips`.
    Ours,
    /// The domain's relay host's.
    Relay,
    /// Someone else's.
    Other,
}

/// What this server knows about where its mail leaves from.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// This server's public IPs (`public_ips`).
    pub ours: HashSet<IpAddr>,
    /// Per domain, the addresses of its relay host.
    pub relays: HashMap<String, HashSet<IpAddr>>,
}

impl Known {
    fn whose(&self, domain: &str, ip: &str) -> Whose {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return Whose::Other;
        };
        if self.ours.contains(&ip) {
            Whose::Ours
        } else if self.relays.get(domain).is_some_and(|r| r.contains(&ip)) {
            Whose::Relay
        } else {
            Whose::Other
        }
    }
}

/// One source IP of a domain's mail.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The IP (empty when reporters left it out).
    pub ip: String,
    /// Its PTR name, when looked up and found.
    pub ptr: Option<String>,
    /// Whose it is.
    pub whose: Whose,
    /// Messages receivers saw from it as the domain.
    pub messages: i64,
    /// Of those, passed DMARC (DKIM or SPF aligned).
    pub dmarc_pass: i64,
    /// Passed DKIM aligned.
    pub dkim_pass: i64,
    /// Passed SPF aligned.
    pub spf_pass: i64,
    /// Quarantined by receivers.
    pub quarantined: i64,
    /// Rejected by receivers.
    pub rejected: i64,
    /// For a source whose mail failed DMARC: the likely cause and what to do.
    pub cause: Option<String>,
}

impl Source {
    /// Messages that failed DMARC.
    pub fn failed(&self) -> i64 {
        self.messages - self.dmarc_pass
    }
}

/// One reporter of a domain.
#[derive(Debug, Clone, Serialize)]
pub struct Reporter {
    /// Its organization name.
    pub org_name: String,
    /// `dmarc` or `tls`.
    pub kind: String,
    /// How many reports.
    pub reports: i64,
}

/// The summary of one domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainSummary {
    /// The domain.
    pub domain: String,
    /// The verdict and why.
    pub status: Status,
    /// One line: why this status.
    pub reason: String,
    /// Reports in the period.
    pub reports: i64,
    /// Who sent them.
    pub reporters: Vec<Reporter>,
    /// The earliest report period start and the latest end (`YYYY-MM-DD HH:MM:SS` UTC), when any.
    pub first: Option<String>,
    /// See `first`.
    pub last: Option<String>,
    /// Messages receivers saw as the domain, and how many passed DMARC, DKIM and SPF aligned.
    pub messages: i64,
    /// See `messages`.
    pub dmarc_pass: i64,
    /// See `messages`.
    pub dkim_pass: i64,
    /// See `messages`.
    pub spf_pass: i64,
    /// Messages receivers quarantined.
    pub quarantined: i64,
    /// Messages receivers rejected.
    pub rejected: i64,
    /// The domain's own mail (from this server's and its relay's IPs; all mail without `public_ips`).
    pub own_messages: i64,
    /// Of it, failed DMARC.
    pub own_failed: i64,
    /// Of it, passed DKIM aligned.
    pub own_dkim_pass: i64,
    /// Whether `own_*` counts only known IPs (`false`: every message, no `public_ips` configured).
    pub own_by_ip: bool,
    /// The sources with the most messages.
    pub sources: Vec<Source>,
    /// The sources with the most failing messages, with their likely cause.
    pub problems: Vec<Source>,
    /// TLS sessions to the domain's MX that receivers reported, and how many failed.
    pub tls_sessions: i64,
    /// See `tls_sessions`.
    pub tls_failed: i64,
    /// Failed sessions by result type (`certificate-expired`, ...).
    pub tls_failures: Vec<(String, i64)>,
}

/// `part` of `whole` in percent (0 when `whole` is 0).
pub fn percent(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The likely cause of a source's DMARC failures, in words an admin can act on.
fn cause(domain: &str, s: &Source, dkim_auth: &str, spf_auth: &str) -> Option<String> {
    if s.failed() <= 0 {
        return None;
    }
    let at = match &s.ptr {
        Some(ptr) => format!("{} ({ptr})", s.ip),
        None => s.ip.clone(),
    };
    let signed_by_us_but_broken = dkim_auth
        .split_whitespace()
        .any(|r| r.starts_with(&format!("{domain}/")) && !r.ends_with("=pass"));
    let spf_domain = spf_auth
        .split_whitespace()
        .next()
        .and_then(|r| r.split_once('='))
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    Some(match s.whose {
        Whose::Ours | Whose::Relay => {
            let whose = if s.whose == Whose::Ours {
                "this server"
            } else {
                "the relay host"
            };
            let mut what = Vec::new();
            if s.dkim_pass < s.messages {
                what.push(format!(
                    "DKIM did not pass aligned (is serve signing for {domain}, and does the published key match? \
                     `mailctl audit {domain}`)"
                ));
            }
            if s.spf_pass < s.messages {
                what.push(format!(
                    "SPF did not pass aligned (is {} in the SPF record of {domain}?)",
                    s.ip
                ));
            }
            format!(
                "mail of {whose} from {at} fails DMARC at receivers: {}",
                what.join("; ")
            )
        }
        Whose::Other if signed_by_us_but_broken => format!(
            "mail from {at} carried a DKIM signature of {domain} that no longer verified: forwarded or changed on \
             the way (a mailing list or forwarder); ARC helps receivers that honour it"
        ),
        Whose::Other
            if !spf_domain.is_empty()
                && spf_domain != domain
                && !spf_domain.ends_with(&format!(".{domain}")) =>
        {
            format!(
                "a service sending as {domain} from {at} with its own envelope domain {spf_domain} and no DKIM \
                 signature of {domain}: if it is yours, have it sign with a key of {domain} or send with an envelope \
                 in {domain} that SPF allows; if not, it is forgery, which the DMARC policy handles"
            )
        }
        Whose::Other => format!(
            "a sender from {at} not authorized for {domain} (neither DKIM nor SPF aligned): if it is yours, add it \
             to the SPF record or have it sign; if not, it is forgery, which the DMARC policy handles"
        ),
    })
}

/// Builds the summaries of `domains` (every domain with reports when empty) from the stored totals. `ptr`
/// holds the PTR names found for source IPs.
pub fn summarize(
    domains: &[String],
    sources: &[SourceTotals],
    reporters: &[ReporterTotals],
    tls: &[TlsTotals],
    known: &Known,
    ptr: &HashMap<String, String>,
    limits: Thresholds,
) -> Vec<DomainSummary> {
    let mut names: Vec<String> = domains.to_vec();
    if names.is_empty() {
        let all: std::collections::BTreeSet<&str> =
            reporters.iter().map(|r| r.domain.as_str()).collect();
        names = all.into_iter().map(str::to_string).collect();
    }
    // Each domain's rows, found once (the totals are sorted by domain, but nothing here relies on it).
    fn group<'t, T>(rows: &'t [T], key: impl Fn(&T) -> &str) -> HashMap<&'t str, Vec<&'t T>>
    where
        T: 't,
    {
        let mut map: HashMap<&str, Vec<&T>> = HashMap::new();
        for r in rows {
            map.entry(key(r)).or_default().push(r);
        }
        map
    }
    let sources = group(sources, |t| t.domain.as_str());
    let reporters = group(reporters, |r| r.domain.as_str());
    let tls = group(tls, |t| t.domain.as_str());
    names
        .iter()
        .map(|domain| {
            // Own mail is told by IP when this server's IPs or the domain's relay are known; otherwise all of it.
            let by_ip = !known.ours.is_empty() || known.relays.contains_key(domain.as_str());
            let mut s = DomainSummary {
                domain: domain.clone(),
                status: Status::Unknown,
                reason: String::new(),
                reports: 0,
                reporters: Vec::new(),
                first: None,
                last: None,
                messages: 0,
                dmarc_pass: 0,
                dkim_pass: 0,
                spf_pass: 0,
                quarantined: 0,
                rejected: 0,
                own_messages: 0,
                own_failed: 0,
                own_dkim_pass: 0,
                own_by_ip: by_ip,
                sources: Vec::new(),
                problems: Vec::new(),
                tls_sessions: 0,
                tls_failed: 0,
                tls_failures: Vec::new(),
            };
            for r in reporters.get(domain.as_str()).into_iter().flatten() {
                s.reports += r.reports;
                s.reporters.push(Reporter {
                    org_name: r.org_name.clone(),
                    kind: r.kind.clone(),
                    reports: r.reports,
                });
                if s.first.as_ref().is_none_or(|f| &r.first < f) {
                    s.first = Some(r.first.clone());
                }
                if s.last.as_ref().is_none_or(|l| &r.last > l) {
                    s.last = Some(r.last.clone());
                }
            }
            let mut all = Vec::new();
            for t in sources.get(domain.as_str()).into_iter().flatten() {
                let mut source = Source {
                    ip: t.source_ip.clone(),
                    ptr: ptr.get(&t.source_ip).cloned(),
                    whose: known.whose(domain, &t.source_ip),
                    messages: t.messages,
                    dmarc_pass: t.dmarc_pass,
                    dkim_pass: t.dkim_pass,
                    spf_pass: t.spf_pass,
                    quarantined: t.quarantined,
                    rejected: t.rejected,
                    cause: None,
                };
                source.cause = cause(domain, &source, &t.dkim_auth, &t.spf_auth);
                s.messages += t.messages;
                s.dmarc_pass += t.dmarc_pass;
                s.dkim_pass += t.dkim_pass;
                s.spf_pass += t.spf_pass;
                s.quarantined += t.quarantined;
                s.rejected += t.rejected;
                if !by_ip || source.whose != Whose::Other {
                    s.own_messages += source.messages;
                    s.own_failed += source.failed();
                    s.own_dkim_pass += source.dkim_pass;
                }
                all.push(source);
            }
            s.sources = all.iter().take(LISTED).cloned().collect();
            let mut failing: Vec<&Source> = all.iter().filter(|x| x.failed() > 0).collect();
            failing.sort_by(|a, b| b.failed().cmp(&a.failed()).then(a.ip.cmp(&b.ip)));
            s.problems = failing.into_iter().take(LISTED).cloned().collect();
            let mut failures: BTreeMap<String, i64> = BTreeMap::new();
            for t in tls.get(domain.as_str()).into_iter().flatten() {
                s.tls_sessions += t.sessions;
                if t.result != "success" {
                    s.tls_failed += t.sessions;
                    *failures.entry(t.result.clone()).or_default() += t.sessions;
                }
            }
            let mut failures: Vec<(String, i64)> = failures.into_iter().collect();
            failures.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            s.tls_failures = failures;
            judge(&mut s, limits);
            s
        })
        .collect()
}

/// Sets the status and reason of a summary: the worse of the own-mail verdict and the TLS verdict, UNKNOWN
/// when there is neither.
fn judge(s: &mut DomainSummary, limits: Thresholds) {
    let level = |share: f64| {
        if share >= limits.crit * 100.0 {
            Status::Critical
        } else if share >= limits.warn * 100.0 {
            Status::Warning
        } else {
            Status::Ok
        }
    };
    let mut verdicts = Vec::new();
    let mut parts = Vec::new();
    if s.own_messages > 0 {
        let share = percent(s.own_failed, s.own_messages);
        verdicts.push(level(share));
        let whose = if s.own_by_ip {
            "own mail"
        } else {
            "mail (all sources: no public_ips configured)"
        };
        parts.push(format!(
            "{share:.1}% of {whose} failed DMARC ({} of {} messages)",
            s.own_failed, s.own_messages
        ));
    } else if s.messages > 0 {
        verdicts.push(Status::Ok);
        parts.push(format!(
            "no mail from this server's IPs among {} reported messages",
            s.messages
        ));
    }
    if s.tls_sessions > 0 {
        let share = percent(s.tls_failed, s.tls_sessions);
        verdicts.push(level(share));
        parts.push(format!(
            "{share:.1}% of TLS sessions to its MX failed ({} of {})",
            s.tls_failed, s.tls_sessions
        ));
    }
    if parts.is_empty() {
        parts.push("no reports in the period".into());
    }
    s.status = verdicts.into_iter().max().unwrap_or(Status::Unknown);
    s.reason = parts.join("; ");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(
        domain: &str,
        ip: &str,
        messages: i64,
        dkim: i64,
        spf: i64,
        spf_auth: &str,
    ) -> SourceTotals {
        SourceTotals {
            domain: domain.into(),
            source_ip: ip.into(),
            messages,
            dkim_pass: dkim,
            spf_pass: spf,
            dmarc_pass: dkim.max(spf),
            quarantined: 0,
            rejected: messages - dkim.max(spf),
            dkim_auth: String::new(),
            spf_auth: spf_auth.into(),
        }
    }

    fn reporter(domain: &str) -> ReporterTotals {
        ReporterTotals {
            domain: domain.into(),
            kind: "dmarc".into(),
            org_name: "google.com".into(),
            reports: 2,
            messages: 0,
            failed: 0,
            first: "2026-12-01 00:00:00".into(),
            last: "2026-12-06 23:59:59".into(),
        }
    }

    const LIMITS: Thresholds = Thresholds {
        warn: 0.02,
        crit: 0.10,
    };

    #[test]
    fn own_mail_is_judged_and_other_senders_are_listed_with_a_cause() {
        let known = Known {
            ours: ["192.0.2.25".parse().unwrap()].into(),
            ..Known::default()
        };
        let sources = [
            totals(
                "example.org",
                "192.0.2.25",
                1000,
                970,
                1000,
                "example.org=pass",
            ),
            totals("example.org", "198.51.100.7", 40, 0, 0, "mailer.test=pass"),
        ];
        let ptr = HashMap::from([("198.51.100.7".to_string(), "out.mailer.test".to_string())]);
        let s = summarize(
            &[],
            &sources,
            &[reporter("example.org")],
            &[],
            &known,
            &ptr,
            LIMITS,
        );
        let s = &s[0];
        assert_eq!((s.own_messages, s.own_failed), (1000, 0));
        assert_eq!(s.status, Status::Ok, "{}", s.reason);
        assert_eq!(s.problems.len(), 1);
        let cause = s.problems[0].cause.as_deref().unwrap();
        assert!(
            cause.contains("198.51.100.7 (out.mailer.test)") && cause.contains("mailer.test"),
            "{cause}"
        );

        // Our own IP failing DKIM and SPF for 5% of its mail: WARNING, with what to check.
        let sources = [totals(
            "example.org",
            "192.0.2.25",
            1000,
            950,
            950,
            "example.org=fail",
        )];
        let s = &summarize(
            &[],
            &sources,
            &[reporter("example.org")],
            &[],
            &known,
            &ptr,
            LIMITS,
        )[0];
        assert_eq!(s.status, Status::Warning, "{}", s.reason);
        assert!(
            s.reason
                .starts_with("5.0% of own mail failed DMARC (50 of 1000 messages)"),
            "{}",
            s.reason
        );
        assert!(
            s.problems[0]
                .cause
                .as_deref()
                .unwrap()
                .contains("mailctl audit example.org")
        );
    }

    #[test]
    fn without_reports_the_status_is_unknown_and_tls_failures_count() {
        let s = &summarize(
            &["quiet.test".into()],
            &[],
            &[],
            &[],
            &Known::default(),
            &HashMap::new(),
            LIMITS,
        )[0];
        assert_eq!(s.status, Status::Unknown);
        assert_eq!(s.reason, "no reports in the period");
        let tls = [
            TlsTotals {
                domain: "example.org".into(),
                result: "success".into(),
                sessions: 80,
            },
            TlsTotals {
                domain: "example.org".into(),
                result: "certificate-expired".into(),
                sessions: 20,
            },
        ];
        let s = &summarize(
            &["example.org".into()],
            &[],
            &[],
            &tls,
            &Known::default(),
            &HashMap::new(),
            LIMITS,
        )[0];
        assert_eq!(s.status, Status::Critical, "{}", s.reason);
        assert_eq!(s.tls_failures, [("certificate-expired".to_string(), 20)]);
    }
}
