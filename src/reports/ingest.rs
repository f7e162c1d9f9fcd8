//! Storing the reports found in one input: each is checked against the hosted domains and stored once, with its
//! records, or not at all.

use chrono::DateTime;
use mail_auth::report::tlsrpt::TlsReport;
use mail_auth::report::{
    ActionDisposition, Alignment, Disposition, DkimResult, DmarcResult, PolicyOverride,
    Report as DmarcReport, SpfResult,
};
use serde::Serialize;

use super::extract::Found;
use crate::error::Result;
use crate::store::{DmarcRecordRow, ReportRow, Tx};
use crate::time;

/// What became of one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Stored under this number.
    Stored(i64),
    /// Stored before (under this number): nothing changed.
    AlreadyStored(i64),
    /// About a domain this server does not host: not stored.
    NotHosted,
    /// Not storable (why): nothing stored.
    Rejected(String),
}

/// One report of an input and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `dmarc` or `tls`.
    pub kind: &'static str,
    /// Who sent it.
    pub org_name: String,
    /// The reporter's id for it.
    pub report_id: String,
    /// The domain it is about.
    pub domain: String,
    /// DMARC records or TLS result lines.
    pub rows: usize,
    /// Messages (DMARC) or sessions (TLS) it covers.
    pub messages: i64,
    /// What became of it.
    pub fate: Fate,
}

/// A report as rows, ready to store.
pub struct Rows {
    /// The report.
    pub report: ReportRow,
    /// Its records, for a DMARC report.
    pub dmarc: Vec<DmarcRecordRow>,
    /// Its result lines, for a TLS report.
    pub tls: Vec<crate::store::TlsResultRow>,
}

/// Stores `found` (from `source`, e.g. `file reports/google.xml.gz`) unless it is stored already or not about a
/// hosted domain; the caller commits.
pub async fn store(tx: &mut Tx, found: &Found, source: &str) -> Result<Outcome> {
    let rows = match found {
        Found::Dmarc(r) => dmarc_rows(r, source),
        Found::Tls(r) => tls_rows(r, source),
    };
    let r = &rows.report;
    let mut outcome = Outcome {
        kind: if r.kind == "dmarc" { "dmarc" } else { "tls" },
        org_name: r.org_name.clone(),
        report_id: r.report_id.clone(),
        domain: r.domain.clone(),
        rows: rows.dmarc.len() + rows.tls.len(),
        messages: r.messages,
        fate: Fate::NotHosted,
    };
    if r.date_begin.is_empty() || r.date_end.is_empty() {
        let report = if r.kind == "dmarc" { "DMARC" } else { "TLS" };
        outcome.fate = Fate::Rejected(format!(
            "{report} report {} of {} with a date range outside 1970..9999",
            r.report_id, r.org_name
        ));
        return Ok(outcome);
    }
    let missing = [
        ("org_name", r.org_name.is_empty()),
        ("report_id", r.report_id.is_empty()),
        ("the domain it is about", r.domain.is_empty()),
    ];
    if let Some((what, _)) = missing.iter().find(|(_, empty)| *empty) {
        let report = if r.kind == "dmarc" { "DMARC" } else { "TLS" };
        outcome.fate = Fate::Rejected(format!("{report} report without {what}"));
        return Ok(outcome);
    }
    if !hosted(tx, &r.domain).await? {
        return Ok(outcome);
    }
    if let Some(old) = tx.report_by_key(&r.kind, &r.org_name, &r.report_id).await? {
        outcome.fate = Fate::AlreadyStored(old.id);
        return Ok(outcome);
    }
    match tx.insert_report(r, &rows.dmarc, &rows.tls).await {
        Ok(id) => outcome.fate = Fate::Stored(id),
        Err(e) => {
            // Two copies arriving at once: the other one's insert won the unique key.
            match tx.report_by_key(&r.kind, &r.org_name, &r.report_id).await {
                Ok(Some(old)) => outcome.fate = Fate::AlreadyStored(old.id),
                _ => return Err(e),
            }
        }
    }
    Ok(outcome)
}

/// Whether `domain` or a parent of it is a hosted domain (or an alias domain).
async fn hosted(tx: &mut Tx, domain: &str) -> Result<bool> {
    let mut name = domain;
    while name.contains('.') {
        if tx.domain(name).await?.is_some() || tx.alias_domain(name).await?.is_some() {
            return Ok(true);
        }
        name = name.split_once('.').map_or("", |(_, rest)| rest);
    }
    Ok(false)
}

/// A report time as the database stores it: seconds since the epoch (milliseconds, which some reporters
/// write, are read as such); None outside 1970..9999, which neither database stores as a date.
fn db_time(value: i64) -> Option<String> {
    let secs = if value > 100_000_000_000 {
        value / 1000
    } else {
        value
    };
    let t = DateTime::from_timestamp(secs, 0)?;
    (secs >= 0 && t.format("%Y").to_string().len() == 4).then(|| time::to_db(t))
}

