//! Counters for the Prometheus text endpoint. STUB: replaced by the metrics helper.

use std::time::Duration;

use crate::smtp::settings::ListenerKind;

/// Process-wide counters, shared by every session.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// A connection was accepted on `listener`.
    pub fn connection_opened(&self, _listener: ListenerKind) {}
    /// A connection on `listener` ended.
    pub fn connection_closed(&self, _listener: ListenerKind) {}
    /// A connection was refused before the banner (`reason`: `max_connections`, `max_connections_per_ip`).
    pub fn connection_refused(&self, _reason: &'static str) {}
    /// A message was accepted on `listener`; `latency` from the end of DATA to the 250.
    pub fn accepted(&self, _listener: ListenerKind, _latency: Duration) {}
    /// A command or message was refused; `reason` is one of the fixed labels listed in the module docs.
    pub fn rejected(&self, _reason: &'static str) {}
    /// An AUTH attempt ended: `ok` true for success.
    pub fn auth(&self, _ok: bool) {}
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        String::new()
    }
}
