//! The database backend of the outbound queue (`[server.queue] backend = "database"`): the queue lives in the
//! MySQL/MariaDB database, so several `serve` nodes share it and any node delivers any message. This is how
//! mailctl grows past one machine, on a replicated MySQL/MariaDB (e.g. Galera), not on anything home-made.
//!
//! ## Storage
//! One row per message in `mailctl_queue` (the [`Entry`] as JSON, the same record the spool writes, plus
//! `hold`, `next_attempt` and the lease columns), the bytes in `mailctl_queue_bodies` (see migration 3 and
//! `crate::store::queue`, the only place that speaks SQL). `next_attempt` is when a delivery run has work on
//! the row next ([`Entry::is_due`] turned into a time), pushed to the lease expiry while a node holds it.
//!
//! ## Claims and leases
//! [`Queue::claim_due`] runs one transaction: `SELECT ... WHERE hold = 0 AND next_attempt <= now AND (no lease
//! or an expired one) ... FOR UPDATE SKIP LOCKED` (plain `FOR UPDATE` on servers before MariaDB 10.6 / MySQL
//! 8.0), sets this node's lease on each row, commits. Two nodes never get the same row: the second either
//! skips the locked row or, after the first commits, no longer matches it. A node that dies keeps its rows
//! until their leases expire; then any node takes them over. Lease times come from the nodes' clocks, so the
//! nodes must keep them in sync (NTP); a skew shortens or lengthens leases by that much. On Galera, a claim
//! that loses the certification race fails at commit with a deadlock error and is run again.
//!
//! Every other change is a read-modify-write of one row under its row lock, in one transaction. `renew`,
//! `release` and `complete` act only while the row's lease is still this claim's (holder and claim number):
//! a node whose lease ran out and was taken over gets [`QueueError::Busy`] from `renew`, and its `release` or
//! `complete` leaves the row to the new holder. `record` and `note` store their facts even then, exactly as
//! the spool does: [`Entry::apply`] merges forward only under the row lock, so a stale report can never undo
//! the new holder's results, while dropping it would cause one more delivery (the new holder may fail
//! temporarily where the old one succeeded).
//!
//! ## Durability
//! [`Queue::enqueue`] returns after the commit, InnoDB's durability point (with the default
//! `innodb_flush_log_at_trx_commit = 1`). If the connection breaks during the commit the outcome is unknown,
//! and a `451` for a message that did commit means it is delivered and then sent again by the client; so
//! `enqueue` asks the database (a locking read of the row, which waits for that transaction to end either
//! way) until it answers, for up to 30 seconds, and returns the id if the row is there. Only a database away
//! for longer leaves the old ambiguity: the client is told to retry, so such a message may be queued twice
//! (never lost).
//!
//! ## Blocking
//! The [`Queue`] trait is blocking; sqlx is async. A [`DatabaseQueue`] holds the [`Store`] and the `Handle`
//! of the runtime that opened it, and runs each operation with `Handle::block_on` inside
//! `tokio::task::block_in_place`. Callers run queue methods in `spawn_blocking` (as for the spool): there
//! `block_in_place` is a no-op and `block_on` is allowed. Called from plain threads it works as well. Called
//! by mistake on a multi-threaded runtime's worker, `block_in_place` first hands the worker's other tasks to
//! another thread, so the runtime is not stalled; on a current-thread runtime's task, tokio panics with "can
//! call blocking only when running on the multi-threaded runtime" instead of deadlocking. On a current-thread
//! runtime, calls from other threads only progress while that runtime's `block_on` is running.

mod admin;
mod deliver;
mod row;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::runtime::Handle;

use super::{
    Backoff, Claimed, Completion, Entry, Envelope, Notice, Queue, QueueError, QueueId, Queued,
    RecipientResult, Recorded,
};
use crate::error::Error;
use crate::store::{DueLocking, Store, queue_retryable};

/// How often an operation is run again after losing a lock race (deadlock, lock wait timeout, Galera
/// certification failure, SQLite busy) before the error is returned.
const RETRIES: u32 = 8;

/// How a database queue behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// The retry schedule applied by `record`, and the delay-warning age.
    pub backoff: Backoff,
}

/// The outbound queue in the database: see the module documentation for the design. Open one per process
/// (each handle is its own lease holder); it is `Send + Sync` and shared as `Arc<dyn Queue>`.
#[derive(Debug)]
pub struct DatabaseQueue {
    store: Store,
    runtime: Handle,
    options: DatabaseOptions,
    holder: String,
    claims: AtomicU64,
    locking: DueLocking,
}

/// Why one attempt of an operation failed: a database error (maybe worth another attempt) or a queue answer.
enum Fail {
    Db(Error),
    Queue(QueueError),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Db(e)
    }
}

impl From<QueueError> for Fail {
    fn from(e: QueueError) -> Self {
        Fail::Queue(e)
    }
}

