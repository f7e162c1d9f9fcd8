//! The reports this server sends: DMARC aggregate reports (RFC 7489 section 7.2) about the mail `serve`
//! received, to every domain whose DMARC record asks for them with `rua=mailto:`, and TLS reports (RFC 8460)
//! about its own deliveries, to every recipient domain that publishes `_smtp._tls` with `mailto:`.
//!
//! ## From what `serve` sees to a report
//! 1. After DATA, a message whose From domain's policy names `rua=` destinations becomes one event
//!    ([`dmarc::Seen`]: the policy, and the report record of the message with what this server did with it);
//!    each outbound SMTP session that tried STARTTLS with a domain asking for TLS reports becomes one too
//!    ([`tls::Seen`]: the policy applied, success or the kind of failure). Both go to the
//!    [`recorder::Recorder`], which writes events in batches off the SMTP path. Mail to our own report
//!    addresses is never counted: no report about report mail.
//! 2. Once a day ([`plan`] with the start of the UTC day as cutoff; `mailctl reports send --now` up to now),
//!    the events are summed per domain and UTC day into one report of each kind: identical DMARC records
//!    become one with their count, TLS sessions are counted per policy and failure. Its id is the same on
//!    every node for the same period (`DOMAIN.BEGIN.END`).
//! 3. A DMARC destination outside the policy domain's organization must authorize it (`_report._dmarc`,
//!    [`destinations`]); a destination whose `!size` limit the report exceeds is left out. TLS reports go to
//!    every `mailto:` destination; `https:` ones are listed as not served.
//! 4. The report is written by mail-auth's writers (XML or JSON, gzip-attached, `Auto-Submitted:
//!    auto-generated`), DKIM-signed with the active key of the From domain, and queued like any outbound mail
//!    ([`execute`]): first the report is recorded in `mailctl_reports_sent` and its events removed, in one
//!    transaction whose unique report id makes a second node's attempt fail, then it is queued. A crash
//!    between the two loses that one report, never sends it twice.
//!
//! Reports nobody can receive (no authorized destination, too large everywhere) are recorded too, with the
//! reason, and their events removed: nothing piles up.

pub mod destinations;
pub mod dmarc;
pub mod recorder;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::dns::Resolver;
use crate::error::{Error, Result};
use crate::model::DomainName;
use crate::smtp::queue::{Envelope, Intake};
use crate::store::{DkimKeyRow, ReportEventRow, SentReportRow, Store};
use destinations::Destination;

/// Seconds in the period of one report.
const DAY: i64 = 86_400;

/// Who the reports come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    /// `org_name` in the report (default: the From address's domain).
    pub org_name: String,
    /// The From address and envelope sender.
    pub from: String,
}

impl Reporter {
    /// The reporter from `[server.reports]`: `from` when set, else `postmaster@` of the hosted domain that holds
    /// `hostname` (the longest that matches); Err (naming the key) when there is none.
    pub async fn resolve(
        store: &Store,
        from: Option<&str>,
        org_name: Option<&str>,
        hostname: &str,
    ) -> Result<Reporter> {
        let from = match from {
            Some(from) => from.to_string(),
            None => {
                let mut tx = store.begin().await?;
                let domains = tx.domains().await?;
                tx.rollback().await?;
                let host = hostname.trim_end_matches('.').to_ascii_lowercase();
                let domain = domains
                    .iter()
                    .map(|d| d.domain.as_str())
                    .filter(|d| host == *d || host.ends_with(&format!(".{d}")))
                    .max_by_key(|d| d.len())
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "server.reports.from is not set and the host name {hostname} is in no hosted \
                             domain: set the address reports come from"
                        ))
                    })?;
                format!("postmaster@{domain}")
            }
        };
        let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        Ok(Reporter {
            org_name: org_name.unwrap_or(domain).to_string(),
            from,
        })
    }

    /// The domain reports are signed for.
    fn domain(&self) -> &str {
        self.from
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default()
    }
}

/// The metadata of one report.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Who sends it.
    pub org_name: String,
    /// Where to write back.
    pub email: String,
    /// Its id.
    pub report_id: String,
    /// First second of the period (epoch).
    pub begin: u64,
    /// Last second of the period (epoch).
    pub end: u64,
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Built and signed, not sent yet (a dry run ends here).
    Due,
    /// Queued for delivery.
    Queued,
    /// Built before, by this node or another: not sent again.
    BuiltBefore,
    /// No destination takes it, or its events could not be read: recorded, not sent.
    Unsendable,
    /// The queue did not take it.
    Failed,
}

