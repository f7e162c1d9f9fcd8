//! DMARC aggregate reports (RFC 7489 section 7.2 and appendix C) about the mail `serve` received: one event per
//! message whose From domain asks for reports (`rua=`), summed per day into the records of one report per
//! policy domain, in mail-auth's XML writer's format.

use std::collections::HashMap;
use std::net::IpAddr;

use mail_auth::dmarc::{self, URI};
use mail_auth::report::{
    ActionDisposition, Alignment, Discovery, Disposition, DmarcResult, PolicyOverride,
    PolicyOverrideReason, PolicyPublished, Record, Report,
};

use crate::store::ReportEventRow;

/// What a domain published that its reports need: where the record was found, what it says, where reports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The domain whose `_dmarc` record applied (the From domain or its organizational domain).
    pub domain: String,
    /// The policy as the report's `policy_published` states it.
    pub policy: PolicyPublished,
    /// The `rua=` destinations.
    pub rua: Vec<URI>,
}

impl Published {
    /// From the record found at `_dmarc.DOMAIN` by the tree walk.
    pub fn new(domain: &str, record: &dmarc::Dmarc) -> Published {
        let alignment = |a: &dmarc::Alignment| match a {
            dmarc::Alignment::Relaxed => Alignment::Relaxed,
            dmarc::Alignment::Strict => Alignment::Strict,
        };
        let disposition = |p: &dmarc::Policy| match p {
            dmarc::Policy::None => Disposition::None,
            dmarc::Policy::Quarantine => Disposition::Quarantine,
            dmarc::Policy::Reject => Disposition::Reject,
            dmarc::Policy::Unspecified => Disposition::Unspecified,
        };
        let p = disposition(&record.p);
        let inherit = |q: &dmarc::Policy| match q {
            dmarc::Policy::Unspecified => p,
            other => disposition(other),
        };
        Published {
            domain: domain.to_string(),
            policy: PolicyPublished {
                domain: domain.to_string(),
                version_published: None,
                adkim: alignment(&record.adkim),
                aspf: alignment(&record.aspf),
                p,
                sp: inherit(&record.sp),
                np: inherit(&record.np),
                testing: record.t,
                discovery_method: Discovery::Treewalk,
                fo: None,
            },
            rua: record.rua.clone(),
        }
    }
}

/// One received message as a report will count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The policy that applied.
    pub published: Published,
    /// The message's record: source IP, count 1, DMARC's DKIM and SPF verdicts, the identifiers and every
    /// DKIM and SPF result; the disposition is what this server did.
    pub record: Record,
}

impl Seen {
    /// Records what this server did with the message: rejected, filed as Junk (`quarantine`) or delivered
    /// (`none`). When that differs from what a failing message's policy asked, the reason is `local_policy`.
    pub fn done(&mut self, rejected: bool, junk: bool) {
        let evaluated = &mut self.record.row.policy_evaluated;
        evaluated.disposition = if rejected {
            ActionDisposition::Reject
        } else if junk {
            ActionDisposition::Quarantine
        } else {
            ActionDisposition::None
        };
        let failed = evaluated.dkim != DmarcResult::Pass && evaluated.spf != DmarcResult::Pass;
        let asked = match self.published.policy.p {
            _ if !failed => ActionDisposition::None,
            _ if self.published.policy.testing => ActionDisposition::None,
            Disposition::Quarantine => ActionDisposition::Quarantine,
            Disposition::Reject => ActionDisposition::Reject,
            Disposition::None | Disposition::Unspecified => ActionDisposition::None,
        };
        if asked != evaluated.disposition {
            evaluated
                .reason
                .push(PolicyOverrideReason::new(PolicyOverride::LocalPolicy));
        }
    }

    /// The row stored until the report is built; `at` in seconds since the epoch.
    pub fn event(&self, at: i64) -> ReportEventRow {
        ReportEventRow {
            id: 0,
            kind: "dmarc".to_string(),
            domain: self.published.domain.clone(),
            at,
            rua: super::destinations::format(&self.published.rua),
            policy: serde_json::to_string(&self.published.policy).unwrap_or_default(),
            detail: serde_json::to_string(&self.record).unwrap_or_default(),
        }
    }
}

/// The parts of a record a message contributes, as stored by [`Seen::event`]; `None` when the row is not one
/// (a newer or older format), which the report leaves out.
pub fn record_of(event: &ReportEventRow) -> Option<Record> {
    serde_json::from_str(&event.detail).ok()
}

