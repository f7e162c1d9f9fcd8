//! `mailctl reports import|list|show`: the DMARC aggregate and TLS reports receivers send about the hosted
//! domains, taken from files, mail messages, Maildir folders and mbox files, stored once each.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, Utc};
use clap::Subcommand;
use memchr::memmem;
use serde::Serialize;

pub mod send;
pub mod summary;

use super::Ctx;
use crate::error::{Error, Result};
use crate::output::{Render, key_values, table};
use crate::reports::extract::{self, Limits};
use crate::reports::ingest::{self, Fate};
use crate::store::{DmarcRecordRow, ReportRow, SentReportRow, TlsResultRow};
use crate::time::{db_to_local, db_to_rfc3339, to_db};

/// Reports subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportsCmd {
    /// Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders,
    /// mbox files, or - for standard input. A report stored before is left as it is.
    Import {
        /// Files or folders
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// List stored reports, oldest first
    List {
        /// Only reports whose period ended within this time (30d, 12h) or since this date (2026-11-01)
        #[arg(long, default_value = "30d")]
        since: String,
        /// Only reports about these domains
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
        /// The reports this server sent to other domains instead (`reports send`, or serve's daily run)
        #[arg(long)]
        sent: bool,
    },
    /// Show one report with its records (DMARC) or results (TLS)
    Show {
        /// The report's number (from `reports list`)
        id: i64,
    },
    /// What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely
    /// cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)
    Summary(summary::SummaryArgs),
    /// Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask
    /// for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built
    /// per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily);
    /// exit 1 when the queue did not take one
    Send(send::SendArgs),
}

/// Runs a reports subcommand; the exit code is `summary`'s verdict, else 0.
pub async fn run(ctx: &Ctx, cmd: ReportsCmd) -> Result<i32> {
    match cmd {
        ReportsCmd::Import { paths } => import(ctx, &paths).await.map(|()| 0),
        ReportsCmd::List {
            since,
            domains,
            sent,
        } => list(ctx, &since, &domains, sent).await.map(|()| 0),
        ReportsCmd::Show { id } => show(ctx, id).await.map(|()| 0),
        ReportsCmd::Summary(args) => summary::run(ctx, args).await,
        ReportsCmd::Send(args) => send::run(ctx, args).await,
    }
}

/// The start of the period `--since` names: a duration back from now (`7d`, `12h`, `90m`) or a date.
pub fn since(text: &str) -> Result<chrono::DateTime<Utc>> {
    let bad = || {
        Error::usage(format!(
            "--since {text:?}: use a duration such as 7d, 12h or 90m, or a date such as 2026-11-01"
        ))
    };
    let t = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let span = match unit {
        "d" => Duration::try_days(n),
        "h" => Duration::try_hours(n),
        "m" => Duration::try_minutes(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Utc::now().checked_sub_signed(span).ok_or_else(bad)
}

/// One input: a name for messages and where its bytes come from.
enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Stdin => "standard input".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    fn read(&self) -> Result<Vec<u8>> {
        match self {
            Source::Stdin => {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::usage(format!("cannot read standard input: {e}")))?;
                Ok(bytes)
            }
            Source::File(p) => std::fs::read(p).map_err(|source| Error::File {
                action: "cannot read",
                path: p.clone(),
                source,
            }),
        }
    }
}

/// The inputs PATHS name: `-`, files, the messages of a Maildir (`cur/`, `new/`), the files of a folder.
fn sources(paths: &[String]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            out.push(Source::Stdin);
            continue;
        }
        let path = Path::new(p);
        let meta = std::fs::metadata(path).map_err(|source| Error::File {
            action: "cannot read",
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            out.push(Source::File(path.to_path_buf()));
            continue;
        }
        let maildir = ["cur", "new"].iter().any(|d| path.join(d).is_dir());
        let dirs: Vec<PathBuf> = if maildir {
            ["cur", "new"].iter().map(|d| path.join(d)).collect()
        } else {
            vec![path.to_path_buf()]
        };
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect();
            files.sort();
            out.extend(files.into_iter().map(Source::File));
        }
    }
    Ok(out)
}