/// One report due, as planned and then as done.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// `dmarc` or `tls`.
    pub kind: &'static str,
    /// The domain it is about.
    pub domain: String,
    /// Its id.
    pub report_id: String,
    /// The period it covers, RFC 3339.
    pub begin: String,
    /// See `begin`.
    pub end: String,
    /// Records in it.
    pub records: usize,
    /// Messages it counts.
    pub messages: u64,
    /// Where it goes, and where not and why.
    pub destinations: Vec<Destination>,
    /// The size of the report mail in bytes (0 when nothing is sent).
    pub size: usize,
    /// How it was signed (`d=... s=... a=...`), if it was.
    pub dkim: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// `queued as ID`, `built before`, or why it is not sent; `due` before [`execute`].
    pub outcome: String,
    /// The seconds its events span: `[from, before)`.
    #[serde(skip)]
    span: (i64, i64),
    /// The events it is made of (removed once it is recorded).
    #[serde(skip)]
    ids: Vec<i64>,
    /// The signed mail, when any destination takes it.
    #[serde(skip)]
    message: Option<Vec<u8>>,
}

impl Planned {
    /// The addresses the report goes to.
    pub fn recipients(&self) -> Vec<String> {
        self.destinations
            .iter()
            .filter(|d| d.refused.is_none())
            .map(|d| d.address.clone())
            .collect()
    }
}

/// A report built, before its mail is written.
enum Built {
    Dmarc(mail_auth::report::Report),
    Tls(mail_auth::report::tlsrpt::TlsReport),
}

impl Built {
    /// The report mail to `to`, as mail-auth's writers write it.
    fn mail(&self, domain: &str, reporter: &Reporter, to: &[String]) -> std::io::Result<Vec<u8>> {
        let from = (reporter.org_name.as_str(), reporter.from.as_str());
        let to = to.iter().map(String::as_str);
        let mail = match self {
            Built::Dmarc(r) => r.to_rfc5322(reporter.domain(), from, to)?,
            Built::Tls(r) => r.to_rfc5322(domain, reporter.domain(), from, to)?,
        };
        Ok(mail.into_bytes())
    }

    /// Records (DMARC) or policies (TLS) in it.
    fn records(&self) -> usize {
        match self {
            Built::Dmarc(r) => r.records().len(),
            Built::Tls(r) => r.policies.len(),
        }
    }
}