/// `text` cut to at most `max` bytes on a character boundary (the columns are bounded).
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn name(text: &str) -> String {
    bounded(text.trim().trim_end_matches('.'), 255).to_ascii_lowercase()
}

fn disposition(d: Disposition) -> &'static str {
    match d {
        Disposition::None => "none",
        Disposition::Quarantine => "quarantine",
        Disposition::Reject => "reject",
        Disposition::Unspecified => "",
    }
}

fn alignment(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
        Alignment::Unspecified => "",
    }
}

fn action(d: ActionDisposition) -> &'static str {
    match d {
        ActionDisposition::None | ActionDisposition::Pass => "none",
        ActionDisposition::Quarantine => "quarantine",
        ActionDisposition::Reject => "reject",
        ActionDisposition::Unspecified => "",
    }
}

fn verdict(r: DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail => "fail",
        DmarcResult::Unspecified => "",
    }
}

fn dkim_result(r: DkimResult) -> &'static str {
    match r {
        DkimResult::None => "none",
        DkimResult::Pass => "pass",
        DkimResult::Fail => "fail",
        DkimResult::Policy => "policy",
        DkimResult::Neutral => "neutral",
        DkimResult::TempError => "temperror",
        DkimResult::PermError => "permerror",
    }
}

fn spf_result(r: SpfResult) -> &'static str {
    match r {
        SpfResult::None => "none",
        SpfResult::Neutral => "neutral",
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
    }
}

fn override_reason(r: PolicyOverride) -> &'static str {
    match r {
        PolicyOverride::LocalPolicy => "local_policy",
        PolicyOverride::MailingList => "mailing_list",
        PolicyOverride::PolicyTestMode => "policy_test_mode",
        PolicyOverride::TrustedForwarder => "trusted_forwarder",
        PolicyOverride::Other => "other",
    }
}

