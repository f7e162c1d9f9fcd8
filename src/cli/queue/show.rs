//! How `queue show` prints one entry: envelope, DKIM, lease, per-recipient status, and the message headers
//! (or the whole message with `--body`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::view::{LeaseView, age, local, rfc3339, sender, size, state, terminal_safe};
use crate::output::{Render, key_values, table, yes_no};
use crate::smtp::queue::{Queued, Recipient, Status};

/// One recipient in `queue show`.
#[derive(Debug, Serialize)]
pub struct RecipientView {
    address: String,
    status: Status,
    attempts: u32,
    last_error: Option<String>,
    /// When a pending recipient is tried next; `null` once final.
    next_attempt: Option<String>,
    last_attempt: Option<String>,
    /// For a failed or expired recipient: the sender has been sent its DSN.
    notified: bool,
    #[serde(skip)]
    next_time: Option<DateTime<Utc>>,
}

/// Where the daemon sends the message: to the recipients' MX hosts or through a relay host.
#[derive(Debug, Serialize)]
#[serde(tag = "via", rename_all = "lowercase")]
pub enum Route {
    /// The recipients' MX hosts.
    Mx,
    /// A relay host: its URL (no credentials) and where that route comes from.
    Relay { url: String, source: String },
}

/// `queue show`: the entry, its recipients and lease, and the message headers (or the whole message).
#[derive(Debug, Serialize)]
pub struct Show {
    id: String,
    /// Empty for the null sender.
    sender: String,
    /// How the message was DKIM-signed, if it was.
    dkim: Option<String>,
    created: String,
    age_secs: i64,
    size: u64,
    state: &'static str,
    held: bool,
    delay_warning_sent: bool,
    lease: Option<LeaseView>,
    /// The route the next delivery attempt takes.
    route: Route,
    recipients: Vec<RecipientView>,
    /// The message header block (lossy UTF-8, line ends as stored).
    headers: String,
    /// The whole message, with `--body` (lossy UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip)]
    created_time: DateTime<Utc>,
}

impl Show {
    /// The view of `q` with its message bytes `body` and the `route` it takes; `whole` keeps the whole
    /// message, not just the headers.
    pub fn new(q: &Queued, body: &[u8], route: Route, whole: bool, now: DateTime<Utc>) -> Show {
        let e = &q.entry;
        let next = |r: &Recipient| (r.status == Status::Pending).then_some(r.next_attempt);
        Show {
            id: e.id.to_string(),
            sender: e.sender.clone(),
            dkim: e.dkim.clone(),
            created: rfc3339(e.created),
            age_secs: e.age(now).num_seconds(),
            size: e.size,
            state: state(q, now),
            held: e.hold,
            delay_warning_sent: e.delay_warning_sent,
            lease: q.lease.as_ref().map(LeaseView::new),
            route,
            recipients: e
                .recipients
                .iter()
                .map(|r| RecipientView {
                    address: r.address.clone(),
                    status: r.status,
                    attempts: r.attempts,
                    last_error: r.last_error.clone(),
                    next_attempt: next(r).map(rfc3339),
                    last_attempt: r.last_attempt.map(rfc3339),
                    notified: r.notified,
                    next_time: next(r),
                })
                .collect(),
            headers: String::from_utf8_lossy(header_block(body)).into_owned(),
            message: whole.then(|| String::from_utf8_lossy(body).into_owned()),
            created_time: e.created,
        }
    }
}

/// The header block of a message: everything before the first empty line (all of it when there is none).
pub fn header_block(message: &[u8]) -> &[u8] {
    let mut start = 0;
    for line in message.split_inclusive(|b| *b == b'\n') {
        if line == b"\n" || line == b"\r\n" {
            return &message[..start];
        }
        start += line.len();
    }
    message
}

impl Render for Show {
    fn render(&self) -> String {
        let lease = self
            .lease
            .as_ref()
            .map_or_else(|| "none".to_string(), LeaseView::describe);
        let details = key_values(vec![
            ("id", self.id.clone()),
            ("sender", sender(&self.sender)),
            (
                "DKIM",
                self.dkim.as_deref().map_or_else(
                    || "not signed".into(),
                    |d| format!("signed: {}", terminal_safe(d)),
                ),
            ),
            (
                "created",
                format!("{} ({} ago)", local(self.created_time), age(self.age_secs)),
            ),
            ("size", format!("{} ({} bytes)", size(self.size), self.size)),
            ("state", self.state.to_string()),
            ("held", yes_no(self.held)),
            ("delay warning sent", yes_no(self.delay_warning_sent)),
            ("lease", lease),
            (
                "route",
                match &self.route {
                    Route::Mx => "the recipients' MX hosts".to_string(),
                    Route::Relay { url, source } => {
                        format!("relay {} ({})", terminal_safe(url), terminal_safe(source))
                    }
                },
            ),
        ]);
        let recipients = table(
            &[
                "RECIPIENT",
                "STATUS",
                "ATTEMPTS",
                "NEXT ATTEMPT",
                "LAST ERROR",
            ],
            self.recipients.iter().map(|r| {
                let status = match (r.status, r.notified) {
                    (Status::Pending, _) => "pending",
                    (Status::Delivered, _) => "delivered",
                    (Status::Failed, true) => "failed (notified)",
                    (Status::Failed, false) => "failed (DSN due)",
                    (Status::Expired, true) => "expired (notified)",
                    (Status::Expired, false) => "expired (DSN due)",
                };
                vec![
                    terminal_safe(&r.address),
                    status.to_string(),
                    r.attempts.to_string(),
                    r.next_time.map_or_else(|| "-".into(), local),
                    r.last_error
                        .as_deref()
                        .map_or_else(|| "-".into(), terminal_safe),
                ]
            }),
        );
        let text = self.message.as_deref().unwrap_or(&self.headers);
        let what = if self.message.is_some() {
            "message"
        } else {
            "headers"
        };
        format!(
            "{details}\n\n{recipients}\n\n{what}:\n{}",
            terminal_safe(text).trim_end_matches('\n')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_block(b"A: 1\n\nbody"), b"A: 1\n");
        assert_eq!(header_block(b"A: 1\r\n"), b"A: 1\r\n");
    }
}
