//! The delivery loop of `mailctl serve`: the queue manager that takes due entries off the outbound
//! queue, hands them to the SMTP client (or to local delivery), records the results and tells senders about
//! failures and delays.
//!
//! ## One pass
//! [`Manager::run`] claims up to `outbound.concurrency` due entries ([`Delivery::claim_due`], with a lease that a
//! long delivery renews). For each entry it reads the body, groups the due recipients by domain
//! (case-insensitively) and delivers every group concurrently: each recipient is first offered to
//! [`LocalDelivery`] (hosted here: delivered at once), the rest of the group goes to the [`Transport`] in one
//! transaction, within two limits: `concurrency` groups in flight in total and `per_domain` per destination
//! domain. Then, in the order the queue's delivery protocol demands:
//! 1. [`Delivery::record`] stores the results durably, before anything else (a temporary failure, such as the
//!    database being away, is retried every second for as long as the lease lasts: an unrecorded result means
//!    the recipients are delivered again);
//! 2. failures not yet notified get one DSN ([`crate::smtp::outbound::dsn::bounce`]), a message still pending after the
//!    warning age one delay warning; a DSN to a local sender is delivered locally, any other is queued with
//!    the null sender; then [`Delivery::note`] records it (a crash in between sends it twice, never zero times);
//! 3. [`Delivery::complete`] removes the entry or releases it until its next attempt.
//!
//! A failure of the queue itself (disk trouble) is logged; the claim is kept for a pause and then released,
//! so a broken entry is not retried in a tight loop.
//!
//! ## Waking and polling
//! [`Manager::wake`] (or a [`Waker`] handed to the SMTP session) makes the loop claim at once after an enqueue;
//! otherwise it looks every [`ManagerOptions::poll`] and right after any entry finishes.
//!
//! ## Shutdown
//! When the shutdown signal turns true the loop stops claiming and lets deliveries in flight finish for up to
//! [`ManagerOptions::shutdown_grace`]. Deliveries still running then are cut off: what finished is recorded,
//! the rest stays pending and the claim is released, so a restart or another node retries at once rather
//! than after the lease runs out.

mod limits;
mod notice;
mod process;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinError, JoinSet};

use super::{Backoff, Claimed, Delivery, Outcome, QueueError, QueueId, RecipientResult};
use crate::smtp::settings::OutboundSettings;
use crate::smtp::shutdown::Shutdown;
use limits::Limits;

/// The tracing target of every queue manager log line.
const TARGET: &str = "mailctl::queue";
/// How long, after the grace period, cut-off deliveries get to record what finished and release.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Sends one message to the recipients of one domain: the SMTP client ([`crate::smtp::outbound`]) in
/// production, a fake in tests. A trait so the manager can be built and tested without the network.
pub trait Transport: Send + Sync {
    /// Delivers `message` from `sender` (empty for the null sender) to `recipients`, all at `domain`
    /// (lowercase), in one transaction where possible; returns one result per recipient. Outcome texts
    /// should name the remote host (`mx1.b.test[127.0.0.2]: 550 5.1.1 ...`) so DSNs can show them.
    fn deliver_domain<'a>(
        &'a self,
        domain: &'a str,
        sender: &'a str,
        recipients: &'a [String],
        message: &'a [u8],
    ) -> BoxFuture<'a, Vec<RecipientResult>>;
}

/// Delivers to a mailbox hosted on this server: queued recipients that turn out to be local, and DSNs to
/// local senders. Implemented by the server; a trait so the queue does not depend on the mailbox store.
pub trait LocalDelivery: Send + Sync {
    /// Delivers message `id` from `sender` (empty for the null sender) to `recipient` if it is hosted here
    /// and returns what happened; `None` when the recipient is not hosted here (the message goes out by SMTP).
    fn deliver_local<'a>(
        &'a self,
        id: &'a QueueId,
        sender: &'a str,
        recipient: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Option<Outcome>>;
}

/// Hears which senders' recipients other servers refused as unknown (a permanent failure with enhanced
/// status 5.1.1): a stolen account mailing a bought address list has many. Implemented by the daemon (the
/// sending breaker, `crate::smtp::inbound::breaker`); a trait so the queue knows nothing of limits.
pub trait Refusals: Send + Sync {
    /// `unknown` recipients of a message from `sender` (never empty) were just refused as unknown.
    fn refused_unknown<'a>(&'a self, sender: &'a str, unknown: usize) -> BoxFuture<'a, ()>;
}

