//! The Prometheus text exposition format 0.0.4 of [`Metrics`]: one HELP and one TYPE line per family, then
//! one sample per label value; every known label value is present, at zero when nothing happened yet.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Metrics, REPORT_KINDS, RejectReason, RelayFailure, ReportResult, SentResult};
use crate::smtp::inbound::limits::Refusal;
use crate::smtp::settings::ListenerKind;

/// The `le` label of each bucket bound, written the way Prometheus client libraries write them.
const BUCKET_LABELS: [&str; 13] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10",
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// One sample per listener kind, labelled `listener`.
fn per_listener(out: &mut String, name: &str, value: impl Fn(usize) -> String) {
    for (i, kind) in ListenerKind::ALL.into_iter().enumerate() {
        let _ = writeln!(out, "{name}{{listener=\"{}\"}} {}", kind.name(), value(i));
    }
}

/// One sample per reason label, in order, labelled `reason`.
fn per_reason(
    out: &mut String,
    name: &str,
    labels: impl Iterator<Item = &'static str>,
    counters: &[AtomicU64],
) {
    for (reason, counter) in labels.zip(counters) {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", load(counter));
    }
}

/// One line per report kind and result, `counters` kind-major (as [`REPORT_KINDS`] by `results`).
fn per_kind_and_result(out: &mut String, name: &str, results: &[&str], counters: &[AtomicU64]) {
    for (k, kind) in REPORT_KINDS.iter().enumerate() {
        for (r, result) in results.iter().enumerate() {
            let value = load(&counters[k * results.len() + r]);
            let _ = writeln!(out, "{name}{{kind=\"{kind}\",result=\"{result}\"}} {value}");
        }
    }
}

/// Renders every family of `m`.
pub(super) fn render(m: &Metrics) -> String {
    let mut out = String::with_capacity(4096);

    let name = "mailctl_smtp_connections_total";
    family(
        &mut out,
        name,
        "counter",
        "SMTP connections accepted, by listener.",
    );
    per_listener(&mut out, name, |i| load(&m.connections[i]).to_string());

    let name = "mailctl_smtp_connections_active";
    family(
        &mut out,
        name,
        "gauge",
        "SMTP connections open now, by listener.",
    );
    per_listener(&mut out, name, |i| {
        m.active[i].load(Ordering::Relaxed).max(0).to_string()
    });

    let name = "mailctl_smtp_connections_refused_total";
    let help = "SMTP connections closed before the banner because a connection limit was reached.";
    family(&mut out, name, "counter", help);
    let labels = Refusal::ALL.into_iter().map(Refusal::label);
    per_reason(&mut out, name, labels, &m.refused);

    let name = "mailctl_smtp_messages_accepted_total";
    let help = "Messages accepted (250 after DATA), by listener.";
    family(&mut out, name, "counter", help);
    per_listener(&mut out, name, |i| load(&m.accepted[i]).to_string());

    let name = "mailctl_smtp_messages_rejected_total";
    let help = "Commands or messages refused with a 4xx or 5xx reply, by reason.";
    family(&mut out, name, "counter", help);
    let labels = RejectReason::ALL.into_iter().map(RejectReason::label);
    per_reason(&mut out, name, labels, &m.rejected);

    let name = "mailctl_smtp_auth_total";
    family(&mut out, name, "counter", "SMTP AUTH attempts, by result.");
    let _ = writeln!(out, "{name}{{result=\"success\"}} {}", load(&m.auth_ok));
    let _ = writeln!(out, "{name}{{result=\"failure\"}} {}", load(&m.auth_failed));

    let name = "mailctl_outbound_relay_failures_total";
    let help = "Deliveries through the relay host that failed on TLS, the login or the relay refusing us: the admin must act, the mail \
                stays queued.";
    family(&mut out, name, "counter", help);
    let labels = RelayFailure::ALL.into_iter().map(RelayFailure::label);
    per_reason(&mut out, name, labels, &m.relay_failures);

    let name = "mailctl_reports_received_total";
    let help = "DMARC aggregate and TLS reports that arrived by mail at the report addresses, by kind and result.";
    family(&mut out, name, "counter", help);
    let results = ReportResult::ALL.map(ReportResult::label);
    per_kind_and_result(&mut out, name, &results, &m.reports);

    let name = "mailctl_reports_sent_total";
    let help =
        "DMARC aggregate and TLS reports this server built for other domains, by kind and result.";
    family(&mut out, name, "counter", help);
    let results = SentResult::ALL.map(SentResult::label);
    per_kind_and_result(&mut out, name, &results, &m.reports_sent);

    let name = "mailctl_report_events_dropped_total";
    let help = "What serve saw for the reports it sends, dropped because the database fell behind.";
    family(&mut out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", load(&m.report_events_dropped));

    let name = "mailctl_smtp_breaker_trips_total";
    let help = "Mailboxes whose SMTP the sending breaker turned off (attempts at ten times the hourly limit, or too \
                many recipients refused as unknown).";
    family(&mut out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", load(&m.breaker_trips));

    let name = "mailctl_milter_failures_total";
    let help = "Conversations with a milter that failed (down, too slow, or not speaking the protocol): each \
                message got the milter's default_action.";
    family(&mut out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", load(&m.milter_failures));

    let name = "mailctl_smtp_delivery_seconds";
    let help = "Seconds from the end of DATA to the 250 reply (delivery to stable storage).";
    family(&mut out, name, "histogram", help);
    let mut cumulative = 0u64;
    for (label, counter) in BUCKET_LABELS.iter().zip(&m.latency.buckets) {
        cumulative += load(counter);
        let _ = writeln!(out, "{name}_bucket{{le=\"{label}\"}} {cumulative}");
    }
    // The count is the +Inf bucket by definition, so both come from the same reads.
    cumulative += m.latency.buckets.last().map(load).unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let sum = load(&m.latency.sum_nanos) as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
    out
}

#[cfg(test)]
mod tests {
    use super::super::LATENCY_BUCKETS;
    use super::*;

    #[test]
    fn bucket_labels_match_the_bounds() {
        assert_eq!(BUCKET_LABELS.len(), LATENCY_BUCKETS.len());
        for (label, bound) in BUCKET_LABELS.iter().zip(LATENCY_BUCKETS) {
            assert_eq!(label.parse::<f64>().unwrap(), bound);
        }
    }
}