/// The messages of an mbox file (`From ` lines at the start of the file or after an empty line), or None when
/// `bytes` is not one.
fn mbox_messages(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    if !bytes.starts_with(b"From ") {
        return None;
    }
    let mut starts = vec![0];
    let mut at = 0;
    // A `From ` line after an empty line, with LF or CRLF line ends.
    loop {
        let lf = memmem::find(&bytes[at..], b"\n\nFrom ").map(|p| p + 2);
        let crlf = memmem::find(&bytes[at..], b"\r\n\r\nFrom ").map(|p| p + 4);
        let Some(next) = lf.into_iter().chain(crlf).min() else {
            break;
        };
        starts.push(at + next);
        at += next;
    }
    let mut messages = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
        let message = &bytes[start..end];
        // Past the `From ` separator line.
        let body = message
            .iter()
            .position(|b| *b == b'\n')
            .map_or(&message[message.len()..], |nl| &message[nl + 1..]);
        messages.push(body);
    }
    Some(messages)
}

/// One report found by `reports import`, or one rejected input.
#[derive(Debug, Serialize)]
struct Imported {
    /// The input (file, `file (message N)`, standard input).
    source: String,
    /// stored, already_stored, not_hosted, rejected or skipped (a message without a report).
    status: &'static str,
    /// The stored report's number.
    id: Option<i64>,
    kind: Option<&'static str>,
    org_name: Option<String>,
    report_id: Option<String>,
    domain: Option<String>,
    /// DMARC records or TLS result lines.
    rows: Option<usize>,
    /// Messages (DMARC) or sessions (TLS).
    messages: Option<i64>,
    /// Why it was rejected.
    reason: Option<String>,
}

struct ImportList(Vec<Imported>);

impl Serialize for ImportList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for ImportList {
    fn render(&self) -> String {
        let shown: Vec<&Imported> = self
            .0
            .iter()
            .filter(|i| i.status != "rejected" && i.status != "skipped")
            .collect();
        if shown.is_empty() {
            return "no reports imported".into();
        }
        table(
            &[
                "STATUS",
                "ID",
                "KIND",
                "DOMAIN",
                "REPORTER",
                "REPORT ID",
                "ROWS",
                "MESSAGES",
            ],
            shown.iter().map(|i| {
                vec![
                    i.status.replace('_', " "),
                    i.id.map(|n| n.to_string()).unwrap_or_default(),
                    i.kind.unwrap_or_default().to_string(),
                    i.domain.clone().unwrap_or_default(),
                    i.org_name.clone().unwrap_or_default(),
                    i.report_id.clone().unwrap_or_default(),
                    i.rows.map(|n| n.to_string()).unwrap_or_default(),
                    i.messages.map(|n| n.to_string()).unwrap_or_default(),
                ]
            }),
        )
    }
}

fn rejected(source: &str, reason: String) -> Imported {
    Imported {
        source: source.to_string(),
        status: "rejected",
        id: None,
        kind: None,
        org_name: None,
        report_id: None,
        domain: None,
        rows: None,
        messages: None,
        reason: Some(reason),
    }
}

