//! `queue delete --bounce`: the non-delivery report that tells the sender of a deleted message which
//! recipients will never get it. It is queued with the null sender, so the running `serve` delivers it like
//! any other DSN (locally when the sender is hosted here).

use crate::config::Config;
use crate::smtp::outbound::dsn::{self, Diagnostic, Dsn, RecipientStatus, Report};
use crate::smtp::queue::{Entry, Status};

/// The diagnostic every pending recipient of a deleted message gets (`X-mailctl; ...` in the DSN).
pub const DIAGNOSTIC: &str = "deleted by the administrator";

/// What `--bounce` decided for a deleted entry.
pub enum Bounce {
    /// A DSN to queue, reporting on these recipients.
    Send(Dsn, Vec<String>),
    /// No DSN, and why (null sender, nothing undelivered, unusable sender).
    Skip(String),
}

/// Builds the bounce for `entry` (as it was when deleted) from its message bytes `message`: one report for
/// every recipient still pending (status 5.0.0, deleted by the administrator), plus failed or expired ones
/// whose DSN the delivery loop had not sent yet (deleting the entry is the last chance to tell the sender).
pub fn build(entry: &Entry, message: &[u8], config: &Config) -> Bounce {
    if entry.sender.is_empty() {
        return Bounce::Skip("the sender is <> (no bounce to a bounce)".into());
    }
    let mut statuses = Vec::new();
    for r in &entry.recipients {
        let diagnostic = match r.status {
            Status::Pending => Diagnostic::Local(DIAGNOSTIC.into()),
            Status::Failed | Status::Expired if !r.notified => Diagnostic::Local(
                r.last_error
                    .clone()
                    .unwrap_or_else(|| "delivery failed".into()),
            ),
            _ => continue,
        };
        statuses.push(RecipientStatus {
            final_recipient: r.address.clone(),
            original_recipient: None,
            status: "5.0.0".into(),
            remote_mta: None,
            diagnostic: Some(diagnostic),
            last_attempt: r.last_attempt,
            will_retry_until: None,
        });
    }
    if statuses.is_empty() {
        return Bounce::Skip("no recipient was left undelivered".into());
    }
    let host = reporting_mta(config);
    let report = Report {
        reporting_mta: &host,
        original_sender: &entry.sender,
        arrival_date: entry.created,
        original_message: message,
        original_envelope_id: None,
    };
    match dsn::bounce(&report, &statuses) {
        Ok(dsn) => Bounce::Send(
            dsn,
            statuses.into_iter().map(|s| s.final_recipient).collect(),
        ),
        Err(e) => Bounce::Skip(e.to_string()),
    }
}

/// This server's name for the DSN's `Reporting-MTA` and `MAILER-DAEMON@`: `server.hostname`, else the
/// kernel's host name, else `localhost` (a bounce is still better than none).
fn reporting_mta(config: &Config) -> String {
    config
        .hostname
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}
