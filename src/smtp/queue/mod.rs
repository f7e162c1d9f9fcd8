//! The outbound queue of `mailctl serve`: messages for remote recipients wait here, durably, until every
//! recipient is delivered, failed for good or expired, and the sender has been told about failures.
//!
//! ## Pieces
//! - [`Engine`] (`engine.rs`): every rule of the queue, once: enqueue, claims and leases, what delivery results
//!   do to an entry, completion, and the admin operations, over a small [`Storage`] (`storage.rs`: lock one
//!   entry, read, write a record or a lease, remove, list).
//! - Two storages: [`Spool`] (`spool/`, the default: a directory, `flock`s and fsyncs; layout and crash
//!   behaviour in its module docs) and [`DatabaseStorage`] (`database/`, `backend = "database"`: rows in
//!   MySQL/MariaDB shared by every `serve` node). [`SpoolQueue`] and [`DatabaseQueue`] are the engine over
//!   each; [`open`] opens the configured one.
//! - Role traits, so each user holds only what it needs: [`Intake`] (sessions and local delivery: enqueue,
//!   withdraw, read a message back), [`Delivery`] (the manager: claim, record, note, complete), [`Admin`] (`mailctl queue`: list,
//!   show, flush, hold, delete, stats). [`Queue`] is all three, what [`open`] returns.
//! - [`Entry`]: the record of one message, storage-independent, with the rules that turn delivery results
//!   into the next state ([`Entry::apply`]: forward only, so a delivered recipient is never pending again).
//! - [`Backoff`]: the retry schedule (5m doubling to 4h, give up after 5 days, delay warning after 4h).
//! - [`manager`]: the delivery loop.
//!
//! ## Delivery protocol
//! A delivery loop calls [`Delivery::claim_due`], which hands out each due entry to one caller at a time, with
//! a lease (held across processes; an expired lease, or in the spool one whose process died, is taken over).
//! For each claim it tries [`Entry::due_recipients`], then [`Delivery::record`]s the results: that write is
//! durable before anything else happens to the entry. For the recipients [`Recorded::failed`] names it queues
//! a DSN and [`Delivery::note`]s it; likewise a delay warning when [`Recorded::delay_warning_due`]. Finally
//! [`Delivery::complete`] removes the entry if nothing is left, or releases it until its next attempt. A crash
//! anywhere in between leaves the entry due again (its lease dies with its holder), so nothing accepted is
//! lost; the price is at-least-once delivery: a crash between a remote `250` and `record` sends once more.
//!
//! ## Blocking
//! Every method does blocking file or database I/O with fsyncs or commits (milliseconds); async callers use
//! `tokio::task::spawn_blocking`. Clock values are parameters so tests control time.

mod backoff;
pub mod database;
mod engine;
mod entry;
mod error;
mod id;
pub mod manager;
mod open;
pub mod spool;
mod storage;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use backoff::Backoff;
pub use database::{DatabaseOptions, DatabaseQueue, DatabaseStorage};
pub use engine::Engine;
pub use entry::{
    Entry, Envelope, Notice, Outcome, RECORD_VERSION, Recipient, RecipientResult, Recorded, Status,
};
pub use error::QueueError;
pub use id::QueueId;
pub use manager::{Clock, LocalDelivery, Manager, ManagerOptions, Transport, Waker};
pub use open::open;
pub use spool::{Spool, SpoolOptions, SpoolQueue, Swept};
pub use storage::{Storage, Write};

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

/// An entry claimed for delivery by [`Delivery::claim_due`]: a snapshot of its record and the lease that makes
/// the caller its only deliverer. The caller tries [`Entry::due_recipients`], records the results, queues
/// any DSN or delay warning and notes it, then calls [`Delivery::complete`] (or [`Delivery::release`]).
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

/// An entry and its lease: as `mailctl queue list` and `show` see it (the lease only while a process is
/// delivering the entry), and as a [`Storage`] hands it to the engine (the lease as stored, live or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The stored record.
    pub entry: Entry,
    /// The lease.
    pub lease: Option<Lease>,
}

/// What [`Delivery::complete`] did.
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

/// Putting messages into the queue (and reading one back): what SMTP sessions and local delivery need, and
/// the base of the other roles.
pub trait Intake: Send + Sync {
    /// Stores a message for `envelope.recipients` under a fresh id and returns it once the message and its
    /// record are on stable storage.
    fn enqueue(
        &self,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<QueueId, QueueError>;

    /// [`Intake::enqueue`] under the id the message already has (the SMTP transaction's, which its `250`
    /// reply, its `Received:` field, the log and any local copy carry too): returns once it is on stable
    /// storage, only then may the session answer `250`. An id already in the queue is an error (the
    /// transaction is refused for now; the client's retry brings a new id).
    fn enqueue_as(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), QueueError>;

    /// Takes a message just queued back out (its transaction failed after all, and the client will send it
    /// again); refused with [`QueueError::Busy`] while another process is delivering it.
    fn withdraw(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError>;

    /// The message bytes of an entry, exactly as queued.
    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError>;
}

/// Working the queue: what the delivery manager needs (it also queues DSNs, hence [`Intake`]).
pub trait Delivery: Intake {
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
}

/// Managing the queue: what `mailctl queue` needs (it also queues bounces, hence [`Intake`]). Safe while
/// `serve` processes deliver from the same queue: every change respects their leases.
pub trait Admin: Intake {
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

/// The whole queue: every role. What [`open`] returns; each user keeps the role it needs (`Arc<dyn Intake>`,
/// `Arc<dyn Delivery>`, `Arc<dyn Admin>`).
pub trait Queue: Delivery + Admin {}

impl<T: Delivery + Admin> Queue for T {}