async fn import(ctx: &Ctx, paths: &[String]) -> Result<()> {
    let sources = sources(paths)?;
    let store = ctx.store().await?;
    let bar = ctx.out.progress(sources.len() as u64, "importing");
    let mut results = Vec::new();
    for source in &sources {
        let name = source.name();
        // A file that vanished or cannot be read is one rejected input, not the end of the run (a mail
        // server may move a message from new/ to cur/ meanwhile).
        let bytes = match source.read() {
            Ok(bytes) => bytes,
            Err(e) => {
                results.push(rejected(&name, e.to_string()));
                bar.inc(1);
                continue;
            }
        };
        let inputs: Vec<(String, &[u8])> = match mbox_messages(&bytes) {
            Some(messages) if messages.len() > 1 => messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| (format!("{name} (message {})", i + 1), m))
                .collect(),
            Some(one) => one.into_iter().map(|m| (name.clone(), m)).collect(),
            None => vec![(name.clone(), bytes.as_slice())],
        };
        for (input, data) in inputs {
            let found = extract::extract(data, Limits::default());
            for why in found.rejected {
                results.push(rejected(&input, why));
            }
            for why in found.skipped {
                ctx.out.note(format!("{input}: {why}: skipped"));
                let mut skipped = rejected(&input, why);
                skipped.status = "skipped";
                results.push(skipped);
            }
            for report in &found.reports {
                // Each report commits on its own: a bad one next to it never takes it back.
                let mut tx = store.begin_write().await?;
                let outcome = ingest::store(&mut tx, report, &format!("file {input}")).await?;
                tx.commit().await?;
                let (status, id, reason) = match &outcome.fate {
                    Fate::Stored(id) => ("stored", Some(*id), None),
                    Fate::AlreadyStored(id) => ("already_stored", Some(*id), None),
                    Fate::NotHosted => ("not_hosted", None, None),
                    Fate::Rejected(why) => ("rejected", None, Some(why.clone())),
                };
                match &outcome.fate {
                    Fate::AlreadyStored(id) => ctx.out.note(format!(
                        "{input}: report {} of {} is stored already (number {id}): unchanged",
                        outcome.report_id, outcome.org_name
                    )),
                    Fate::NotHosted => ctx.out.note(format!(
                        "{input}: report {} of {} is about {}, which is not hosted here: ignored",
                        outcome.report_id, outcome.org_name, outcome.domain
                    )),
                    _ => {}
                }
                results.push(Imported {
                    source: input.clone(),
                    status,
                    id,
                    kind: Some(outcome.kind),
                    org_name: Some(outcome.org_name),
                    report_id: Some(outcome.report_id),
                    domain: Some(outcome.domain),
                    rows: Some(outcome.rows),
                    messages: Some(outcome.messages),
                    reason,
                });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    let (stored, again, foreign, bad, skipped) = (
        count("stored"),
        count("already_stored"),
        count("not_hosted"),
        count("rejected"),
        count("skipped"),
    );
    let problems: Vec<String> = results
        .iter()
        .filter(|r| r.status == "rejected")
        .map(|r| {
            format!(
                "rejected: {}: {}",
                r.source,
                r.reason.as_deref().unwrap_or_default()
            )
        })
        .collect();
    ctx.out.emit(&ImportList(results));
    let summary = format!(
        "{stored} stored, {again} already stored, {foreign} not about a hosted domain, {bad} rejected{}",
        if skipped > 0 {
            format!(", {skipped} messages without a report skipped")
        } else {
            String::new()
        }
    );
    if bad > 0 {
        return Err(Error::Rows {
            summary,
            rows: problems,
        });
    }
    ctx.out.note(summary);
    Ok(())
}

/// A stored report as printed.
#[derive(Debug, Serialize)]
struct ReportView {
    id: i64,
    kind: String,
    domain: String,
    org_name: String,
    report_id: String,
    email: String,
    begin: String,
    end: String,
    policy: String,
    /// DMARC: messages; TLS: sessions.
    messages: i64,
    /// DMARC: messages that passed neither DKIM nor SPF aligned; TLS: failed sessions.
    failed: i64,
    source: String,
    received: String,
}

impl From<&ReportRow> for ReportView {
    fn from(r: &ReportRow) -> Self {
        ReportView {
            id: r.id,
            kind: r.kind.clone(),
            domain: r.domain.clone(),
            org_name: r.org_name.clone(),
            report_id: r.report_id.clone(),
            email: r.email.clone(),
            begin: db_to_rfc3339(&r.date_begin),
            end: db_to_rfc3339(&r.date_end),
            policy: r.policy.clone(),
            messages: r.messages,
            failed: r.failed,
            source: r.source.clone(),
            received: db_to_rfc3339(&r.received),
        }
    }
}

struct ReportList(Vec<ReportRow>);

impl Serialize for ReportList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let views: Vec<ReportView> = self.0.iter().map(ReportView::from).collect();
        views.serialize(s)
    }
}

impl Render for ReportList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no reports in that period".into();
        }
        table(
            &[
                "ID",
                "KIND",
                "DOMAIN",
                "REPORTER",
                "PERIOD END",
                "MESSAGES",
                "FAILED",
                "POLICY",
            ],
            self.0.iter().map(|r| {
                vec![
                    r.id.to_string(),
                    r.kind.clone(),
                    r.domain.clone(),
                    r.org_name.clone(),
                    db_to_local(&r.date_end),
                    r.messages.to_string(),
                    r.failed.to_string(),
                    r.policy.clone(),
                ]
            }),
        )
    }
}

