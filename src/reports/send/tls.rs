//! TLS reports (RFC 8460) about this server's deliveries: one event per SMTP session that tried STARTTLS with
//! a domain publishing `_smtp._tls` (`v=TLSRPTv1; rua=...`), summed per day into one report per recipient
//! domain: per policy applied (`sts` or `no-policy-found`), the successful sessions and each kind of failure
//! with the MX it happened with.

use std::collections::BTreeMap;
use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::mta_sts::{ReportUri, TlsRpt};
use mail_auth::report::tlsrpt::{
    DateRange, FailureDetails, Policy, PolicyDetails, ResultType, Summary, TlsReport,
};

use super::destinations::Destination;
use crate::store::ReportEventRow;

/// Longest failure text kept in a report (`failure-reason-code`).
const MAX_REASON: usize = 200;

/// One session as the domain's TLS report will count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The recipient domain.
    pub domain: String,
    /// Its `rua=` destinations (`mailto:...`, `https://...`).
    pub rua: Vec<String>,
    /// The policy applied.
    pub policy: PolicyDetails,
    /// `None` for a successful session, else what failed.
    pub failure: Option<FailureDetails>,
}

impl Seen {
    /// The row stored until the report is built; `at` in seconds since the epoch.
    pub fn event(&self, at: i64) -> ReportEventRow {
        ReportEventRow {
            id: 0,
            kind: "tls".to_string(),
            domain: self.domain.clone(),
            at,
            rua: super::destinations::join_within(self.rua.iter().cloned()),
            policy: serde_json::to_string(&self.policy).unwrap_or_default(),
            detail: serde_json::to_string(&self.failure).unwrap_or_default(),
        }
    }
}

/// The `rua=` of the TLS reporting record among `records` (the TXT records at `_smtp._tls.DOMAIN`), when one
/// parses and names any destination.
pub fn rua_of(records: &[String]) -> Option<Vec<String>> {
    let record = records
        .iter()
        .find_map(|r| TlsRpt::parse(r.as_bytes()).ok())?;
    let rua: Vec<String> = record
        .rua
        .into_iter()
        .map(|u| match u {
            ReportUri::Mail(address) => format!("mailto:{address}"),
            ReportUri::Http(url) => url,
        })
        .collect();
    (!rua.is_empty()).then_some(rua)
}

/// A failed session with `host` at `ip`: the result type read from `why` (the client's one-line account of
/// the failure), `why` itself as the reason code.
pub fn failure(result_type: ResultType, host: &str, ip: IpAddr, why: &str) -> FailureDetails {
    let mut reason: String = why.chars().take(MAX_REASON).collect();
    if reason.len() < why.len() {
        reason.push_str("...");
    }
    FailureDetails {
        result_type,
        sending_mta_ip: None,
        receiving_mx_hostname: Some(host.to_string()),
        receiving_mx_helo: None,
        receiving_ip: Some(ip),
        failed_session_count: 1,
        additional_information: None,
        failure_reason_code: (!reason.is_empty()).then_some(reason),
    }
}

/// What kind of failure a failed handshake or certificate check was, from the TLS library's words.
pub fn classify(why: &str) -> ResultType {
    let lower = why.to_ascii_lowercase();
    if lower.contains("expired") {
        ResultType::CertificateExpired
    } else if lower.contains("notvalidforname") || lower.contains("not valid for") {
        ResultType::CertificateHostMismatch
    } else if lower.contains("unknownissuer")
        || lower.contains("not trusted")
        || lower.contains("badsignature")
        || lower.contains("self-signed")
    {
        ResultType::CertificateNotTrusted
    } else {
        ResultType::ValidationFailure
    }
}

/// Where a TLS report goes: every `mailto:` address (RFC 8460 asks for no authorization); an `https:`
/// destination is listed as refused, since this server does not POST reports.
pub fn destinations(stored: &str) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    for uri in stored.split_whitespace() {
        let (address, refused) = match uri.strip_prefix("mailto:") {
            Some(address) => (address.to_ascii_lowercase(), None),
            None => (
                uri.to_string(),
                Some("reports by HTTPS POST are not sent (only mailto:)".to_string()),
            ),
        };
        if !out.iter().any(|d| d.address == address) {
            out.push(Destination {
                address,
                max_size: 0,
                refused,
            });
        }
    }
    out
}

