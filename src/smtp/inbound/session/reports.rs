//! Report mail: a message from another server to one of our report addresses (`[server.reports]`, by default
//! `postmaster@` of each hosted domain, the address `mailctl dns records` publishes in `rua=`) is searched for
//! DMARC aggregate and TLS reports, which are stored as `mailctl reports import` stores them, before the reply
//! to DATA. The message is still delivered to the mailbox (so nothing depends on the database being up), unless
//! `keep = false` and every recipient was a report address and every report in it was stored.
//!
//! Only mail our checks did not judge spam is read: anyone can send a forged report, and a report that fails
//! its sender's DMARC should not end up in the numbers.

use std::sync::Arc;
use std::time::Duration;

use super::Session;
use crate::reports::extract::{self, Limits};
use crate::reports::ingest::{self, Fate};
use crate::smtp::metrics::ReportResult;

/// How long storing the reports of one message may take in all (a large report has hundreds of thousands of
/// rows), well inside the 10 minutes a client waits for the reply to DATA (RFC 5321 4.5.3.2.6).
const STORE_DEADLINE: Duration = Duration::from_secs(240);

/// What reading a message for reports came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// Not report mail, or some of it could not be stored: deliver as usual.
    Deliver,
    /// Every report is stored and the message need not be delivered (`keep = false`).
    Stored,
}

impl Session {
    /// Stores the reports in `message` when it is addressed to a report address (see the module doc).
    pub(super) async fn take_reports(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        message: Arc<Vec<u8>>,
    ) -> Taken {
        let settings = &self.server.settings.reports;
        let to_reports = recipients
            .iter()
            .filter(|r| settings.is_report_address(r))
            .count();
        if to_reports == 0 {
            return Taken::Deliver;
        }
        let found = match tokio::task::spawn_blocking(move || {
            extract::extract(&message, Limits::default())
        })
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(target: "mailctl::smtp", id, error = %e, "reading report mail failed");
                return Taken::Deliver;
            }
        };
        if found.reports.is_empty() {
            // Ordinary mail to postmaster: nothing to say unless it looked like a report.
            for why in &found.rejected {
                tracing::debug!(target: "mailctl::smtp", id, why = %why, "no report in mail to a report address");
            }
            return Taken::Deliver;
        }
        let metrics = &self.server.metrics;
        for why in &found.rejected {
            tracing::warn!(target: "mailctl::smtp", id, sender, why = %why, "report rejected");
            let kind = if why.contains("TLS report") {
                "tls"
            } else {
                "dmarc"
            };
            metrics.report(kind, ReportResult::Rejected);
        }
        let source = format!(
            "mail {id} from {}",
            if sender.is_empty() { "<>" } else { sender }
        );
        let mut all_stored = found.rejected.is_empty();
        let deadline = tokio::time::Instant::now() + STORE_DEADLINE;
        for report in &found.reports {
            let store = async {
                let mut tx = self.server.store.begin_write().await?;
                let outcome = ingest::store(&mut tx, report, &source).await?;
                tx.commit().await?;
                Ok::<_, crate::error::Error>(outcome)
            };
            let outcome = match tokio::time::timeout_at(deadline, store).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(e)) => {
                    tracing::warn!(target: "mailctl::smtp", id, error = %e, "cannot store a report");
                    all_stored = false;
                    continue;
                }
                Err(_) => {
                    // The rest waits in the mailbox (the message is delivered) for `reports import`.
                    tracing::warn!(target: "mailctl::smtp", id,
                        "storing the reports of this message ran out of time: the rest stay in the mailbox");
                    all_stored = false;
                    break;
                }
            };
            let (kind, org, report_id, domain) = (
                outcome.kind,
                outcome.org_name.as_str(),
                outcome.report_id.as_str(),
                outcome.domain.as_str(),
            );
            let result = match &outcome.fate {
                Fate::Stored(_) => ReportResult::Stored,
                Fate::AlreadyStored(_) => ReportResult::Duplicate,
                Fate::NotHosted => ReportResult::Foreign,
                Fate::Rejected(_) => ReportResult::Rejected,
            };
            metrics.report(kind, result);
            match &outcome.fate {
                Fate::Stored(number) => {
                    tracing::info!(target: "mailctl::smtp", id, kind, org, report_id, domain, number,
                        rows = outcome.rows, "report stored")
                }
                Fate::AlreadyStored(number) => {
                    tracing::info!(target: "mailctl::smtp", id, kind, org, report_id, number,
                        "report stored before: unchanged")
                }
                Fate::NotHosted => {
                    tracing::info!(target: "mailctl::smtp", id, kind, org, report_id, domain,
                        "report about a domain not hosted here: ignored");
                    // Not stored: the mailbox keeps the message.
                    all_stored = false;
                }
                Fate::Rejected(why) => {
                    tracing::warn!(target: "mailctl::smtp", id, kind, org, why = %why, "report rejected");
                    all_stored = false;
                }
            }
        }
        if !settings.keep && all_stored && to_reports == recipients.len() {
            Taken::Stored
        } else {
            Taken::Deliver
        }
    }
}
