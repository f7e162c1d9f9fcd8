//! The small interface the queue engine ([`super::Engine`]) runs on: where entries, their messages and their
//! leases are kept, and how one entry is changed atomically. The spool directory ([`super::Spool`]) and the
//! database ([`super::DatabaseStorage`]) implement it; every rule (what is due, who holds a claim, what a result
//! does to an entry, when an entry goes) is the engine's, written once.
//!
//! A change is a read-modify-write under the entry's lock: the storage locks the entry, hands the engine the
//! stored record and lease, and carries out the [`Write`] the engine decides, durably, before the lock is
//! released (the spool's `flock` and fsyncs, the database's row lock and commit). The decision may be asked
//! for again when the storage retries a transaction that lost a lock race, so it must depend on its input
//! only.

use chrono::{DateTime, Utc};

use super::{Backoff, Claimed, Entry, Lease, QueueError, QueueId, Queued};

/// What the engine decided to do with one locked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Nothing changes.
    Keep,
    /// The record changes (results, notices, hold, flush); the lease stays as it is.
    Entry(Entry),
    /// The lease changes (a claim or its renewal); the record stays.
    Lease(Lease),
    /// The lease is given up; the record stays.
    Release,
    /// The entry goes: record, message and lease.
    Remove,
}

/// Where the queue keeps its entries. All methods block (file or database I/O with fsyncs or commits).
pub trait Storage: Send + Sync {
    /// The retry schedule this storage was opened with (the database derives each row's due time from it).
    fn backoff(&self) -> &Backoff;

    /// The name this handle writes into its leases (a spool owner token, a database node's holder name).
    fn holder(&self) -> &str;

    /// Whether `lease` keeps everyone but its holder away at `now`: unexpired, and (in the spool) its holder
    /// process still alive.
    fn lease_live(&self, lease: &Lease, now: DateTime<Utc>) -> bool;

    /// Stores a new entry and its message durably; `Ok(false)` when the id is taken (nothing was stored).
    fn insert(&self, entry: &Entry, message: &[u8]) -> Result<bool, QueueError>;

    /// The message of an entry, exactly as queued.
    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError>;

    /// The ids of every entry, oldest first.
    fn ids(&self) -> Result<Vec<QueueId>, QueueError>;

    /// An entry and the lease stored with it (live or not), read without locking; `None` when absent.
    fn read(&self, id: &QueueId) -> Result<Option<Queued>, QueueError>;

    /// Every entry with its stored lease, oldest first; unreadable records are logged and left out.
    fn scan(&self) -> Result<Vec<Queued>, QueueError>;

    /// Locks the entry `id`, reads it, carries out the [`Write`] that `decide` returns, and returns the
    /// decision's value; [`QueueError::NotFound`] when there is no such entry, and `decide`'s error unchanged.
    fn update<T>(
        &self,
        id: &QueueId,
        decide: impl FnMut(&Queued) -> Result<(Write, T), QueueError>,
    ) -> Result<T, QueueError>;

    /// Visits the entries that may be due at `now`, oldest first, each locked without waiting (one that
    /// someone else is changing is skipped), and carries out what `decide` returns for it, until `max` were
    /// claimed. Returns the claims (the entries `decide` leased). Unreadable records found on the way are set
    /// aside (logged, kept out of later claims) rather than returned as errors.
    fn claim(
        &self,
        now: DateTime<Utc>,
        max: usize,
        decide: impl FnMut(&Queued) -> Write,
    ) -> Result<Vec<Claimed>, QueueError>;
}