/// The report about one domain from `events` (oldest first): per policy, the successful sessions and the
/// failures summed by kind, MX and reason. Returns it with the number of sessions.
pub fn report(events: &[ReportEventRow], meta: &super::Meta) -> Option<(TlsReport, u64)> {
    let mut policies: BTreeMap<String, (PolicyDetails, u32, Vec<FailureDetails>)> = BTreeMap::new();
    let mut sessions = 0u64;
    for event in events {
        let Ok(policy) = serde_json::from_str::<PolicyDetails>(&event.policy) else {
            continue;
        };
        let Ok(failure) = serde_json::from_str::<Option<FailureDetails>>(&event.detail) else {
            continue;
        };
        sessions += 1;
        let entry = policies
            .entry(event.policy.clone())
            .or_insert_with(|| (policy, 0, Vec::new()));
        match failure {
            None => entry.1 += 1,
            Some(f) => {
                let same = entry.2.iter_mut().find(|g| {
                    g.result_type == f.result_type
                        && g.receiving_mx_hostname == f.receiving_mx_hostname
                        && g.receiving_ip == f.receiving_ip
                        && g.failure_reason_code == f.failure_reason_code
                });
                match same {
                    Some(g) => g.failed_session_count += f.failed_session_count.max(1),
                    None => entry.2.push(f),
                }
            }
        }
    }
    if sessions == 0 {
        return None;
    }
    let policies = policies
        .into_values()
        .map(|(policy, success, mut failures)| {
            failures.sort_by_key(|f| std::cmp::Reverse(f.failed_session_count));
            Policy {
                policy,
                summary: Summary {
                    total_success: success,
                    total_failure: failures.iter().map(|f| f.failed_session_count).sum(),
                },
                failure_details: failures,
            }
        })
        .collect();
    let report = TlsReport {
        organization_name: Some(meta.org_name.clone()),
        date_range: DateRange::from_timestamps(meta.begin as i64, meta.end as i64),
        contact_info: Some(meta.email.clone()),
        report_id: meta.report_id.clone(),
        policies,
    };
    Some((report, sessions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::report::tlsrpt::PolicyType;

    #[test]
    fn the_reporting_record_gives_its_destinations_in_order() {
        let records = vec![
            "v=spf1 -all".to_string(),
            "v=TLSRPTv1; rua=mailto:tls@b.test,https://reports.b.test/tls".to_string(),
        ];
        assert_eq!(
            rua_of(&records).unwrap(),
            ["mailto:tls@b.test", "https://reports.b.test/tls"]
        );
        assert_eq!(rua_of(&["v=TLSRPTv1;".to_string()]), None);
        let d = destinations("mailto:TLS@b.test https://reports.b.test/tls mailto:tls@b.test");
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].address.as_str(), d[0].refused.is_none()),
            ("tls@b.test", true)
        );
        assert!(d[1].refused.is_some());
    }

    #[test]
    fn failures_are_classified_from_the_tls_library_words() {
        assert_eq!(
            classify("invalid peer certificate: Expired"),
            ResultType::CertificateExpired
        );
        assert_eq!(
            classify("invalid peer certificate: NotValidForName"),
            ResultType::CertificateHostMismatch
        );
        assert_eq!(
            classify("invalid peer certificate: UnknownIssuer"),
            ResultType::CertificateNotTrusted
        );
        assert_eq!(classify("handshake eof"), ResultType::ValidationFailure);
    }

    #[test]
    fn sessions_are_summed_per_policy_and_failures_per_kind_and_mx() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let sts = PolicyDetails {
            policy_type: PolicyType::Sts,
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            policy_domain: "b.test".into(),
            mx_host: vec!["mx.b.test".into()],
        };
        let seen = |failure: Option<FailureDetails>| Seen {
            domain: "b.test".into(),
            rua: vec!["mailto:tls@b.test".into()],
            policy: sts.clone(),
            failure,
        };
        let expired = || {
            Some(failure(
                ResultType::CertificateExpired,
                "mx.b.test",
                ip,
                "Expired",
            ))
        };
        let events: Vec<_> = [seen(None), seen(expired()), seen(None), seen(expired())]
            .iter()
            .map(|s| s.event(1))
            .collect();
        let meta = super::super::Meta {
            org_name: "a.test".into(),
            email: "postmaster@a.test".into(),
            report_id: "b.test.0.86399".into(),
            begin: 0,
            end: 86_399,
        };
        let (report, sessions) = report(&events, &meta).unwrap();
        assert_eq!(sessions, 4);
        assert_eq!(report.policies.len(), 1);
        let p = &report.policies[0];
        assert_eq!((p.summary.total_success, p.summary.total_failure), (2, 2));
        assert_eq!(p.failure_details.len(), 1);
        assert_eq!(p.failure_details[0].failed_session_count, 2);
        // mail-auth's parser reads the JSON back.
        let back = TlsReport::parse_json(report.to_json().as_bytes()).unwrap();
        assert_eq!(back.policies[0].summary.total_failure, 2);
    }
}