async fn list(ctx: &Ctx, since_text: &str, domains: &[String], sent: bool) -> Result<()> {
    let from = since(since_text)?;
    let domains: Vec<String> = domains
        .iter()
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    if sent {
        let mut rows = tx.sent_reports_since(&to_db(from)).await?;
        tx.rollback().await?;
        if !domains.is_empty() {
            rows.retain(|r| domains.contains(&r.domain));
        }
        ctx.out.emit(&SentList(rows));
        return Ok(());
    }
    let mut rows = tx.reports_since(&to_db(from)).await?;
    tx.rollback().await?;
    if !domains.is_empty() {
        rows.retain(|r| domains.contains(&r.domain));
    }
    ctx.out.emit(&ReportList(rows));
    Ok(())
}

/// `reports list --sent`: the reports this server built, with where they went.
struct SentList(Vec<SentReportRow>);

/// One report sent, as printed.
#[derive(Debug, Serialize)]
struct SentView {
    kind: String,
    domain: String,
    report_id: String,
    date_begin: String,
    date_end: String,
    records: i64,
    messages: i64,
    destinations: Vec<String>,
    outcome: String,
    sent: String,
}

impl From<&SentReportRow> for SentView {
    fn from(r: &SentReportRow) -> Self {
        SentView {
            kind: r.kind.clone(),
            domain: r.domain.clone(),
            report_id: r.report_id.clone(),
            date_begin: db_to_rfc3339(&r.date_begin),
            date_end: db_to_rfc3339(&r.date_end),
            records: r.records,
            messages: r.messages,
            destinations: r
                .destinations
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            outcome: r.outcome.clone(),
            sent: db_to_rfc3339(&r.sent),
        }
    }
}

impl Serialize for SentList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let views: Vec<SentView> = self.0.iter().map(SentView::from).collect();
        views.serialize(s)
    }
}

impl Render for SentList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no reports sent in that period".into();
        }
        table(
            &["KIND", "DOMAIN", "PERIOD END", "MESSAGES", "TO", "OUTCOME"],
            self.0.iter().map(|r| {
                vec![
                    r.kind.clone(),
                    r.domain.clone(),
                    db_to_local(&r.date_end),
                    r.messages.to_string(),
                    r.destinations.clone(),
                    r.outcome.clone(),
                ]
            }),
        )
    }
}

/// `reports show`: the report and its records or results.
#[derive(Debug, Serialize)]
struct Shown {
    report: ReportView,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecordView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<TlsView>>,
}

#[derive(Debug, Serialize)]
struct RecordView {
    source_ip: String,
    count: i64,
    disposition: String,
    dkim: String,
    spf: String,
    header_from: String,
    envelope_from: String,
    dkim_auth: String,
    spf_auth: String,
    reason: String,
}

impl From<DmarcRecordRow> for RecordView {
    fn from(r: DmarcRecordRow) -> Self {
        RecordView {
            source_ip: r.source_ip,
            count: r.count,
            disposition: r.disposition,
            dkim: r.dkim,
            spf: r.spf,
            header_from: r.header_from,
            envelope_from: r.envelope_from,
            dkim_auth: r.dkim_auth,
            spf_auth: r.spf_auth,
            reason: r.reason,
        }
    }
}

#[derive(Debug, Serialize)]
struct TlsView {
    policy_type: String,
    policy_domain: String,
    result: String,
    sending_ip: String,
    receiving_mx: String,
    receiving_ip: String,
    count: i64,
    detail: String,
}

impl From<TlsResultRow> for TlsView {
    fn from(r: TlsResultRow) -> Self {
        TlsView {
            policy_type: r.policy_type,
            policy_domain: r.policy_domain,
            result: r.result,
            sending_ip: r.sending_ip,
            receiving_mx: r.receiving_mx,
            receiving_ip: r.receiving_ip,
            count: r.count,
            detail: r.detail,
        }
    }
}