/// The reports due from the events seen before `cutoff`, built and signed but not sent: DMARC aggregate
/// reports first, then TLS reports. A report built before (by another node, or by a run that crashed after
/// recording it) is planned with outcome `built before`.
pub async fn plan(
    store: &Store,
    resolver: &Resolver,
    reporter: &Reporter,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Planned>> {
    // Everything the database has to say is read first, in one short transaction: the DNS checks of the
    // destinations and the signing that follow take seconds and hold no transaction open.
    let mut tx = store.begin().await?;
    let mut groups: Vec<(&'static str, String, i64, Vec<ReportEventRow>)> = Vec::new();
    for kind in ["dmarc", "tls"] {
        let mut by_day: BTreeMap<(String, i64), Vec<ReportEventRow>> = BTreeMap::new();
        for event in tx.report_events_before(kind, cutoff.timestamp()).await? {
            let day = event.at.div_euclid(DAY);
            by_day
                .entry((event.domain.clone(), day))
                .or_default()
                .push(event);
        }
        groups.extend(by_day.into_iter().map(|((d, day), e)| (kind, d, day, e)));
    }
    let mut built_before = Vec::with_capacity(groups.len());
    for (kind, domain, day, _) in &groups {
        let (from, before) = span(*day, cutoff);
        let id = report_id(domain, from, before - 1);
        built_before.push(tx.sent_report(kind, &id).await?.is_some());
    }
    let key = match reporter.domain().parse::<DomainName>() {
        Ok(domain) => crate::provision::dkim::active_key(&mut tx, &domain)
            .await?
            .map(|k| (k, domain)),
        Err(_) => None,
    };
    tx.rollback().await?;
    if key.is_none() && !groups.is_empty() {
        tracing::warn!(target: "mailctl::reports", domain = reporter.domain(),
            "no active DKIM key: reports go out unsigned (mailctl dkim generate)");
    }

    let mut planned = Vec::with_capacity(groups.len());
    for ((kind, domain, day, events), done_before) in groups.into_iter().zip(built_before) {
        let (from, before) = span(day, cutoff);
        let report_id = report_id(&domain, from, before - 1);
        let p = Planned {
            kind,
            domain,
            report_id: report_id.clone(),
            begin: crate::time::rfc3339_secs(from),
            end: crate::time::rfc3339_secs(before - 1),
            records: 0,
            messages: 0,
            destinations: Vec::new(),
            size: 0,
            dkim: None,
            status: Status::Due,
            outcome: "due".to_string(),
            span: (from, before),
            ids: events.iter().map(|e| e.id).collect(),
            message: None,
        };
        let meta = Meta {
            org_name: reporter.org_name.clone(),
            email: reporter.from.clone(),
            report_id,
            begin: from as u64,
            end: (before - 1) as u64,
        };
        let p = plan_one(
            resolver,
            reporter,
            key.as_ref(),
            p,
            &events,
            &meta,
            done_before,
        )
        .await?;
        planned.push(p);
    }
    Ok(planned)
}

/// The seconds `[from, before)` the report of UTC day `day` covers, up to `cutoff`.
fn span(day: i64, cutoff: DateTime<Utc>) -> (i64, i64) {
    let from = day * DAY;
    (from, (from + DAY).min(cutoff.timestamp()))
}

/// Builds, addresses and signs one report.
async fn plan_one(
    resolver: &Resolver,
    reporter: &Reporter,
    key: Option<&(DkimKeyRow, DomainName)>,
    mut p: Planned,
    events: &[ReportEventRow],
    meta: &Meta,
    built_before: bool,
) -> Result<Planned> {
    let built = match p.kind {
        "dmarc" => dmarc::report(events, meta).map(|(r, n)| (Built::Dmarc(r), n)),
        _ => tls::report(events, meta).map(|(r, n)| (Built::Tls(r), n)),
    };
    let Some((built, messages)) = built else {
        p.status = Status::Unsendable;
        p.outcome = "not sent: the events could not be read".to_string();
        return Ok(p);
    };
    p.records = built.records();
    p.messages = messages;
    if built_before {
        p.status = Status::BuiltBefore;
        p.outcome = "built before".to_string();
        return Ok(p);
    }
    let rua = events.last().map(|e| e.rua.as_str()).unwrap_or_default();
    p.destinations = match &built {
        Built::Dmarc(_) => {
            destinations::check(resolver, &p.domain, &destinations::parse(rua)).await
        }
        Built::Tls(_) => tls::destinations(rua),
    };
    // The mail is written for the destinations left; when one is too small for it, it is dropped and the
    // mail written again for the rest.
    let mut message = None;
    loop {
        let to = p.recipients();
        if to.is_empty() {
            break;
        }
        let mail = built.mail(&p.domain, reporter, &to).map_err(|e| {
            Error::refused(format!(
                "writing the {} report about {}: {e}",
                p.kind, p.domain
            ))
        })?;
        let mut dropped = false;
        for d in p.destinations.iter_mut().filter(|d| d.refused.is_none()) {
            if d.max_size > 0 && mail.len() > d.max_size {
                d.refused = Some(format!(
                    "the report ({} bytes) is larger than the {} bytes it takes",
                    mail.len(),
                    d.max_size
                ));
                dropped = true;
            }
        }
        if !dropped {
            message = Some(mail);
            break;
        }
    }
    match message {
        None => {
            p.status = Status::Unsendable;
            p.outcome = "not sent: no destination takes it".to_string();
        }
        Some(mail) => {
            let (mail, dkim) = sign(key, mail).await?;
            p.size = mail.len();
            p.dkim = dkim;
            p.message = Some(mail);
        }
    }
    Ok(p)
}

/// Whether any event seen before `cutoff` waits for a report.
pub async fn anything_due(store: &Store, cutoff: DateTime<Utc>) -> Result<bool> {
    let mut tx = store.begin().await?;
    let mut due = false;
    for kind in ["dmarc", "tls"] {
        due |= tx
            .report_events_exist_before(kind, cutoff.timestamp())
            .await?;
    }
    tx.rollback().await?;
    Ok(due)
}

/// Signs report mail with the active key of the reporter's domain, when it has one.
async fn sign(
    key: Option<&(DkimKeyRow, DomainName)>,
    mail: Vec<u8>,
) -> Result<(Vec<u8>, Option<String>)> {
    let Some((key, domain)) = key.cloned() else {
        return Ok((mail, None));
    };
    let mail = Arc::new(mail);
    let signing = mail.clone();
    let signed = tokio::task::spawn_blocking(move || {
        crate::provision::dkim::sign_with(&key, &domain, &signing)
    })
    .await
    .map_err(|e| Error::refused(format!("signing a report: {e}")))?;
    match signed {
        Ok((signed, note)) => Ok((signed, Some(note))),
        Err(e) => {
            tracing::error!(target: "mailctl::reports", error = %e, "DKIM signing failed: report goes out unsigned");
            Ok((Arc::unwrap_or_clone(mail), None))
        }
    }
}

/// Records and queues the planned reports (see the module doc for the order); returns them with their outcome.
/// Err only when the database is unreachable; a report the queue did not take says so in its outcome.
pub async fn execute(
    store: &Store,
    queue: Arc<dyn Intake>,
    reporter: &Reporter,
    mut planned: Vec<Planned>,
) -> Result<Vec<Planned>> {
    for p in &mut planned {
        // One report's trouble (a row the database refuses, a race with another node) is that report's
        // outcome; the others still go.
        if let Err(e) = execute_one(store, &queue, reporter, p).await {
            tracing::error!(target: "mailctl::reports", kind = p.kind, domain = %p.domain,
                report_id = %p.report_id, error = %e, "report not sent");
            p.status = Status::Failed;
            p.outcome = format!("not sent: {e}");
        }
    }
    Ok(planned)
}

/// Records one report, removes its events and queues it.
async fn execute_one(
    store: &Store,
    queue: &Arc<dyn Intake>,
    reporter: &Reporter,
    p: &mut Planned,
) -> Result<()> {
    let mut tx = store.begin_write().await?;
    if tx.sent_report(p.kind, &p.report_id).await?.is_some() {
        tx.delete_report_events(&p.ids).await?;
        tx.commit().await?;
        p.status = Status::BuiltBefore;
        p.outcome = "built before".to_string();
        return Ok(());
    }
    if p.message.is_some() {
        p.outcome = "queued".to_string();
    }
    let row = SentReportRow {
        kind: p.kind.to_string(),
        domain: p.domain.clone(),
        report_id: p.report_id.clone(),
        date_begin: crate::time::to_db(at(p.span.0)),
        date_end: crate::time::to_db(at(p.span.1 - 1)),
        records: p.records as i64,
        messages: p.messages as i64,
        destinations: clip(&p.recipients().join(" "), destinations::MAX_STORED),
        outcome: clip(&p.outcome, destinations::MAX_STORED),
        sent: crate::time::now_db(),
    };
    tx.insert_sent_report(&row).await?;
    tx.delete_report_events(&p.ids).await?;
    tx.commit().await?;
    let Some(message) = p.message.take() else {
        return Ok(());
    };
    let envelope = Envelope {
        sender: reporter.from.clone(),
        recipients: p.recipients(),
        dkim: p.dkim.clone(),
    };
    let queue = queue.clone();
    let queued =
        tokio::task::spawn_blocking(move || queue.enqueue(&envelope, &message, Utc::now())).await;
    (p.status, p.outcome) = match queued {
        Ok(Ok(id)) => (Status::Queued, format!("queued as {id}")),
        Ok(Err(e)) => (
            Status::Failed,
            format!("not sent: the queue did not take it: {e}"),
        ),
        Err(e) => (
            Status::Failed,
            format!("not sent: the queue did not take it: {e}"),
        ),
    };
    let mut tx = store.begin_write().await?;
    tx.set_sent_outcome(
        p.kind,
        &p.report_id,
        &clip(&p.outcome, destinations::MAX_STORED),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(target: "mailctl::reports", kind = p.kind, domain = %p.domain,
        report_id = %p.report_id, to = %row.destinations, outcome = %p.outcome, "report sent");
    Ok(())
}

/// The id of the report about `domain` for `[begin, end]`: `DOMAIN.BEGIN.END`, the same on every node; a
/// domain too long for the 255 characters the id may have is replaced by a hash of it.
fn report_id(domain: &str, begin: i64, end: i64) -> String {
    let id = format!("{domain}.{begin}.{end}");
    if id.len() <= 255 {
        return id;
    }
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(domain.as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{hex}.{begin}.{end}")
}

/// `text` cut to at most `max` characters (database columns have limits).
fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap_or_default()
}

/// The start of the UTC day `now` is in: the cutoff of the daily run (today's mail waits for tomorrow).
pub fn start_of_day(now: DateTime<Utc>) -> DateTime<Utc> {
    at(now.timestamp().div_euclid(DAY) * DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_ids_fit_their_column_whatever_the_domain() {
        assert_eq!(report_id("a.test", 0, 86_399), "a.test.0.86399");
        let long = format!("{}.test", "a".repeat(240));
        let id = report_id(&long, 1_796_601_600, 1_796_687_999);
        assert!(id.len() <= 255, "{id}");
        // The same id on every node and every run: the first 16 bytes of the domain's SHA-256 (as Python's
        // hashlib computes it), then the period.
        assert_eq!(id, "82d5b94d3942862443293b56ff65f848.1796601600.1796687999");
        assert_ne!(
            id,
            report_id(&format!("b{long}"), 1_796_601_600, 1_796_687_999)
        );
    }
}
