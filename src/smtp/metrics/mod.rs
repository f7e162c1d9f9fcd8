//! Counters for the Prometheus text endpoint: what `serve` did since it started.
//!
//! Every counter is a plain atomic in a fixed table, so the session hot path never takes a lock or allocates.
//! Labels come from small fixed sets: the listener kind, and the reason labels below; a reason outside the
//! table is counted as `other`, so a typo in a caller never grows the exposition.
//!
//! Reasons of [`Metrics::rejected`]: `relay`, `unknown_user`, `disabled`, `quota`, `size`, `sender_mismatch`,
//! `auth_required`, `spf`, `dkim`, `dmarc`, `dnsbl`, `iprev`, `too_many_recipients`, `tempfail`, `protocol`,
//! `smuggling`, `timeout`. Reasons of [`Metrics::connection_refused`]: `max_connections`,
//! `max_connections_per_ip`.
//!
//! [`render`](Metrics::render) writes the text exposition format 0.0.4 (HELP and TYPE for every family, every
//! known label pair present even at zero, so `rate()` works from the first scrape); [`serve_endpoint`] serves
//! it over a minimal HTTP/1.1 endpoint.

mod http;
mod render;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use http::serve_endpoint;

use crate::smtp::settings::ListenerKind;

/// The reason labels of `mailctl_smtp_messages_rejected_total`, in exposition order (`other` follows).
pub const REJECT_REASONS: [&str; 18] = [
    "relay",
    "unknown_user",
    "disabled",
    "quota",
    "size",
    "sender_mismatch",
    "auth_required",
    "spf",
    "dkim",
    "dmarc",
    "dnsbl",
    "iprev",
    "too_many_recipients",
    "tempfail",
    "protocol",
    "smuggling",
    "timeout",
    "auth_lockout",
];

/// The reason labels of `mailctl_smtp_connections_refused_total`, in exposition order (`other` follows).
pub const REFUSE_REASONS: [&str; 2] = ["max_connections", "max_connections_per_ip"];

/// Upper bounds (seconds) of the `mailctl_smtp_delivery_seconds` buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label `other` for reasons outside the fixed tables.
const OTHER: &str = "other";

/// Process-wide counters, shared by every session (behind an `Arc`).
#[derive(Debug, Default)]
pub struct Metrics {
    connections: [AtomicU64; 3],
    active: [AtomicI64; 3],
    refused: [AtomicU64; REFUSE_REASONS.len() + 1],
    accepted: [AtomicU64; 3],
    rejected: [AtomicU64; REJECT_REASONS.len() + 1],
    auth_ok: AtomicU64,
    auth_failed: AtomicU64,
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

/// Index of `reason` in `table`, or the trailing `other` slot.
fn reason_slot(table: &[&str], reason: &str) -> usize {
    table
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(table.len())
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

    /// A connection was refused before the banner (`reason`: `max_connections`, `max_connections_per_ip`).
    pub fn connection_refused(&self, reason: &'static str) {
        self.refused[reason_slot(&REFUSE_REASONS, reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// A message was accepted on `listener`; `latency` from the end of DATA to the 250.
    pub fn accepted(&self, listener: ListenerKind, latency: Duration) {
        self.accepted[slot(listener)].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency);
    }

    /// A command or message was refused; `reason` is one of the fixed labels listed in the module docs.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected[reason_slot(&REJECT_REASONS, reason)].fetch_add(1, Ordering::Relaxed);
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