impl Render for Shown {
    fn render(&self) -> String {
        let r = &self.report;
        let details = key_values(vec![
            ("id", r.id.to_string()),
            ("kind", r.kind.clone()),
            ("domain", r.domain.clone()),
            ("reporter", format!("{} <{}>", r.org_name, r.email)),
            ("report id", r.report_id.clone()),
            ("period", format!("{} .. {}", r.begin, r.end)),
            ("policy", r.policy.clone()),
            (
                if r.kind == "dmarc" {
                    "messages"
                } else {
                    "sessions"
                },
                format!("{} ({} failed)", r.messages, r.failed),
            ),
            ("source", r.source.clone()),
            ("received", r.received.clone()),
        ]);
        let rows = match (&self.records, &self.results) {
            (Some(records), _) => table(
                &[
                    "SOURCE IP",
                    "COUNT",
                    "DISPOSITION",
                    "DKIM",
                    "SPF",
                    "HEADER FROM",
                    "ENVELOPE FROM",
                    "AUTH RESULTS",
                    "REASON",
                ],
                records.iter().map(|x| {
                    vec![
                        x.source_ip.clone(),
                        x.count.to_string(),
                        x.disposition.clone(),
                        x.dkim.clone(),
                        x.spf.clone(),
                        x.header_from.clone(),
                        x.envelope_from.clone(),
                        format!(
                            "dkim {} spf {}",
                            or_none(&x.dkim_auth),
                            or_none(&x.spf_auth)
                        ),
                        x.reason.clone(),
                    ]
                }),
            ),
            (_, Some(results)) => table(
                &[
                    "POLICY",
                    "DOMAIN",
                    "RESULT",
                    "SESSIONS",
                    "SENDING IP",
                    "MX",
                    "MX IP",
                    "DETAIL",
                ],
                results.iter().map(|x| {
                    vec![
                        x.policy_type.clone(),
                        x.policy_domain.clone(),
                        x.result.clone(),
                        x.count.to_string(),
                        x.sending_ip.clone(),
                        x.receiving_mx.clone(),
                        x.receiving_ip.clone(),
                        x.detail.clone(),
                    ]
                }),
            ),
            _ => String::new(),
        };
        format!("{details}\n\n{rows}")
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

async fn show(ctx: &Ctx, id: i64) -> Result<()> {
    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    let report = tx
        .report(id)
        .await?
        .ok_or_else(|| Error::not_found("report", id))?;
    let (records, results) = if report.kind == "dmarc" {
        let rows = tx.report_dmarc_records(id).await?;
        (Some(rows.into_iter().map(RecordView::from).collect()), None)
    } else {
        let rows = tx.report_tls_results(id).await?;
        (None, Some(rows.into_iter().map(TlsView::from).collect()))
    };
    tx.rollback().await?;
    ctx.out.emit(&Shown {
        report: ReportView::from(&report),
        records,
        results,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_dates_and_names_what_is_wrong() {
        let week = since("7d").unwrap();
        let age = Utc::now() - week;
        assert!(age.num_hours() >= 167 && age.num_hours() <= 168, "{age}");
        assert_eq!(
            since("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        for bad in ["", "7", "d", "7w", "2026-13-01", "99999999999999d"] {
            let e = since(bad).unwrap_err().to_string();
            assert!(e.starts_with("--since"), "{bad}: {e}");
        }
    }

    #[test]
    fn mbox_files_split_at_from_lines_after_an_empty_line() {
        let mbox = b"From a@b Mon Dec  7 10:00:00 2026\nSubject: 1\n\nbody\nFrom inside the body\n\nFrom c@d Mon Dec  7 11:00:00 2026\nSubject: 2\n\nbody\n";
        let m = mbox_messages(mbox).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[0].starts_with(b"Subject: 1"));
        assert!(m[1].starts_with(b"Subject: 2"));
        assert!(mbox_messages(b"Subject: x\n\nbody").is_none());
        let crlf = b"From a@b Mon Dec  7 10:00:00 2026\r\nSubject: 1\r\n\r\nbody\r\n\r\nFrom c@d Mon Dec  7 11:00:00 2026\r\nSubject: 2\r\n\r\nbody\r\n";
        let m = mbox_messages(crlf).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[1].starts_with(b"Subject: 2"));
    }
}
