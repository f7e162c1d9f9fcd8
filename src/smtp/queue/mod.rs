//! The outbound queue of `mailctl serve` (issue 6): messages for remote recipients wait here, durably, until
//! every recipient is delivered, failed for good or expired, and the sender has been told about failures.
//!
//! ## Pieces
//! - [`Queue`]: the operations every backend offers (enqueue; claim, record, note, release, complete for
//!   delivery; list, show, flush, hold, release, delete, stats for `mailctl queue`). The spool implements it
//!   now; the database backend (`queue = "database"`) implements the same trait later, so `serve` and the CLI
//!   hold an `Arc<dyn Queue>` and never know which one they have.
//! - [`Entry`]: the record of one message, backend-independent, with the rules that turn delivery results into
//!   the next state ([`Entry::apply`]: forward only, so a delivered recipient is never pending again).
//! - [`Backoff`]: the retry schedule (5m doubling to 4h, give up after 5 days, delay warning after 4h).
//! - [`Spool`]: the on-disk spool directory (layout, lease design and crash behaviour in its module docs).
//!
//! ## Delivery protocol
//! A delivery loop calls [`Queue::claim_due`], which hands out each due entry to one caller at a time, with a
//! lease (held across processes; an expired lease, or in the spool one whose process died, is taken over).
//! For each claim it tries [`Entry::due_recipients`], then [`Queue::record`]s the results: that write is
//! durable before anything else happens to the entry. For the recipients [`Recorded::failed`] names it queues
//! a DSN and [`Queue::note`]s it; likewise a delay warning when [`Recorded::delay_warning_due`]. Finally
//! [`Queue::complete`] removes the entry if nothing is left, or releases it until its next attempt. A crash
//! anywhere in between leaves the entry due again (its lease dies with its holder), so nothing accepted is
//! lost; the price is at-least-once delivery: a crash between a remote `250` and `record` sends once more.
//!
//! ## Blocking
//! Every method does blocking file I/O with fsyncs (milliseconds); async callers use
//! `tokio::task::spawn_blocking`. Clock values are parameters so tests control time.

mod backoff;
pub mod database;
mod entry;
mod error;
mod id;
pub mod manager;
mod open;
pub mod spool;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use backoff::Backoff;
pub use database::{DatabaseOptions, DatabaseQueue};
pub use entry::{
    Entry, Envelope, Notice, Outcome, RECORD_VERSION, Recipient, RecipientResult, Recorded, Status,
};
pub use error::QueueError;
pub use id::QueueId;
pub use manager::{Clock, LocalDelivery, Manager, ManagerOptions, Transport, Waker};
pub use open::open;
pub use spool::{Spool, SpoolOptions, Swept};

/// A delivery lease: who may deliver an entry, until when. Whoever holds an unexpired lease is the only one
/// that delivers the entry; an expired lease (or, in the spool, one whose holder process is gone) may be taken
/// over by anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The queue handle that holds it (random per open spool; per node for a database queue).
    pub holder: String,
    /// Which claim of that holder, so a handle that re-claims after its own lease ran out is not confused
    /// with its earlier, stale claim.
    pub claim: u64,
    /// The holder's process id, for `queue list` and the "busy" error.
    pub pid: u32,
    /// When the lease runs out unless renewed.
    #[serde(with = "entry::rfc3339")]
    pub expires: DateTime<Utc>,
}

impl Lease {
    /// True while the lease has not run out at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires > now
    }
}

/// An entry claimed for delivery by [`Queue::claim_due`]: a snapshot of its record and the lease that makes
/// the caller its only deliverer. The caller tries [`Entry::due_recipients`], records the results, queues
/// any DSN or delay warning and notes it, then calls [`Queue::complete`] (or [`Queue::release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The record as it was when claimed.
    pub entry: Entry,
    /// The caller's lease.
    pub lease: Lease,
}

impl Claimed {
    /// The queue id of the claimed entry.
    pub fn id(&self) -> &QueueId {
        &self.entry.id
    }
}

/// An entry as `mailctl queue list` and `show` see it: its record, and the lease if one is held now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The stored record.
    pub entry: Entry,
    /// The current lease, when a process is delivering the entry.
    pub lease: Option<Lease>,
}

/// What [`Queue::complete`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Nothing was left to do: the entry (as last stored) was removed from the queue.
    Removed(Entry),
    /// Recipients are still pending or failures un-notified: the entry stays and the lease was released.
    Kept(Entry),
}

