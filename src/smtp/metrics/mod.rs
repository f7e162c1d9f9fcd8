//! Counters for the Prometheus text endpoint: what `serve` did since it started.
//!
//! Every counter is a plain atomic in a fixed table, so the session hot path never takes a lock or allocates.
//! Labels come from closed sets, as types: the listener kind ([`ListenerKind`]), why a command or message was
//! refused ([`RejectReason`]) and why a connection was ([`Refusal`]); a caller cannot invent a label, so the
//! exposition never grows and never misspells one.
//!
//! [`render`](Metrics::render) writes the text exposition format 0.0.4 (HELP and TYPE for every family, every
//! known label pair present even at zero, so `rate()` works from the first scrape); [`serve_endpoint`] serves
//! it over a minimal HTTP/1.1 endpoint.

mod http;
mod render;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use http::serve_endpoint;

use crate::smtp::inbound::limits::Refusal;
use crate::smtp::settings::ListenerKind;

/// Why a command or message was refused: the `reason` label of `mailctl_smtp_messages_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Mail for a domain not hosted here, from a client that did not log in.
    Relay,
    /// No such mailbox, alias or catch-all.
    UnknownUser,
    /// The mailbox or domain is disabled.
    Disabled,
    /// The mailbox is over its quota.
    Quota,
    /// The message is larger than `max_message_size`.
    Size,
    /// A logged-in user sent as an address that is not theirs.
    SenderMismatch,
    /// The command needs AUTH (or TLS first).
    AuthRequired,
    /// The SPF check refused the sender.
    Spf,
    /// The DKIM check refused the message.
    Dkim,
    /// The sender domain's DMARC policy refused the message.
    Dmarc,
    /// The client is on a DNS blocklist.
    Dnsbl,
    /// The client's IP has no forward-confirmed PTR.
    Iprev,
    /// More RCPTs than `max_recipients`.
    TooManyRecipients,
    /// This server's own trouble (database, disk): `451`.
    Tempfail,
    /// A protocol violation: bad syntax or sequence, talking before the greeting, the error limit.
    Protocol,
    /// Bare CR or LF in the message data (SMTP smuggling).
    Smuggling,
    /// The client was too slow.
    Timeout,
    /// Too many failed AUTH attempts from the client's IP.
    AuthLockout,
    /// A logged-in user reached a sending limit (`mailctl limits`).
    SendLimit,
    /// Greylisting deferred a first-time sender.
    Greylisted,
    /// A milter refused the message, or could not be asked and its default action is `tempfail`.
    Milter,
}

impl RejectReason {
    /// Every reason, in exposition order.
    pub const ALL: [RejectReason; 21] = [
        RejectReason::Relay,
        RejectReason::UnknownUser,
        RejectReason::Disabled,
        RejectReason::Quota,
        RejectReason::Size,
        RejectReason::SenderMismatch,
        RejectReason::AuthRequired,
        RejectReason::Spf,
        RejectReason::Dkim,
        RejectReason::Dmarc,
        RejectReason::Dnsbl,
        RejectReason::Iprev,
        RejectReason::TooManyRecipients,
        RejectReason::Tempfail,
        RejectReason::Protocol,
        RejectReason::Smuggling,
        RejectReason::Timeout,
        RejectReason::AuthLockout,
        RejectReason::SendLimit,
        RejectReason::Greylisted,
        RejectReason::Milter,
    ];

    /// The label value, also used in logs.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Relay => "relay",
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::Disabled => "disabled",
            RejectReason::Quota => "quota",
            RejectReason::Size => "size",
            RejectReason::SenderMismatch => "sender_mismatch",
            RejectReason::AuthRequired => "auth_required",
            RejectReason::Spf => "spf",
            RejectReason::Dkim => "dkim",
            RejectReason::Dmarc => "dmarc",
            RejectReason::Dnsbl => "dnsbl",
            RejectReason::Iprev => "iprev",
            RejectReason::TooManyRecipients => "too_many_recipients",
            RejectReason::Tempfail => "tempfail",
            RejectReason::Protocol => "protocol",
            RejectReason::Smuggling => "smuggling",
            RejectReason::Timeout => "timeout",
            RejectReason::AuthLockout => "auth_lockout",
            RejectReason::SendLimit => "send_limit",
            RejectReason::Greylisted => "greylisted",
            RejectReason::Milter => "milter",
        }
    }
}

impl std::fmt::Display for RejectReason {
    /// The label.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why outbound delivery could not use its relay host: the `reason` label of
/// `mailctl_outbound_relay_failures_total`. Each needs the admin; the mail stays queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFailure {
    /// The relay refused the login (or offers no usable AUTH mechanism).
    Auth,
    /// TLS with the relay failed (not offered, a handshake error, a certificate that does not verify).
    Tls,
    /// The relay refused the envelope because of who we are: authentication required, relay access denied,
    /// a sender the login may not use (`530`, `5.7.x` to MAIL FROM or RCPT TO).
    Refused,
}

impl RelayFailure {
    /// Every failure, in exposition order.
    pub const ALL: [RelayFailure; 3] =
        [RelayFailure::Auth, RelayFailure::Tls, RelayFailure::Refused];