/// The report about `domain` from `events` (all about that domain, oldest first): the newest policy, every
/// identical record summed into one with its count, the most frequent first.
pub fn report(events: &[ReportEventRow], meta: &super::Meta) -> Option<(Report, u64)> {
    let newest = events.last()?;
    let policy: PolicyPublished = serde_json::from_str(&newest.policy).ok()?;
    let mut counts: HashMap<Record, u32> = HashMap::new();
    let mut messages = 0u64;
    for record in events.iter().filter_map(record_of) {
        let n = record.row.count.max(1);
        let mut key = record;
        key.row.count = 0;
        *counts.entry(key).or_default() += n;
        messages += u64::from(n);
    }
    let mut records: Vec<Record> = counts
        .into_iter()
        .map(|(mut record, count)| {
            record.row.count = count;
            record
        })
        .collect();
    records.sort_by(|a, b| {
        b.row
            .count
            .cmp(&a.row.count)
            .then_with(|| source(a).cmp(&source(b)))
            .then_with(|| a.identifiers.header_from.cmp(&b.identifiers.header_from))
    });
    let mut report = Report::new()
        .with_version(1.0)
        .with_org_name(meta.org_name.as_str())
        .with_email(meta.email.as_str())
        .with_report_id(meta.report_id.as_str())
        .with_date_range_begin(meta.begin)
        .with_date_range_end(meta.end)
        .with_generator(concat!("mailctl ", env!("CARGO_PKG_VERSION")))
        .with_policy_published(policy);
    for record in records {
        report.add_record(record);
    }
    Some((report, messages))
}

fn source(record: &Record) -> Option<IpAddr> {
    record.row.source_ip
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::common::parse::TxtRecordParser;

    fn seen(policy: &str, dkim: DmarcResult, spf: DmarcResult, ip: &str) -> Seen {
        let record = mail_auth::dmarc::Dmarc::parse(policy.as_bytes()).expect("a DMARC record");
        Seen {
            published: Published::new("a.test", &record),
            record: Record::new()
                .with_count(1)
                .with_source_ip(ip.parse().unwrap())
                .with_dmarc_dkim_result(dkim)
                .with_dmarc_spf_result(spf)
                .with_header_from("a.test")
                .with_envelope_from("a.test"),
        }
    }

    fn meta() -> super::super::Meta {
        super::super::Meta {
            org_name: "b.test".into(),
            email: "postmaster@b.test".into(),
            report_id: "a.test.0.86399".into(),
            begin: 0,
            end: 86_399,
        }
    }

    #[test]
    fn the_disposition_is_what_was_done_and_a_difference_from_the_policy_is_local_policy() {
        let reject = "v=DMARC1; p=reject; rua=mailto:d@a.test";
        let reason = |s: &Seen| s.record.row.policy_evaluated.reason.len();

        let mut passed = seen(reject, DmarcResult::Pass, DmarcResult::Fail, "192.0.2.1");
        passed.done(false, false);
        assert_eq!(
            passed.record.row.policy_evaluated.disposition,
            ActionDisposition::None
        );
        assert_eq!(reason(&passed), 0);

        let mut filed = seen(reject, DmarcResult::Fail, DmarcResult::Fail, "192.0.2.1");
        filed.done(false, true);
        assert_eq!(
            filed.record.row.policy_evaluated.disposition,
            ActionDisposition::Quarantine
        );
        assert_eq!(reason(&filed), 1, "p=reject but only filed as Junk");

        let mut refused = seen(reject, DmarcResult::Fail, DmarcResult::Fail, "192.0.2.1");
        refused.done(true, false);
        assert_eq!(
            refused.record.row.policy_evaluated.disposition,
            ActionDisposition::Reject
        );
        assert_eq!(reason(&refused), 0);

        let testing = "v=DMARC1; p=quarantine; t=y; rua=mailto:d@a.test";
        let mut tried = seen(testing, DmarcResult::Fail, DmarcResult::Fail, "192.0.2.1");
        tried.done(false, false);
        assert_eq!(reason(&tried), 0, "t=y asks for nothing");
    }

    #[test]
    fn identical_records_are_summed_the_most_frequent_first_under_the_newest_policy() {
        let old = "v=DMARC1; p=none; rua=mailto:d@a.test";
        let new = "v=DMARC1; p=reject; rua=mailto:d@a.test";
        let mut events = Vec::new();
        for (i, (policy, ip, dkim)) in [
            (old, "192.0.2.9", DmarcResult::Fail),
            (old, "192.0.2.1", DmarcResult::Pass),
            (old, "192.0.2.1", DmarcResult::Pass),
            (new, "192.0.2.1", DmarcResult::Pass),
        ]
        .into_iter()
        .enumerate()
        {
            let mut s = seen(policy, dkim, DmarcResult::Fail, ip);
            s.done(false, false);
            events.push(s.event(i as i64));
        }
        let unreadable = ReportEventRow {
            detail: "not json".into(),
            ..events[0].clone()
        };
        events.insert(0, unreadable);
        let (report, messages) = report(&events, &meta()).expect("a report");
        assert_eq!(messages, 4, "the unreadable event is left out");
        assert_eq!(report.policy_published.p, Disposition::Reject);
        assert_eq!(report.report_id(), "a.test.0.86399");
        let counts: Vec<(String, u32)> = report
            .records()
            .iter()
            .map(|r| (r.source_ip().unwrap().to_string(), r.row.count))
            .collect();
        assert_eq!(
            counts,
            [("192.0.2.1".to_string(), 3), ("192.0.2.9".to_string(), 1)]
        );
        // The writer's XML is what other parsers read: mail-auth's own parser reads it back.
        let xml = report.to_xml();
        let back = Report::parse_xml(xml.as_bytes()).expect("parses");
        assert_eq!(back.records().len(), 2);
        assert_eq!(back.records()[0].row.count, 3);
    }
}