/// A DMARC aggregate report as rows. `failed` counts messages whose DMARC verdict passed neither DKIM nor SPF.
pub fn dmarc_rows(r: &DmarcReport, source: &str) -> Rows {
    let meta = &r.report_metadata;
    let p = &r.policy_published;
    let mut policy = format!("p={}", disposition(p.p));
    for (tag, value) in [
        ("sp", disposition(p.sp)),
        ("np", disposition(p.np)),
        ("adkim", alignment(p.adkim)),
        ("aspf", alignment(p.aspf)),
    ] {
        if !value.is_empty() {
            policy.push_str(&format!(" {tag}={value}"));
        }
    }
    if p.testing {
        policy.push_str(" t=y");
    }
    let records: Vec<DmarcRecordRow> = r
        .record
        .iter()
        .map(|rec| {
            let ev = &rec.row.policy_evaluated;
            let dkim_auth = rec
                .auth_results
                .dkim
                .iter()
                .map(|d| {
                    format!(
                        "{}/{}={}",
                        name(&d.domain),
                        d.selector.trim(),
                        dkim_result(d.result)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            let spf_auth = rec
                .auth_results
                .spf
                .iter()
                .map(|s| format!("{}={}", name(&s.domain), spf_result(s.result)))
                .collect::<Vec<_>>()
                .join(" ");
            let reason = ev
                .reason
                .iter()
                .map(|o| match &o.comment {
                    Some(c) if !c.trim().is_empty() => {
                        format!("{}: {}", override_reason(o.type_), c.trim())
                    }
                    _ => override_reason(o.type_).to_string(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            DmarcRecordRow {
                source_ip: rec
                    .row
                    .source_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                count: i64::from(rec.row.count),
                disposition: action(ev.disposition).into(),
                dkim: verdict(ev.dkim).into(),
                spf: verdict(ev.spf).into(),
                header_from: name(&rec.identifiers.header_from),
                envelope_from: name(&rec.identifiers.envelope_from),
                dkim_auth: bounded(&dkim_auth, 1000),
                spf_auth: bounded(&spf_auth, 1000),
                reason: bounded(&reason, 255),
            }
        })
        .collect();
    let messages = records.iter().map(|r| r.count).sum();
    let failed = records
        .iter()
        .filter(|r| r.dkim != "pass" && r.spf != "pass")
        .map(|r| r.count)
        .sum();
    Rows {
        report: ReportRow {
            id: 0,
            kind: "dmarc".into(),
            domain: name(&p.domain),
            org_name: bounded(meta.org_name.trim(), 255),
            report_id: bounded(meta.report_id.trim(), 255),
            email: bounded(meta.email.trim(), 255),
            date_begin: db_time(meta.date_range.begin.min(i64::MAX as u64) as i64)
                .unwrap_or_default(),
            date_end: db_time(meta.date_range.end.min(i64::MAX as u64) as i64).unwrap_or_default(),
            policy,
            messages,
            failed,
            source: bounded(source, 255),
            received: time::now_db(),
        },
        dmarc: records,
        tls: Vec::new(),
    }
}

/// A serde-named enum's name (`certificate-expired`, `sts`).
fn serde_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
        _ => "other".into(),
    }
}

/// A TLS report as rows: per policy one `success` line with its successful sessions, and one line per failure
/// detail. `failed` is the reporter's total of failed sessions.
pub fn tls_rows(r: &TlsReport, source: &str) -> Rows {
    let mut lines = Vec::new();
    let (mut ok, mut failed) = (0i64, 0i64);
    for p in &r.policies {
        let policy_type = serde_name(&p.policy.policy_type);
        let policy_domain = name(&p.policy.policy_domain);
        ok += i64::from(p.summary.total_success);
        failed += i64::from(p.summary.total_failure);
        lines.push(crate::store::TlsResultRow {
            policy_type: policy_type.clone(),
            policy_domain: policy_domain.clone(),
            result: "success".into(),
            sending_ip: String::new(),
            receiving_mx: bounded(&p.policy.mx_host.join(" "), 255),
            receiving_ip: String::new(),
            count: i64::from(p.summary.total_success),
            detail: String::new(),
        });
        let detailed: i64 = p
            .failure_details
            .iter()
            .map(|f| i64::from(f.failed_session_count))
            .sum();
        let undetailed = i64::from(p.summary.total_failure) - detailed;
        if undetailed > 0 {
            // Failures the reporter counted without saying which: counted all the same.
            lines.push(crate::store::TlsResultRow {
                policy_type: policy_type.clone(),
                policy_domain: policy_domain.clone(),
                result: "unspecified".into(),
                sending_ip: String::new(),
                receiving_mx: String::new(),
                receiving_ip: String::new(),
                count: undetailed,
                detail: "failed sessions the report gives no details for".into(),
            });
        }
        for f in &p.failure_details {
            let detail = [
                f.failure_reason_code.as_deref(),
                f.additional_information.as_deref(),
            ]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
            lines.push(crate::store::TlsResultRow {
                policy_type: policy_type.clone(),
                policy_domain: policy_domain.clone(),
                result: serde_name(&f.result_type),
                sending_ip: f
                    .sending_mta_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                receiving_mx: name(f.receiving_mx_hostname.as_deref().unwrap_or_default()),
                receiving_ip: f.receiving_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                count: i64::from(f.failed_session_count),
                detail: bounded(&detail, 1000),
            });
        }
    }
    let kinds: Vec<String> = {
        let mut k: Vec<String> = lines.iter().map(|l| l.policy_type.clone()).collect();
        k.sort();
        k.dedup();
        k
    };
    let domain = r
        .policies
        .first()
        .map(|p| name(&p.policy.policy_domain))
        .unwrap_or_default();
    Rows {
        report: ReportRow {
            id: 0,
            kind: "tls".into(),
            domain,
            org_name: bounded(r.organization_name.as_deref().unwrap_or("").trim(), 255),
            report_id: bounded(r.report_id.trim(), 255),
            email: bounded(r.contact_info.as_deref().unwrap_or("").trim(), 255),
            date_begin: db_time(r.date_range.start_datetime.to_timestamp()).unwrap_or_default(),
            date_end: db_time(r.date_range.end_datetime.to_timestamp()).unwrap_or_default(),
            policy: bounded(&kinds.join(" "), 255),
            messages: ok + failed,
            failed,
            source: bounded(source, 255),
            received: time::now_db(),
        },
        dmarc: Vec::new(),
        tls: lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_times_in_milliseconds_are_read_and_impossible_ones_refused() {
        assert_eq!(
            db_time(1_764_979_200).as_deref(),
            Some("2025-12-06 00:00:00")
        );
        assert_eq!(
            db_time(1_764_979_200_000).as_deref(),
            Some("2025-12-06 00:00:00")
        );
        assert_eq!(db_time(-5), None);
        assert_eq!(db_time(300_000_000_000_000), None);
    }

    #[test]
    fn tls_failures_without_details_still_count() {
        let json = r#"{"organization-name":"x","date-range":{"start-datetime":"2026-12-05T00:00:00Z",
            "end-datetime":"2026-12-05T23:59:59Z"},"report-id":"r","policies":[{"policy":{"policy-type":"sts",
            "policy-domain":"example.org"},"summary":{"total-successful-session-count":10,
            "total-failure-session-count":5},"failure-details":[{"result-type":"certificate-expired",
            "failed-session-count":2}]}]}"#;
        let report = TlsReport::parse_json(json.as_bytes()).unwrap();
        let rows = tls_rows(&report, "test");
        let counts: Vec<(&str, i64)> = rows
            .tls
            .iter()
            .map(|r| (r.result.as_str(), r.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("success", 10),
                ("unspecified", 3),
                ("certificate-expired", 2)
            ]
        );
        assert_eq!((rows.report.messages, rows.report.failed), (15, 5));
    }
}