/// The time source of the manager: `Utc::now` in production, a settable clock in tests, so retry times,
/// leases and delay warnings can be checked without waiting.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Timing of the delivery loop; the defaults suit production, tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Lease taken on each claimed entry; renewed every third of it while deliveries run, so a node that
    /// dies hands its entries over after at most this long.
    pub lease: Duration,
    /// How often the queue is looked at when nobody wakes the loop.
    pub poll: Duration,
    /// How long deliveries in flight may take to finish at shutdown before they are cut off.
    pub shutdown_grace: Duration,
    /// How long an entry whose processing failed (queue I/O) stays claimed before it is released and
    /// retried, so a broken disk does not turn into a busy loop.
    pub error_pause: Duration,
}

impl Default for ManagerOptions {
    /// A 10-minute lease (a slow remote server can take several minutes per message), a 5-second poll, 30
    /// seconds of shutdown grace (what systemd waits by default is 90) and a 30-second error pause.
    fn default() -> Self {
        ManagerOptions {
            lease: Duration::from_secs(600),
            poll: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            error_pause: Duration::from_secs(30),
        }
    }
}

/// A handle that makes the delivery loop look at the queue at once; cheap to clone, for the SMTP session to
/// call after each enqueue.
#[derive(Debug, Clone)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// Asks the loop to claim due entries now (a wake while the loop is busy is kept, not lost).
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The outbound queue manager: see the module documentation. Build it with [`Manager::new`], take a
/// [`Manager::waker`] for the sessions, then spawn [`Manager::run`].
pub struct Manager {
    inner: Inner,
}

/// What every delivery task shares.
struct Inner {
    queue: Arc<dyn Delivery>,
    transport: Arc<dyn Transport>,
    local: Arc<dyn LocalDelivery>,
    hostname: String,
    backoff: Backoff,
    clock: Clock,
    options: ManagerOptions,
    notify: Arc<Notify>,
    limits: Limits,
    concurrency: usize,
    refusals: Option<Arc<dyn Refusals>>,
}

impl Manager {
    /// A manager delivering from `queue` through `transport` (remote) and `local` (hosted recipients and
    /// DSNs to local senders). `hostname` is this server's name (DSN `Reporting-MTA`); `settings` give the
    /// concurrency limits (0 counts as 1); `backoff` must be the queue's schedule (DSN retry-until dates).
    pub fn new(
        queue: Arc<dyn Delivery>,
        transport: Arc<dyn Transport>,
        local: Arc<dyn LocalDelivery>,
        hostname: String,
        settings: OutboundSettings,
        backoff: Backoff,
    ) -> Manager {
        let concurrency = settings.concurrency.max(1);
        Manager {
            inner: Inner {
                queue,
                transport,
                local,
                hostname,
                backoff,
                clock: Arc::new(Utc::now),
                options: ManagerOptions::default(),
                notify: Arc::new(Notify::new()),
                limits: Limits::new(concurrency, settings.per_domain.max(1)),
                concurrency,
                refusals: None,
            },
        }
    }

    /// Replaces the timing options (tests use short polls and grace periods).
    pub fn with_options(mut self, options: ManagerOptions) -> Manager {
        self.inner.options = options;
        self
    }

    /// Tells `refusals` about recipients refused as unknown.
    pub fn with_refusals(mut self, refusals: Arc<dyn Refusals>) -> Manager {
        self.inner.refusals = Some(refusals);
        self
    }

    /// Replaces the clock (tests move time to reach retries and delay warnings).
    pub fn with_clock(mut self, clock: Clock) -> Manager {
        self.inner.clock = clock;
        self
    }

    /// A handle for the SMTP sessions to wake the loop after they enqueue.
    pub fn waker(&self) -> Waker {
        Waker(self.inner.notify.clone())
    }

    /// Makes the loop claim due entries at once.
    pub fn wake(&self) {
        self.inner.notify.notify_one();
    }

