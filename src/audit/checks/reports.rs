//! `reports.dmarc`, `reports.tls`: what real receivers reported about the domain over the last
//! [`REPORTS_DAYS`](crate::audit::REPORTS_DAYS) days, from the reports stored by `mailctl reports import` and by
//! `serve` ([`crate::reports`]). The audit simulates one receiver; these are the verdicts of all of them.
//!
//! `reports.dmarc` FAILs when receivers saw DKIM fail for at least 2% of the mail from this server's IPs (and its
//! relay's): a signing or key problem that forwarding turns into DMARC failures. It WARNs when at least 2% of
//! that mail failed DMARC, and is INFO without reports or without mail from known IPs. `reports.tls` WARNs when
//! at least 2% of the TLS sessions receivers reported failed (FAIL from 10%).

use super::super::{Context, Finding, Status};
use crate::model::DomainName;
use crate::reports::summary::percent;

/// The share (percent) from which a problem counts.
const WARN: f64 = 2.0;
const CRIT: f64 = 10.0;

/// The `reports.*` findings of `domain` (none when the audit has no database or does not host it).
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let Some(s) = &ctx.known.reports else {
        return Vec::new();
    };
    let subject = domain.as_str();
    let days = crate::audit::REPORTS_DAYS;
    let mut findings = Vec::new();
    let dmarc_reports: i64 = s
        .reporters
        .iter()
        .filter(|r| r.kind == "dmarc")
        .map(|r| r.reports)
        .sum();
    findings.push(if dmarc_reports == 0 {
        Finding::new(
            "reports.dmarc",
            Status::Info,
            subject,
            format!("no DMARC aggregate reports stored from the last {days} days"),
        )
        .fix(
            "receivers send them to the rua= address of the DMARC record: `mailctl serve` stores what reaches \
             its report addresses, `mailctl reports import` what is already in a mailbox",
        )
    } else if s.own_messages == 0 {
        Finding::new(
            "reports.dmarc",
            Status::Info,
            subject,
            format!(
                "{dmarc_reports} reports from the last {days} days, none about mail from this server's IPs \
                 ({} messages from others)",
                s.messages
            ),
        )
    } else {
        let dkim_failed = s.own_messages - s.own_dkim_pass;
        let dkim_share = percent(dkim_failed, s.own_messages);
        let dmarc_share = percent(s.own_failed, s.own_messages);
        let whose = if s.own_by_ip {
            "mail from this server's IPs"
        } else {
            "all reported mail (no public_ips configured)"
        };
        let counts = format!(
            "in {dmarc_reports} reports from the last {days} days: {} messages",
            s.own_messages
        );
        if dkim_share >= WARN {
            Finding::new(
                "reports.dmarc",
                Status::Fail,
                subject,
                format!(
                    "receivers saw DKIM fail for {dkim_share:.1}% of {whose} ({dkim_failed} of {}; DMARC failed \
                     for {dmarc_share:.1}%) {counts}",
                    s.own_messages
                ),
            )
            .fix(format!(
                "check that serve signs for {subject} and that the published key matches (the dkim.* findings); \
                 `mailctl reports summary {subject}` lists the sources"
            ))
        } else if dmarc_share >= WARN {
            Finding::new(
                "reports.dmarc",
                Status::Warn,
                subject,
                format!(
                    "receivers saw DMARC fail for {dmarc_share:.1}% of {whose} ({} of {}) {counts}",
                    s.own_failed, s.own_messages
                ),
            )
            .fix(format!("`mailctl reports summary {subject}` lists the failing sources and why"))
        } else {
            Finding::new(
                "reports.dmarc",
                Status::Pass,
                subject,
                format!("receivers passed DMARC for {:.1}% of {whose} {counts}", 100.0 - dmarc_share),
            )
        }
    });
    findings.push(if s.tls_sessions == 0 {
        Finding::new(
            "reports.tls",
            Status::Info,
            subject,
            format!("no TLS reports stored from the last {days} days"),
        )
    } else {
        let share = percent(s.tls_failed, s.tls_sessions);
        let failures: Vec<String> = s
            .tls_failures
            .iter()
            .map(|(result, n)| format!("{result} {n}"))
            .collect();
        let status = if share >= CRIT {
            Status::Fail
        } else if share >= WARN {
            Status::Warn
        } else {
            Status::Pass
        };
        let detail = format!(
            "{share:.1}% of {} TLS sessions to the MX failed in the last {days} days{}",
            s.tls_sessions,
            if failures.is_empty() {
                String::new()
            } else {
                format!(": {}", failures.join(", "))
            }
        );
        let finding = Finding::new("reports.tls", status, subject, detail);
        if status == Status::Pass {
            finding
        } else {
            finding.fix("the mta_sts.* and smtp.* findings show the MX's certificate and STARTTLS")
        }
    });
    findings
}
