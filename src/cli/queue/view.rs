//! How queued messages are shown: the `queue list` table and rows, `queue stats`, and the formatting shared
//! with `queue show` (in `show.rs`).
//! Tables show local times and short human sizes and ages; JSON has RFC 3339 UTC times, exact numbers and
//! full error texts (field names are stable).

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;

use crate::output::{Render, key_values, table};
use crate::smtp::queue::{Lease, Queued, Stats};

/// Longest last error shown in the list table; JSON and `queue show` have the full text.
const TABLE_ERROR: usize = 48;
/// Pending recipients listed by name in the table before the rest is counted.
const TABLE_RECIPIENTS: usize = 2;

/// A time as RFC 3339 UTC, for JSON.
pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A time in local time, for tables.
pub(super) fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// An age in its largest unit: `42s`, `5m`, `2h`, `3d`.
pub fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A size for people: `812 B`, `4.0 KiB`, `25.0 MiB`.
pub fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    match bytes {
        b if b < KIB => format!("{b} B"),
        b if b < KIB * KIB => format!("{:.1} KiB", b as f64 / KIB as f64),
        b => format!("{:.1} MiB", b as f64 / (KIB * KIB) as f64),
    }
}

/// The envelope sender as people read it: `<>` for the null sender.
pub(super) fn sender(s: &str) -> String {
    if s.is_empty() {
        "<>".into()
    } else {
        terminal_safe(s)
    }
}

/// Text from outside (addresses, remote replies, message headers) made safe to print on a terminal: line
/// breaks become `\n`, other control characters (escape sequences) are shown escaped.
pub fn terminal_safe(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || c == '\t' || !c.is_control() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// `text` cut to `max` characters, marked with `...`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

/// Where an entry stands: `active` (a process holds a live lease and is delivering it), `held` (by an
/// admin), `deferred` (a pending recipient was tried already) or `new` (not tried yet).
pub fn state(q: &Queued, now: DateTime<Utc>) -> &'static str {
    let e = &q.entry;
    if q.lease.as_ref().is_some_and(|l| l.is_live(now)) {
        "active"
    } else if e.hold {
        "held"
    } else if e.recipients.iter().any(|r| r.attempts > 0) {
        "deferred"
    } else {
        "new"
    }
}

/// A delivery lease as shown.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    /// The queue handle holding it.
    holder: String,
    /// The delivering process.
    pid: u32,
    /// When it runs out unless renewed (RFC 3339 UTC).
    expires: String,
}

impl LeaseView {
    /// The view of a lease.
    pub(super) fn new(lease: &Lease) -> LeaseView {
        LeaseView {
            holder: lease.holder.clone(),
            pid: lease.pid,
            expires: rfc3339(lease.expires),
        }
    }

    /// The lease in one line, for `queue show`.
    pub(super) fn describe(&self) -> String {
        format!(
            "process {} ({}) until {}",
            self.pid,
            terminal_safe(&self.holder),
            self.expires
        )
    }
}

/// One line of `queue list` (JSON field names are stable).
#[derive(Debug, Serialize)]
pub struct Row {
    id: String,
    /// Empty for the null sender.
    sender: String,
    /// The recipients still pending.
    recipients: Vec<String>,
    /// Every recipient of the message, whatever its status.
    recipients_total: usize,
    size: u64,
    created: String,
    age_secs: i64,
    attempts: u32,
    next_attempt: Option<String>,
    last_error: Option<String>,
    state: &'static str,
    held: bool,
    lease: Option<LeaseView>,
    #[serde(skip)]
    next_attempt_time: Option<DateTime<Utc>>,
}

impl Row {
    /// The row of one entry at `now`.
    pub fn new(q: &Queued, now: DateTime<Utc>) -> Row {
        let e = &q.entry;
        let next = e.next_attempt();
        Row {
            id: e.id.to_string(),
            sender: e.sender.clone(),
            recipients: e.pending().map(|r| r.address.clone()).collect(),
            recipients_total: e.recipients.len(),
            size: e.size,
            created: rfc3339(e.created),
            age_secs: e.age(now).num_seconds(),
            attempts: e.attempts(),
            next_attempt: next.map(rfc3339),
            last_error: e.last_error().map(str::to_string),
            state: state(q, now),
            held: e.hold,
            lease: q.lease.as_ref().map(LeaseView::new),
            next_attempt_time: next,
        }
    }

    fn cells(&self) -> Vec<String> {
        let recipients = match self.recipients.len() {
            0 => "(none pending)".to_string(),
            n if n <= TABLE_RECIPIENTS => terminal_safe(&self.recipients.join(", ")),
            n => format!(
                "{} (+{} more)",
                terminal_safe(&self.recipients[..TABLE_RECIPIENTS].join(", ")),
                n - TABLE_RECIPIENTS
            ),
        };
        vec![
            self.id.clone(),
            sender(&self.sender),
            recipients,
            size(self.size),
            age(self.age_secs),
            self.attempts.to_string(),
            self.next_attempt_time.map_or_else(|| "-".into(), local),
            self.last_error
                .as_deref()
                .map_or_else(|| "-".into(), |e| truncate(&terminal_safe(e), TABLE_ERROR)),
            self.state.to_string(),
        ]
    }
}

/// The whole `queue list`: a table, or a JSON array (empty when the queue is).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct List(pub Vec<Row>);

impl Render for List {
    fn render(&self) -> String {
        table(
            &[
                "ID",
                "SENDER",
                "RECIPIENTS",
                "SIZE",
                "AGE",
                "ATTEMPTS",
                "NEXT ATTEMPT",
                "LAST ERROR",
                "STATE",
            ],
            self.0.iter().map(Row::cells),
        )
    }
}

/// `queue stats` (the JSON object has exactly the [`Stats`] fields).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct StatsView(pub Stats);

impl Render for StatsView {
    fn render(&self) -> String {
        let s = &self.0;
        key_values(vec![
            ("messages", s.entries.to_string()),
            ("new", s.new.to_string()),
            ("deferred", s.deferred.to_string()),
            ("active", s.active.to_string()),
            ("held", s.held.to_string()),
            ("recipients pending", s.recipients_pending.to_string()),
            ("recipients delivered", s.recipients_delivered.to_string()),
            ("recipients failed", s.recipients_failed.to_string()),
            ("size", format!("{} ({} bytes)", size(s.bytes), s.bytes)),
            ("oldest", s.oldest_age_secs.map_or_else(|| "-".into(), age)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(300), "5m");
        assert_eq!(age(7300), "2h");
        assert_eq!(age(3 * 86_400 + 5), "3d");
        assert_eq!(size(812), "812 B");
        assert_eq!(size(4096), "4.0 KiB");
        assert_eq!(size(25 * 1024 * 1024), "25.0 MiB");
        assert_eq!(terminal_safe("a\r\nb\x1b[31m"), "a\nb\\u{1b}[31m");
        assert_eq!(truncate("abcdefgh", 6), "abc...");
    }
}