    /// Runs the delivery loop until the daemon stops, then finishes or cuts off the deliveries in flight as
    /// the module documentation describes.
    pub async fn run(self, mut shutdown: Shutdown) {
        let inner = Arc::new(self.inner);
        let (cancel, cancelled) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut claims: HashMap<Id, Claimed> = HashMap::new();
        tracing::info!(target: TARGET, concurrency = inner.concurrency,
            per_domain = inner.limits.per_domain(), "delivery loop started");
        while !shutdown.is_shutdown() {
            let room = inner.concurrency.saturating_sub(tasks.len());
            if room > 0 {
                match inner.claim(room).await {
                    Ok(claimed) => {
                        for c in claimed {
                            let task =
                                process::deliver_entry(inner.clone(), c.clone(), cancelled.clone());
                            claims.insert(tasks.spawn(task).id(), c);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: TARGET, error = %e, "cannot claim queued mail")
                    }
                }
            }
            tokio::select! {
                () = shutdown.recv() => break,
                () = inner.notify.notified() => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    finished(done, &mut claims);
                    while let Some(done) = tasks.try_join_next_with_id() {
                        finished(done, &mut claims);
                    }
                }
                () = tokio::time::sleep(inner.options.poll) => {}
            }
        }
        stop(&inner, tasks, claims, cancel).await;
    }
}

impl Inner {
    /// The current time from the clock.
    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Claims up to `max` due entries.
    async fn claim(&self, max: usize) -> Result<Vec<Claimed>, process::StepError> {
        let (now, lease) = (self.now(), self.options.lease);
        self.blocking(move |q| q.claim_due(now, lease, max)).await
    }

    /// Runs a blocking queue operation off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Delivery) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, process::StepError> {
        let queue = self.queue.clone();
        tokio::task::spawn_blocking(move || op(queue.as_ref()))
            .await?
            .map_err(process::StepError::Queue)
    }
}

/// Forgets the claim of a finished entry task; a panic is logged and its lease left to run out, so a bug
/// that panics on some entry does not spin on it.
fn finished(done: Result<(Id, ()), JoinError>, claims: &mut HashMap<Id, Claimed>) {
    match done {
        Ok((id, ())) => {
            claims.remove(&id);
        }
        Err(e) => {
            if let Some(c) = claims.remove(&e.id()) {
                tracing::error!(target: TARGET, queue_id = %c.id(), error = %e,
                    "delivery task failed; the entry is retried when its lease runs out");
            }
        }
    }
}

/// Shutdown: waits for deliveries in flight, then cuts them off (they record what finished and release),
/// and as a last resort aborts them and releases their claims.
async fn stop(
    inner: &Arc<Inner>,
    mut tasks: JoinSet<()>,
    mut claims: HashMap<Id, Claimed>,
    cancel: watch::Sender<bool>,
) {
    if !tasks.is_empty() {
        tracing::info!(target: TARGET, in_flight = tasks.len(),
            "stopping: waiting for deliveries in flight");
    }
    drain(&mut tasks, &mut claims, inner.options.shutdown_grace).await;
    if !tasks.is_empty() {
        tracing::warn!(target: TARGET, in_flight = tasks.len(),
            "stopping: cutting off deliveries still running; they are retried later");
        let _ = cancel.send(true);
        drain(&mut tasks, &mut claims, CANCEL_GRACE).await;
    }
    if !tasks.is_empty() {
        tasks.abort_all();
        while let Some(done) = tasks.join_next_with_id().await {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            let Some(c) = claims.remove(&id) else {
                continue;
            };
            let queue_id = c.id().clone();
            if let Err(e) = inner.blocking(move |q| q.release(&c)).await {
                tracing::warn!(target: TARGET, queue_id = %queue_id, error = %e,
                    "cannot release claim; it is taken over when its lease runs out");
            }
        }
    }
    tracing::info!(target: TARGET, "delivery loop stopped");
}

/// Collects finished tasks until none is left or `limit` has passed.
async fn drain(tasks: &mut JoinSet<()>, claims: &mut HashMap<Id, Claimed>, limit: Duration) {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next_with_id() => match done {
                Some(done) => finished(done, claims),
                None => return,
            },
            () = &mut deadline => return,
        }
    }
}