    /// The label value, also used in logs.
    pub fn label(self) -> &'static str {
        match self {
            RelayFailure::Auth => "auth",
            RelayFailure::Tls => "tls",
            RelayFailure::Refused => "refused",
        }
    }
}

/// What became of a report that arrived by mail: the `result` label of `mailctl_reports_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportResult {
    /// Stored.
    Stored,
    /// Stored before: unchanged.
    Duplicate,
    /// About a domain not hosted here: ignored.
    Foreign,
    /// Broken or not storable.
    Rejected,
}

impl ReportResult {
    /// Every result, in exposition order.
    pub const ALL: [ReportResult; 4] = [
        ReportResult::Stored,
        ReportResult::Duplicate,
        ReportResult::Foreign,
        ReportResult::Rejected,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ReportResult::Stored => "stored",
            ReportResult::Duplicate => "duplicate",
            ReportResult::Foreign => "foreign",
            ReportResult::Rejected => "rejected",
        }
    }
}

/// What became of a report this server built: the `result` label of `mailctl_reports_sent_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentResult {
    /// Queued for delivery.
    Queued,
    /// No destination takes it (none authorized, all too small): recorded, not sent.
    Unsendable,
    /// The queue did not take it.
    Failed,
}

impl SentResult {
    /// Every result, in exposition order.
    pub const ALL: [SentResult; 3] = [
        SentResult::Queued,
        SentResult::Unsendable,
        SentResult::Failed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            SentResult::Queued => "queued",
            SentResult::Unsendable => "unsendable",
            SentResult::Failed => "failed",
        }
    }
}

/// The `kind` labels of `mailctl_reports_received_total` and `mailctl_reports_sent_total`.
pub const REPORT_KINDS: [&str; 2] = ["dmarc", "tls"];

/// Upper bounds (seconds) of the `mailctl_smtp_delivery_seconds` buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Process-wide counters, shared by every session (behind an `Arc`).
#[derive(Debug, Default)]
pub struct Metrics {
    connections: [AtomicU64; 3],
    active: [AtomicI64; 3],
    refused: [AtomicU64; Refusal::ALL.len()],
    accepted: [AtomicU64; 3],
    rejected: [AtomicU64; RejectReason::ALL.len()],
    auth_ok: AtomicU64,
    auth_failed: AtomicU64,
    relay_failures: [AtomicU64; RelayFailure::ALL.len()],
    reports: [AtomicU64; REPORT_KINDS.len() * ReportResult::ALL.len()],
    reports_sent: [AtomicU64; REPORT_KINDS.len() * SentResult::ALL.len()],
    report_events_dropped: AtomicU64,
    breaker_trips: AtomicU64,
    milter_failures: AtomicU64,
    latency: Histogram,
}

/// A fixed-bucket histogram: per-bucket (not cumulative) counts, the last slot for values above every bound.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        // Saturate rather than wrap: a wrapped sum would make rate() see a huge negative jump.
        let _ = self
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(nanos))
            });
    }
}

/// Index of a listener kind in the per-listener tables (same order as [`ListenerKind::ALL`]).
fn slot(kind: ListenerKind) -> usize {
    match kind {
        ListenerKind::Smtp => 0,
        ListenerKind::Submission => 1,
        ListenerKind::Submissions => 2,
    }
}

impl Metrics {
    /// A connection was accepted on `listener`.
    pub fn connection_opened(&self, listener: ListenerKind) {
        let i = slot(listener);
        self.connections[i].fetch_add(1, Ordering::Relaxed);
        self.active[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection on `listener` ended.
    pub fn connection_closed(&self, listener: ListenerKind) {
        self.active[slot(listener)].fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused before the banner.
    pub fn connection_refused(&self, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A message was accepted on `listener`; `latency` from the end of DATA to the 250.
    pub fn accepted(&self, listener: ListenerKind, latency: Duration) {
        self.accepted[slot(listener)].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency);
    }

    /// A command or message was refused, for `reason`.
    pub fn rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Outbound delivery could not use its relay host for `reason`.
    pub fn relay_failure(&self, reason: RelayFailure) {
        self.relay_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A report of `kind` (`dmarc` or `tls`; anything else counts as `dmarc`) arrived by mail, with `result`.
    pub fn report(&self, kind: &str, result: ReportResult) {
        let k = REPORT_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.reports[k * ReportResult::ALL.len() + result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A report of `kind` this server built ended with `result`.
    pub fn report_sent(&self, kind: &str, result: SentResult) {
        let k = REPORT_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.reports_sent[k * SentResult::ALL.len() + result as usize]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An event for the reports this server sends was dropped (the database too far behind).
    pub fn report_event_dropped(&self) {
        self.report_events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The sending breaker turned SMTP off for a mailbox.
    pub fn breaker_tripped(&self) {
        self.breaker_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// A milter could not be asked (down, too slow, or not speaking the protocol).
    pub fn milter_failed(&self) {
        self.milter_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// An AUTH attempt ended: `ok` true for success.
    pub fn auth(&self, ok: bool) {
        let counter = if ok { &self.auth_ok } else { &self.auth_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter.
    pub fn render(&self) -> String {
        render::render(self)
    }
}

#[cfg(test)]
mod tests;