/// Counts for `mailctl queue stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Queued messages.
    pub entries: usize,
    /// Messages held by an admin.
    pub held: usize,
    /// Messages being delivered right now (live lease).
    pub active: usize,
    /// Messages with at least one pending recipient that was already tried (deferred).
    pub deferred: usize,
    /// Messages not tried yet.
    pub new: usize,
    /// Recipients still pending.
    pub recipients_pending: usize,
    /// Recipients delivered (of messages still queued).
    pub recipients_delivered: usize,
    /// Recipients failed or expired (of messages still queued, DSN pending).
    pub recipients_failed: usize,
    /// Sum of the message sizes.
    pub bytes: u64,
    /// Age of the oldest message, in seconds.
    pub oldest_age_secs: Option<i64>,
}

impl Stats {
    /// Counts a listing at `now`; shared by every backend.
    pub fn count(queued: &[Queued], now: DateTime<Utc>) -> Stats {
        let mut stats = Stats::default();
        for q in queued {
            let e = &q.entry;
            stats.entries += 1;
            stats.bytes += e.size;
            stats.held += usize::from(e.hold);
            stats.active += usize::from(q.lease.as_ref().is_some_and(|l| l.is_live(now)));
            if e.pending().next().is_some() {
                if e.pending().any(|r| r.attempts > 0) {
                    stats.deferred += 1;
                } else {
                    stats.new += 1;
                }
            }
            for r in &e.recipients {
                match r.status {
                    Status::Pending => stats.recipients_pending += 1,
                    Status::Delivered => stats.recipients_delivered += 1,
                    Status::Failed | Status::Expired => stats.recipients_failed += 1,
                }
            }
            let age = e.age(now).num_seconds();
            stats.oldest_age_secs = Some(stats.oldest_age_secs.map_or(age, |a| a.max(age)));
        }
        stats
    }
}

/// The operations every queue backend offers: the spool directory ([`Spool`]) now, the database later, so
/// `serve` and `mailctl queue` work against either through `Arc<dyn Queue>`.
///
/// All methods block (file or database I/O with fsyncs); async callers run them in
/// `tokio::task::spawn_blocking`. Times are passed in (`now`) so tests control the clock; production passes
/// `Utc::now()`.
pub trait Queue: Send + Sync {
    /// Stores a message for `envelope.recipients` and returns its id once the message and its record are on
    /// stable storage: only then may the SMTP session answer `250`.
    fn enqueue(
        &self,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<QueueId, QueueError>;

    /// Claims up to `max` due, non-held entries (oldest first) with a lease of `lease` from `now`. An entry is
    /// claimed by at most one caller at a time, across processes; entries whose lease expired are taken over.
    /// Finished entries found on the way are removed.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError>;

    /// Extends a claim's lease to `now + lease` for a long delivery; fails with [`QueueError::Busy`] when the
    /// lease was lost to someone else meanwhile.
    fn renew(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, QueueError>;

    /// The message bytes of an entry, exactly as queued.
    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError>;

    /// Durably records per-recipient results (and with them the next attempt) before anything else happens
    /// to the entry. Delivered recipients are never tried again.
    fn record(
        &self,
        claimed: &Claimed,
        results: &[RecipientResult],
        now: DateTime<Utc>,
    ) -> Result<Recorded, QueueError>;

    /// Durably notes that a DSN or delay warning for this entry was queued, so it is not sent twice.
    fn note(&self, claimed: &Claimed, notice: &Notice) -> Result<Entry, QueueError>;

    /// Gives up a claim without finishing it; the entry is due again at its next attempt.
    fn release(&self, claimed: &Claimed) -> Result<(), QueueError>;

    /// Removes the entry when nothing is left to do; otherwise releases the lease and keeps it.
    fn complete(&self, claimed: &Claimed) -> Result<Completion, QueueError>;

    /// Every queued entry, oldest first (`queue list`).
    fn list(&self, now: DateTime<Utc>) -> Result<Vec<Queued>, QueueError>;

    /// One entry (`queue show`).
    fn show(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Queued, QueueError>;

    /// Makes one entry, or all, due at `now` (`queue flush`); held entries stay held. Returns how many
    /// entries were changed.
    fn flush(&self, id: Option<&QueueId>, now: DateTime<Utc>) -> Result<usize, QueueError>;

    /// Holds an entry (`queue hold`): it is not delivered until released. A delivery already running
    /// finishes.
    fn hold(&self, id: &QueueId) -> Result<Entry, QueueError>;

    /// Releases a held entry (`queue release`).
    fn release_held(&self, id: &QueueId) -> Result<Entry, QueueError>;

    /// Removes an entry (`queue delete`) and returns its record so the caller can bounce it. Refused with
    /// [`QueueError::Busy`] while another process holds a live lease on it.
    fn delete(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError>;

    /// Counts by state (`queue stats`).
    fn stats(&self, now: DateTime<Utc>) -> Result<Stats, QueueError> {
        Ok(Stats::count(&self.list(now)?, now))
    }
}