impl DatabaseQueue {
    /// Opens the queue in `store` (whose migrations, run by `Store::open`, created the tables), using
    /// `runtime` to drive the database calls; `runtime` must be the runtime the store's pool was opened on.
    /// Checks once whether the server knows `SKIP LOCKED`. Blocks: see the module documentation.
    pub fn open(
        store: Store,
        runtime: Handle,
        options: DatabaseOptions,
    ) -> Result<DatabaseQueue, QueueError> {
        options.backoff.validate().map_err(QueueError::Invalid)?;
        let mut queue = DatabaseQueue {
            store,
            runtime,
            options,
            holder: holder_name(),
            claims: AtomicU64::new(1),
            locking: DueLocking::Wait,
        };
        let locking = queue.run("open", async || Ok(queue.store.queue_due_locking().await?))?;
        if locking == DueLocking::Wait && queue.store.backend() == crate::store::Backend::Mysql {
            tracing::warn!(
                "the database server lacks SELECT ... SKIP LOCKED (MariaDB 10.6+, MySQL 8.0+): queue claims \
                 from several nodes will wait for each other"
            );
        }
        queue.locking = locking;
        Ok(queue)
    }

    /// The lease holder name of this handle (`host/pid/random`), as stored in leases and shown by `queue
    /// list`.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs `op` to completion on the store's runtime (see "Blocking" in the module documentation), again
    /// while it fails on a lock race, and turns database errors into [`QueueError`]s that name `action`.
    fn run<T>(
        &self,
        action: &'static str,
        mut op: impl AsyncFnMut() -> Result<T, Fail>,
    ) -> Result<T, QueueError> {
        self.block_on(async {
            let mut attempt = 0;
            loop {
                match op().await {
                    Ok(value) => return Ok(value),
                    Err(Fail::Queue(e)) => return Err(e),
                    Err(Fail::Db(e)) if attempt < RETRIES && queue_retryable(&e) => {
                        attempt += 1;
                        let jitter = rand::random::<u64>() % 20;
                        let wait = u64::from(attempt) * 10 + jitter;
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    Err(Fail::Db(e)) => return Err(self.db_error(action, e)),
                }
            }
        })
    }

    /// Waits for `future` on the store's runtime from blocking code.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(future))
    }

    /// A database failure as a queue error: temporary (`451` for the SMTP client, "try again" for the admin).
    fn db_error(&self, action: &'static str, e: Error) -> QueueError {
        QueueError::Io {
            action,
            path: PathBuf::from(format!(
                "database queue {}",
                crate::store::redact_url(self.store.url())
            )),
            source: std::io::Error::other(e.to_string()),
        }
    }

    /// The next claim number of this holder.
    fn next_claim(&self) -> u64 {
        self.claims.fetch_add(1, Ordering::Relaxed)
    }
}

/// A holder name unique per open queue: the host name (for the admin), the pid and random bits (two handles
/// in one process, as in tests, or a restarted process, are different holders).
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().take(200).collect();
    let host = if host.is_empty() { "localhost" } else { &host };
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Queue for DatabaseQueue {
    fn enqueue(
        &self,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<QueueId, QueueError> {
        DatabaseQueue::enqueue(self, envelope, message, now)
    }

    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        DatabaseQueue::claim_due(self, now, lease, max)
    }

    fn renew(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, QueueError> {
        DatabaseQueue::renew(self, claimed, now, lease)
    }

    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        DatabaseQueue::body(self, id)
    }

    fn record(
        &self,
        claimed: &Claimed,
        results: &[RecipientResult],
        now: DateTime<Utc>,
    ) -> Result<Recorded, QueueError> {
        DatabaseQueue::record(self, claimed, results, now)
    }

    fn note(&self, claimed: &Claimed, notice: &Notice) -> Result<Entry, QueueError> {
        DatabaseQueue::note(self, claimed, notice)
    }

    fn release(&self, claimed: &Claimed) -> Result<(), QueueError> {
        DatabaseQueue::release(self, claimed)
    }

    fn complete(&self, claimed: &Claimed) -> Result<Completion, QueueError> {
        DatabaseQueue::complete(self, claimed)
    }

    fn list(&self, now: DateTime<Utc>) -> Result<Vec<Queued>, QueueError> {
        DatabaseQueue::list(self, now)
    }

    fn show(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Queued, QueueError> {
        DatabaseQueue::show(self, id, now)
    }

    fn flush(&self, id: Option<&QueueId>, now: DateTime<Utc>) -> Result<usize, QueueError> {
        DatabaseQueue::flush(self, id, now)
    }

    fn hold(&self, id: &QueueId) -> Result<Entry, QueueError> {
        DatabaseQueue::set_hold(self, id, true)
    }

    fn release_held(&self, id: &QueueId) -> Result<Entry, QueueError> {
        DatabaseQueue::set_hold(self, id, false)
    }

    fn delete(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError> {
        DatabaseQueue::delete(self, id, now)
    }
}
