//! The database storage of the outbound queue (`[server.queue] backend = "database"`): the queue lives in the
//! MySQL/MariaDB database, so several `serve` nodes share it and any node delivers any message. This is how
//! mailctl grows past one machine, on a replicated MySQL/MariaDB (e.g. Galera), not on anything home-made.
//! [`DatabaseStorage`] is the queue engine's [`Storage`](crate::smtp::queue::Storage) over the tables,
//! [`DatabaseQueue`] the engine over it.
//!
//! ## Storage
//! One row per message in `mailctl_queue` (the [`Entry`] as JSON, the same record the spool writes, plus
//! `hold`, `next_attempt` and the lease columns), the bytes in `mailctl_queue_bodies` (see migration 3 and
//! `crate::store::queue`, the only place that speaks SQL). `next_attempt` is when a delivery run has work on
//! the row next ([`Entry::is_due`] turned into a time), pushed to the lease expiry while a node holds it.
//!
//! ## Claims and leases
//! A claim (`Delivery::claim_due`) runs one transaction: `SELECT ... WHERE hold = 0 AND next_attempt <= now AND (no lease
//! or an expired one) ... FOR UPDATE SKIP LOCKED` (plain `FOR UPDATE` on servers before MariaDB 10.6 / MySQL
//! 8.0), sets this node's lease on each row, commits. Two nodes never get the same row: the second either
//! skips the locked row or, after the first commits, no longer matches it. A node that dies keeps its rows
//! until their leases expire; then any node takes them over. Lease times come from the nodes' clocks, so the
//! nodes must keep them in sync (NTP); a skew shortens or lengthens leases by that much. On Galera, a claim
//! that loses the certification race fails at commit with a deadlock error and is run again.
//!
//! Every other change is a read-modify-write of one row under its row lock, in one transaction
//! ([`Storage::update`](crate::smtp::queue::Storage::update)); what it writes is the engine's decision, the
//! same as for the spool.
//!
//! ## Durability
//! An enqueue returns after the commit, InnoDB's durability point (with the default
//! `innodb_flush_log_at_trx_commit = 1`). If the connection breaks during the commit the outcome is unknown,
//! and a `451` for a message that did commit means it is delivered and then sent again by the client; so
//! the insert asks the database (a locking read of the row, which waits for that transaction to end either
//! way) until it answers, for up to 30 seconds, and returns the id if the row is there. Only a database away
//! for longer leaves the old ambiguity: the client is told to retry, so such a message may be queued twice
//! (never lost).
//!
//! ## Blocking
//! The queue's traits are blocking; sqlx is async. A [`DatabaseStorage`] holds the [`Store`] and the `Handle`
//! of the runtime that opened it, and runs each operation with `Handle::block_on` inside
//! `tokio::task::block_in_place`. Callers run queue methods in `spawn_blocking` (as for the spool): there
//! `block_in_place` is a no-op and `block_on` is allowed. Called from plain threads it works as well. Called
//! by mistake on a multi-threaded runtime's worker, `block_in_place` first hands the worker's other tasks to
//! another thread, so the runtime is not stalled; on a current-thread runtime's task, tokio panics with "can
//! call blocking only when running on the multi-threaded runtime" instead of deadlocking. On a current-thread
//! runtime, calls from other threads only progress while that runtime's `block_on` is running.

mod row;
mod storage;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::runtime::Handle;

use super::{Backoff, Engine, QueueError};
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

/// The outbound queue over the database.
pub type DatabaseQueue = Engine<DatabaseStorage>;

impl DatabaseQueue {
    /// Opens the queue in `store` (see [`DatabaseStorage::open`]).
    pub fn open(
        store: Store,
        runtime: Handle,
        options: DatabaseOptions,
    ) -> Result<DatabaseQueue, QueueError> {
        Ok(Engine::new(DatabaseStorage::open(store, runtime, options)?))
    }

    /// The lease holder name of this handle (`host/pid/random`), as stored in leases and shown by `queue
    /// list`.
    pub fn holder(&self) -> &str {
        &self.storage().holder
    }
}

/// The queue's tables: see the module documentation for the design. Open one per process (each handle is
/// its own lease holder).
#[derive(Debug)]
pub struct DatabaseStorage {
    store: Store,
    runtime: Handle,
    options: DatabaseOptions,
    holder: String,
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

impl DatabaseStorage {
    /// Opens the queue in `store` (whose migrations, run by `Store::open`, created the tables), using
    /// `runtime` to drive the database calls; `runtime` must be the runtime the store's pool was opened on.
    /// Checks once whether the server knows `SKIP LOCKED`. Blocks: see the module documentation.
    pub fn open(
        store: Store,
        runtime: Handle,
        options: DatabaseOptions,
    ) -> Result<DatabaseStorage, QueueError> {
        options.backoff.validate().map_err(QueueError::Invalid)?;
        let mut queue = DatabaseStorage {
            store,
            runtime,
            options,
            holder: holder_name(),
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
