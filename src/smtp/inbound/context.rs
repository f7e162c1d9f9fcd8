//! What every inbound session shares: the settings, the database, the checks, local delivery, the queue, the
//! limits and the stop signal. Built once by the daemon (`crate::smtp::daemon`) and handed to each session as
//! an `Arc<Context>`; nothing here knows about listeners or sessions.

use std::sync::{Arc, OnceLock};

use super::checks::Checks;
use super::limits::{AuthThrottle, Connections};
use crate::reports::send::recorder::Recorder;
use crate::smtp::deliver::Deliverer;
use crate::smtp::metrics::Metrics;
use crate::smtp::queue::Queue;
use crate::smtp::queue::manager::Waker;
use crate::smtp::settings::Settings;
use crate::smtp::shutdown::Shutdown;
use crate::store::Store;
use crate::tls::server::Tls;

/// Everything the sessions share.
pub struct Context {
    /// Validated settings.
    pub settings: Settings,
    /// The provisioning database (recipients, logins).
    pub store: Store,
    /// Inbound checks (MX listener).
    pub checks: Checks,
    /// Local delivery.
    pub deliverer: Deliverer,
    /// Counters for the metrics endpoint.
    pub metrics: Arc<Metrics>,
    /// TLS, when configured.
    pub tls: Option<Tls>,
    /// Open connections, total and per IP.
    pub connections: Arc<Connections>,
    /// AUTH failures per IP.
    pub auth_throttle: AuthThrottle,
    /// The daemon's stop signal.
    pub shutdown: Shutdown,
    /// The outbound queue (mail for other domains).
    pub queue: Arc<dyn Queue>,
    /// Wakes the queue manager after an enqueue (set once the manager exists).
    pub queue_waker: OnceLock<Waker>,
    /// Records what the reports this server sends will say (DMARC results of received mail).
    pub reports: Arc<Recorder>,
    /// What logged-in users send, for their sending limits.
    pub send_counter: Arc<super::send_counter::SendCounter>,
    /// The content filters (`[[server.milters]]`).
    pub milters: super::milter::Milters,
    /// Which mailboxes are on vacation (read every few seconds, for the auto-replies).
    pub away: super::vacation::Away,
    /// The ACME challenges of an open order (`[server.acme]`), answered on the HTTPS listener.
    pub challenges: Arc<crate::acme::challenge::Challenges>,
}

impl Context {
    /// Asks the queue manager to look at the queue now (after a session queued a message).
    pub fn wake_queue(&self) {
        if let Some(w) = self.queue_waker.get() {
            w.wake();
        }
    }

    /// Queues a message this server writes itself (a vacation reply, a postmaster notice) from the null
    /// sender `<>` to `recipient`, off the async runtime, and wakes the queue manager; the error says why not.
    pub async fn queue_generated(
        &self,
        recipient: String,
        body: Vec<u8>,
        dkim: Option<String>,
    ) -> Result<(), String> {
        let envelope = crate::smtp::queue::Envelope {
            sender: String::new(),
            recipients: vec![recipient],
            dkim,
        };
        let queue = self.queue.clone();
        tokio::task::spawn_blocking(move || queue.enqueue(&envelope, &body, chrono::Utc::now()))
            .await
            .map_err(|e| format!("queue task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        self.wake_queue();
        Ok(())
    }
}
