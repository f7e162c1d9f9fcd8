//! `mailctl_reports`, `mailctl_report_dmarc`, `mailctl_report_tls`: the DMARC aggregate and TLS reports
//! receivers sent about the hosted domains (`mailctl reports`, [`crate::reports`]).

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// One stored report.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReportRow {
    /// Its number in this database (`reports show ID`).
    pub id: i64,
    /// `dmarc` or `tls`.
    pub kind: String,
    /// The domain it is about (DMARC: the policy domain; TLS: the first policy's domain).
    pub domain: String,
    /// Who sent it.
    pub org_name: String,
    /// The reporter's id for it (unique per reporter).
    pub report_id: String,
    /// The reporter's contact address.
    pub email: String,
    /// When the period it covers begins, `YYYY-MM-DD HH:MM:SS` UTC.
    pub date_begin: String,
    /// When that period ends.
    pub date_end: String,
    /// DMARC: the policy the reporter saw (`p=reject sp=reject adkim=r aspf=r`); TLS: the policy types.
    pub policy: String,
    /// DMARC: messages; TLS: sessions.
    pub messages: i64,
    /// DMARC: messages that passed neither DKIM nor SPF aligned; TLS: failed sessions.
    pub failed: i64,
    /// Where it came from (`mail from ...`, `file ...`).
    pub source: String,
    /// When it was stored.
    pub received: String,
}

/// One record (row) of a DMARC aggregate report.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DmarcRecordRow {
    /// The IP the mail came from (empty when the reporter left it out).
    pub source_ip: String,
    /// How many messages.
    pub count: i64,
    /// What the receiver did: `none`, `quarantine` or `reject`.
    pub disposition: String,
    /// DMARC's DKIM verdict (aligned pass or fail).
    pub dkim: String,
    /// DMARC's SPF verdict (aligned pass or fail).
    pub spf: String,
    /// The RFC5322.From domain.
    pub header_from: String,
    /// The RFC5321.MailFrom domain (empty when not reported).
    pub envelope_from: String,
    /// Each DKIM result, `domain/selector=result`, space-separated.
    pub dkim_auth: String,
    /// Each SPF result, `domain=result`, space-separated.
    pub spf_auth: String,
    /// Why the receiver overrode the policy (`forwarded`, `local_policy: ...`), if it did.
    pub reason: String,
}

/// One line of a TLS report: a policy's successful sessions, or one kind of failure.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TlsResultRow {
    /// `sts`, `tlsa`, `no-policy-found`.
    pub policy_type: String,
    /// The domain whose policy was applied.
    pub policy_domain: String,
    /// `success`, or the failure's result type (`certificate-expired`, `starttls-not-supported`, ...).
    pub result: String,
    /// The sending MTA's IP (failures only).
    pub sending_ip: String,
    /// The MX host (the policy's MX patterns on a success line).
    pub receiving_mx: String,
    /// The MX's IP (failures only).
    pub receiving_ip: String,
    /// Sessions.
    pub count: i64,
    /// The reporter's details (reason code, additional information).
    pub detail: String,
}

macro_rules! select {
    () => {
        "SELECT id, kind, domain, org_name, report_id, email, CAST(date_begin AS CHAR) AS date_begin, \
         CAST(date_end AS CHAR) AS date_end, policy, messages, failed, source, \
         CAST(received AS CHAR) AS received FROM mailctl_reports"
    };
}

/// Rows per multi-row INSERT: few round trips, well below either backend's limit on bound values.
pub(super) const BATCH: usize = 500;

