//! `mailctl_report_events` and `mailctl_reports_sent`: what `serve` saw that other domains asked to hear about
//! (DMARC results of the mail it received, TLS outcomes of its deliveries), and the reports built from it
//! (`mailctl reports send`, [`crate::reports::send`]).

use sqlx::FromRow;

use super::reports::{BATCH, values_sql};
use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// One thing seen: a received message's DMARC result, or one delivery attempt's TLS outcome.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReportEventRow {
    /// Its number (ignored when inserting).
    pub id: i64,
    /// `dmarc` or `tls`.
    pub kind: String,
    /// The domain the report will be about: the DMARC policy domain, or the recipient domain (TLS).
    pub domain: String,
    /// When it was seen, seconds since the epoch.
    pub at: i64,
    /// Where the domain asked for reports at the time (`mailto:a@b.example!10m`, space-separated).
    pub rua: String,
    /// The policy in force, as JSON (DMARC: the published policy; TLS: the policy applied).
    pub policy: String,
    /// What happened, as JSON (DMARC: the report record; TLS: the session's result).
    pub detail: String,
}

/// One report this server built.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SentReportRow {
    /// `dmarc` or `tls`.
    pub kind: String,
    /// The domain it is about.
    pub domain: String,
    /// Its id, the same on every node for the same period.
    pub report_id: String,
    /// When its period begins, `YYYY-MM-DD HH:MM:SS` UTC.
    pub date_begin: String,
    /// When its period ends.
    pub date_end: String,
    /// Records (DMARC) or policies (TLS) in it.
    pub records: i64,
    /// Messages (DMARC) or sessions (TLS) it counts.
    pub messages: i64,
    /// Who it went to, space-separated.
    pub destinations: String,
    /// `queued as ID`, or why it was not sent.
    pub outcome: String,
    /// When it was built.
    pub sent: String,
}

macro_rules! select_sent {
    () => {
        "SELECT kind, domain, report_id, CAST(date_begin AS CHAR) AS date_begin, \
         CAST(date_end AS CHAR) AS date_end, records, messages, destinations, outcome, \
         CAST(sent AS CHAR) AS sent FROM mailctl_reports_sent"
    };
}

impl Tx {
    /// Stores events.
    pub async fn insert_report_events(&mut self, events: &[ReportEventRow]) -> Result<()> {
        for chunk in events.chunks(BATCH) {
            let sql = values_sql(
                "INSERT INTO mailctl_report_events (kind, domain, at, rua, policy, detail) VALUES ",
                6,
                chunk.len(),
            );
            on_conn!(self, |c| {
                // Only placeholders are added to the fixed statement: no value ever enters the text.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for e in chunk {
                    q = q
                        .bind(&e.kind)
                        .bind(&e.domain)
                        .bind(e.at)
                        .bind(&e.rua)
                        .bind(&e.policy)
                        .bind(&e.detail);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| Error::db("recording what the reports will say", e))?;
        }
        Ok(())
    }

    /// Events of `kind` seen before `before` (seconds since the epoch), by domain, oldest first.
    pub async fn report_events_before(
        &mut self,
        kind: &str,
        before: i64,
    ) -> Result<Vec<ReportEventRow>> {
        let sql = "SELECT id, kind, domain, at, rua, policy, detail FROM mailctl_report_events \
                   WHERE kind = ? AND at < ? ORDER BY domain, at, id";
        on_conn!(self, |c| sqlx::query_as::<_, ReportEventRow>(sql)
            .bind(kind)
            .bind(before)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading what the reports will say", e))
    }

    /// Whether any event of `kind` was seen before `before`.
    pub async fn report_events_exist_before(&mut self, kind: &str, before: i64) -> Result<bool> {
        let sql = "SELECT id FROM mailctl_report_events WHERE kind = ? AND at < ? LIMIT 1";
        let row: Option<(i64,)> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(kind)
            .bind(before)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db("reading what the reports will say", e))?;
        Ok(row.is_some())
    }

    /// Removes the events numbered `ids`, once reported (only those: events recorded meanwhile stay).
    pub async fn delete_report_events(&mut self, ids: &[i64]) -> Result<u64> {
        let mut removed = 0;
        for chunk in ids.chunks(BATCH) {
            let sql = format!(
                "DELETE FROM mailctl_report_events WHERE id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            removed += on_conn!(self, |c| {
                // Only placeholders are added to the fixed statement: no value ever enters the text.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| Error::db("removing reported events", e))?;
        }
        Ok(removed)
    }

    /// The report of `kind` with this id, if it was built before.
    pub async fn sent_report(
        &mut self,
        kind: &str,
        report_id: &str,
    ) -> Result<Option<SentReportRow>> {
        let sql = concat!(select_sent!(), " WHERE kind = ? AND report_id = ?");
        on_conn!(self, |c| sqlx::query_as::<_, SentReportRow>(sql)
            .bind(kind)
            .bind(report_id)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the reports sent", e))
    }

    /// Records a report built; an id recorded before is an error (another node built it first).
    pub async fn insert_sent_report(&mut self, row: &SentReportRow) -> Result<()> {
        let sql = "INSERT INTO mailctl_reports_sent (kind, domain, report_id, date_begin, date_end, records, \
                   messages, destinations, outcome, sent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&row.kind)
            .bind(&row.domain)
            .bind(&row.report_id)
            .bind(&row.date_begin)
            .bind(&row.date_end)
            .bind(row.records)
            .bind(row.messages)
            .bind(&row.destinations)
            .bind(&row.outcome)
            .bind(&row.sent)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("recording report {}", row.report_id), e))?;
        Ok(())
    }

    /// Sets what became of a report built (`queued as ID`, or why not).
    pub async fn set_sent_outcome(
        &mut self,
        kind: &str,
        report_id: &str,
        outcome: &str,
    ) -> Result<()> {
        let sql = "UPDATE mailctl_reports_sent SET outcome = ? WHERE kind = ? AND report_id = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(outcome)
            .bind(kind)
            .bind(report_id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("recording report {report_id}"), e))?;
        Ok(())
    }

    /// Reports built whose period ended at or after `since` (`YYYY-MM-DD HH:MM:SS`), oldest first.
    pub async fn sent_reports_since(&mut self, since: &str) -> Result<Vec<SentReportRow>> {
        let sql = concat!(
            select_sent!(),
            " WHERE date_end >= ? ORDER BY date_end, domain, kind"
        );
        on_conn!(self, |c| sqlx::query_as::<_, SentReportRow>(sql)
            .bind(since)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the reports sent", e))
    }
}