impl Tx {
    /// The stored report `report_id` of `org_name` of this kind, if any.
    pub async fn report_by_key(
        &mut self,
        kind: &str,
        org_name: &str,
        report_id: &str,
    ) -> Result<Option<ReportRow>> {
        let sql = concat!(
            select!(),
            " WHERE kind = ? AND org_name = ? AND report_id = ?"
        );
        on_conn!(self, |c| sqlx::query_as::<_, ReportRow>(sql)
            .bind(kind)
            .bind(org_name)
            .bind(report_id)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the reports", e))
    }

    /// The report numbered `id`.
    pub async fn report(&mut self, id: i64) -> Result<Option<ReportRow>> {
        let sql = concat!(select!(), " WHERE id = ?");
        on_conn!(self, |c| sqlx::query_as::<_, ReportRow>(sql)
            .bind(id)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the reports", e))
    }

    /// Reports whose period ends at or after `since` (`YYYY-MM-DD HH:MM:SS`), oldest first.
    pub async fn reports_since(&mut self, since: &str) -> Result<Vec<ReportRow>> {
        let sql = concat!(select!(), " WHERE date_end >= ? ORDER BY date_end, id");
        on_conn!(self, |c| sqlx::query_as::<_, ReportRow>(sql)
            .bind(since)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the reports", e))
    }

    /// Stores a report with its DMARC records or TLS results; `report.id` is ignored. Returns the new id.
    pub async fn insert_report(
        &mut self,
        report: &ReportRow,
        dmarc: &[DmarcRecordRow],
        tls: &[TlsResultRow],
    ) -> Result<i64> {
        let what = || format!("storing report {} of {}", report.report_id, report.org_name);
        let insert = "INSERT INTO mailctl_reports (kind, domain, org_name, report_id, email, date_begin, \
                      date_end, policy, messages, failed, source, received) \
                      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(insert)
            .bind(&report.kind)
            .bind(&report.domain)
            .bind(&report.org_name)
            .bind(&report.report_id)
            .bind(&report.email)
            .bind(&report.date_begin)
            .bind(&report.date_end)
            .bind(&report.policy)
            .bind(report.messages)
            .bind(report.failed)
            .bind(&report.source)
            .bind(&report.received)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(what(), e))?;
        let id = self
            .report_by_key(&report.kind, &report.org_name, &report.report_id)
            .await?
            .map(|r| r.id)
            .ok_or_else(|| Error::Refused(format!("{}: the new row is not there", what())))?;

        for chunk in dmarc.chunks(BATCH) {
            let sql = values_sql(
                "INSERT INTO mailctl_report_dmarc (report, source_ip, count, disposition, dkim, spf, \
                 header_from, envelope_from, dkim_auth, spf_auth, reason) VALUES ",
                11,
                chunk.len(),
            );
            on_conn!(self, |c| {
                // Only placeholders are added to the fixed statement: no value ever enters the text.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for r in chunk {
                    q = q
                        .bind(id)
                        .bind(&r.source_ip)
                        .bind(r.count)
                        .bind(&r.disposition)
                        .bind(&r.dkim)
                        .bind(&r.spf)
                        .bind(&r.header_from)
                        .bind(&r.envelope_from)
                        .bind(&r.dkim_auth)
                        .bind(&r.spf_auth)
                        .bind(&r.reason);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| Error::db(what(), e))?;
        }
        for chunk in tls.chunks(BATCH) {
            let sql = values_sql(
                "INSERT INTO mailctl_report_tls (report, policy_type, policy_domain, result, sending_ip, \
                 receiving_mx, receiving_ip, count, detail) VALUES ",
                9,
                chunk.len(),
            );
            on_conn!(self, |c| {
                // Only placeholders are added to the fixed statement: no value ever enters the text.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for r in chunk {
                    q = q
                        .bind(id)
                        .bind(&r.policy_type)
                        .bind(&r.policy_domain)
                        .bind(&r.result)
                        .bind(&r.sending_ip)
                        .bind(&r.receiving_mx)
                        .bind(&r.receiving_ip)
                        .bind(r.count)
                        .bind(&r.detail);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| Error::db(what(), e))?;
        }
        Ok(id)
    }

    /// The DMARC records of report `id`, most messages first.
    pub async fn report_dmarc_records(&mut self, id: i64) -> Result<Vec<DmarcRecordRow>> {
        let sql = "SELECT source_ip, count, disposition, dkim, spf, header_from, envelope_from, dkim_auth, \
                   spf_auth, reason FROM mailctl_report_dmarc WHERE report = ? ORDER BY count DESC, source_ip";
        on_conn!(self, |c| sqlx::query_as::<_, DmarcRecordRow>(sql)
            .bind(id)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading a report's records", e))
    }

    /// The TLS results of report `id`.
    pub async fn report_tls_results(&mut self, id: i64) -> Result<Vec<TlsResultRow>> {
        let sql = "SELECT policy_type, policy_domain, result, sending_ip, receiving_mx, receiving_ip, count, \
                   detail FROM mailctl_report_tls WHERE report = ? ORDER BY policy_domain, result, count DESC";
        on_conn!(self, |c| sqlx::query_as::<_, TlsResultRow>(sql)
            .bind(id)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading a report's results", e))
    }
}

/// `prefix` followed by `rows` groups of `columns` placeholders.
pub(super) fn values_sql(prefix: &str, columns: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(prefix.len() + rows * (group.len() + 2));
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&group);
    }
    sql
}

/// The DMARC records of one domain from one source IP over a period, summed.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SourceTotals {
    /// The domain the reports are about.
    pub domain: String,
    /// The sending IP (empty when reporters left it out).
    pub source_ip: String,
    /// Messages.
    pub messages: i64,
    /// Messages whose DKIM passed aligned.
    pub dkim_pass: i64,
    /// Messages whose SPF passed aligned.
    pub spf_pass: i64,
    /// Messages that passed DMARC (DKIM or SPF aligned).
    pub dmarc_pass: i64,
    /// Messages the receivers quarantined.
    pub quarantined: i64,
    /// Messages the receivers rejected.
    pub rejected: i64,
    /// One DKIM result line of these records (`domain/selector=result ...`), for the likely cause.
    pub dkim_auth: String,
    /// One SPF result line of these records.
    pub spf_auth: String,
}

/// Reports of one domain, kind and reporter over a period.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReporterTotals {
    /// The domain.
    pub domain: String,
    /// `dmarc` or `tls`.
    pub kind: String,
    /// The reporter.
    pub org_name: String,
    /// How many reports.
    pub reports: i64,
    /// Messages (DMARC) or sessions (TLS).
    pub messages: i64,
    /// Failed messages or sessions.
    pub failed: i64,
    /// The earliest start and the latest end of their periods.
    pub first: String,
    /// See `first`.
    pub last: String,
}

/// TLS sessions of one domain with one result over a period.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TlsTotals {
    /// The domain.
    pub domain: String,
    /// `success` or a failure's result type.
    pub result: String,
    /// Sessions.
    pub sessions: i64,
}

impl Tx {
    /// DMARC records of reports whose period ended at or after `since`, summed per domain and source IP.
    pub async fn dmarc_sources_since(&mut self, since: &str) -> Result<Vec<SourceTotals>> {
        let sql = "SELECT r.domain AS domain, d.source_ip AS source_ip, \
                   CAST(SUM(d.count) AS SIGNED) AS messages, \
                   CAST(SUM(CASE WHEN d.dkim = 'pass' THEN d.count ELSE 0 END) AS SIGNED) AS dkim_pass, \
                   CAST(SUM(CASE WHEN d.spf = 'pass' THEN d.count ELSE 0 END) AS SIGNED) AS spf_pass, \
                   CAST(SUM(CASE WHEN d.dkim = 'pass' OR d.spf = 'pass' THEN d.count ELSE 0 END) AS SIGNED) \
                   AS dmarc_pass, \
                   CAST(SUM(CASE WHEN d.disposition = 'quarantine' THEN d.count ELSE 0 END) AS SIGNED) \
                   AS quarantined, \
                   CAST(SUM(CASE WHEN d.disposition = 'reject' THEN d.count ELSE 0 END) AS SIGNED) AS rejected, \
                   MAX(d.dkim_auth) AS dkim_auth, MAX(d.spf_auth) AS spf_auth \
                   FROM mailctl_report_dmarc d JOIN mailctl_reports r ON r.id = d.report \
                   WHERE r.kind = 'dmarc' AND r.date_end >= ? \
                   GROUP BY r.domain, d.source_ip ORDER BY r.domain, messages DESC, d.source_ip";
        on_conn!(self, |c| sqlx::query_as::<_, SourceTotals>(sql)
            .bind(since)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("summing the DMARC reports", e))
    }

    /// Reports whose period ended at or after `since`, counted per domain, kind and reporter.
    pub async fn reporters_since(&mut self, since: &str) -> Result<Vec<ReporterTotals>> {
        let sql = "SELECT domain, kind, org_name, CAST(COUNT(*) AS SIGNED) AS reports, \
                   CAST(SUM(messages) AS SIGNED) AS messages, CAST(SUM(failed) AS SIGNED) AS failed, \
                   CAST(MIN(date_begin) AS CHAR) AS first, CAST(MAX(date_end) AS CHAR) AS last \
                   FROM mailctl_reports WHERE date_end >= ? \
                   GROUP BY domain, kind, org_name ORDER BY domain, kind, reports DESC, org_name";
        on_conn!(self, |c| sqlx::query_as::<_, ReporterTotals>(sql)
            .bind(since)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("counting the reports", e))
    }

    /// TLS results of reports whose period ended at or after `since`, summed per domain and result.
    pub async fn tls_results_since(&mut self, since: &str) -> Result<Vec<TlsTotals>> {
        let sql = "SELECT r.domain AS domain, t.result AS result, CAST(SUM(t.count) AS SIGNED) AS sessions \
                   FROM mailctl_report_tls t JOIN mailctl_reports r ON r.id = t.report \
                   WHERE r.kind = 'tls' AND r.date_end >= ? \
                   GROUP BY r.domain, t.result ORDER BY r.domain, sessions DESC, t.result";
        on_conn!(self, |c| sqlx::query_as::<_, TlsTotals>(sql)
            .bind(since)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("summing the TLS reports", e))
    }
}
