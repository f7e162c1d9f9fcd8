//! The database as the engine's [`Storage`]: each change is one transaction that locks the row first, each
//! claim one transaction over the due rows (see the module documentation).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::row::{entry_of, lease_of, lease_row};
use super::{DatabaseStorage, Fail};
use crate::smtp::queue::storage::{Storage, Write};
use crate::smtp::queue::{Backoff, Claimed, Entry, Lease, QueueError, QueueId, Queued};
use crate::store::{NewQueueRow, QueueLeaseRow, QueueUpdate, Tx};

/// How long an insert whose commit failed waits for the database to say whether the row is there.
const UNKNOWN_COMMIT_PATIENCE: Duration = Duration::from_secs(30);
/// The pause between two such questions.
const UNKNOWN_COMMIT_RETRY: Duration = Duration::from_millis(250);

impl Storage for DatabaseStorage {
    fn backoff(&self) -> &Backoff {
        &self.options.backoff
    }

    fn holder(&self) -> &str {
        &self.holder
    }

    /// Unexpired: a node that died keeps its rows until then (nodes cannot see each other's processes).
    fn lease_live(&self, lease: &Lease, now: DateTime<Utc>) -> bool {
        lease.is_live(now)
    }

    fn insert(&self, entry: &Entry, message: &[u8]) -> Result<bool, QueueError> {
        let record =
            serde_json::to_string(entry).map_err(|e| QueueError::Invalid(e.to_string()))?;
        let row = NewQueueRow {
            id: entry.id.as_str(),
            sender: &entry.sender,
            created: entry.created,
            size: entry.size,
            record: &record,
            next_attempt: super::row::due_at(entry, &self.options.backoff),
        };
        let committing = std::cell::Cell::new(false);
        let stored = self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            if !tx.queue_insert(&row, message).await? {
                return Ok(false);
            }
            committing.set(true);
            tx.commit().await?;
            Ok(true)
        });
        match stored {
            Err(e) if committing.get() => self.stored_after_all(&entry.id, e),
            other => other,
        }
    }

    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.reading(async |tx| tx.queue_body(id.as_str()).await)?
            .ok_or_else(|| QueueError::NotFound(id.clone()))
    }

    /// Ids in the table were checked when queued; anything else is skipped, not trusted.
    fn ids(&self) -> Result<Vec<QueueId>, QueueError> {
        let ids = self.reading(async |tx| tx.queue_ids().await)?;
        Ok(ids.iter().filter_map(|i| QueueId::parse(i).ok()).collect())
    }

    fn read(&self, id: &QueueId) -> Result<Option<Queued>, QueueError> {
        let row = self.reading(async |tx| tx.queue_row(id.as_str()).await)?;
        row.map(|row| {
            Ok(Queued {
                entry: entry_of(&row)?,
                lease: row.lease.as_ref().map(lease_of),
            })
        })
        .transpose()
    }

    /// Unreadable records are logged and skipped (the next claim holds them).
    fn scan(&self) -> Result<Vec<Queued>, QueueError> {
        let rows = self.reading(async |tx| tx.queue_rows().await)?;
        let mut queued = Vec::with_capacity(rows.len());
        for row in &rows {
            match entry_of(row) {
                Ok(entry) => queued.push(Queued {
                    entry,
                    lease: row.lease.as_ref().map(lease_of),
                }),
                Err(e) => tracing::warn!(queue_id = %row.id, "skipping queue entry: {e}"),
            }
        }
        Ok(queued)
    }

    fn update<T>(
        &self,
        id: &QueueId,
        mut decide: impl FnMut(&Queued) -> Result<(Write, T), QueueError>,
    ) -> Result<T, QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let row = tx
                .queue_lock(id.as_str())
                .await?
                .ok_or_else(|| QueueError::NotFound(id.clone()))?;
            let stored = Queued {
                entry: entry_of(&row)?,
                lease: row.lease.as_ref().map(lease_of),
            };
            let (write, value) = decide(&stored)?;
            if self
                .carry_out(&mut tx, &stored.entry, row.lease.as_ref(), write)
                .await?
            {
                tx.commit().await?;
            }
            Ok(value)
        })
    }

    /// One transaction over up to `max` due rows (see the module documentation). Rows that turn out not to be
    /// due get their `next_attempt` corrected, finished ones are removed, and an unreadable record is held (and
    /// logged) so it stops coming back. Those are not returned, so a call may return fewer than `max` while
    /// more rows are due; the next call finds them.
    fn claim(
        &self,
        now: DateTime<Utc>,
        max: usize,
        mut decide: impl FnMut(&Queued) -> Write,
    ) -> Result<Vec<Claimed>, QueueError> {
        self.run("claim from", async || {
            let mut tx = self.store.begin_queue().await?;
            let rows = tx.queue_lock_due(now, max, self.locking).await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let entry = match entry_of(&row) {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::error!(queue_id = %row.id, "holding unreadable queue entry: {e}");
                        let update = QueueUpdate {
                            record: &row.record,
                            hold: true,
                            next_attempt: now,
                            lease: None,
                        };
                        tx.queue_update(&row.id, &update).await?;
                        continue;
                    }
                };
                let stored = Queued {
                    lease: row.lease.as_ref().map(lease_of),
                    entry,
                };
                let write = decide(&stored);
                if let Write::Lease(lease) = &write {
                    claimed.push(Claimed {
                        entry: stored.entry.clone(),
                        lease: lease.clone(),
                    });
                }
                if write == Write::Keep {
                    // Selected as due but not due (or leased): correct the row's next_attempt.
                    self.write(&mut tx, &stored.entry, row.lease.as_ref())
                        .await?;
                } else {
                    self.carry_out(&mut tx, &stored.entry, row.lease.as_ref(), write)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(claimed)
        })
    }
}

impl DatabaseStorage {
    /// Runs one read in its own transaction (no locks taken), retried like every operation.
    fn reading<T>(
        &self,
        mut read: impl AsyncFnMut(&mut Tx) -> crate::error::Result<T>,
    ) -> Result<T, QueueError> {
        self.run("read", async || {
            let mut tx = self.store.begin().await?;
            let value = read(&mut tx).await?;
            tx.rollback().await?;
            Ok(value)
        })
    }

    /// Carries out `write` for the locked row of `entry` (with lease columns `lease`) in `tx`; true when
    /// something was written (and the transaction must be committed).
    async fn carry_out(
        &self,
        tx: &mut Tx,
        entry: &Entry,
        lease: Option<&QueueLeaseRow>,
        write: Write,
    ) -> Result<bool, Fail> {
        match write {
            Write::Keep => return Ok(false),
            Write::Entry(changed) => self.write(tx, &changed, lease).await?,
            Write::Lease(new) => self.write(tx, entry, Some(&lease_row(&new))).await?,
            Write::Release => self.write(tx, entry, None).await?,
            Write::Remove => {
                tx.queue_delete(entry.id.as_str()).await?;
            }
        }
        Ok(true)
    }

    /// Settles an insert whose commit failed (`error`), typically because the connection broke: the outcome
    /// is unknown, and a `451` for a message that did commit means it is delivered and then sent again by the
    /// client. So the row is looked up (a locking read, which waits for the server to finish that transaction
    /// either way) until the database answers, for up to [`UNKNOWN_COMMIT_PATIENCE`]: `Ok(true)` when it is
    /// there, `error` when it is not or the question cannot be answered in time (then, as before, the message
    /// may be queued although the client was told to retry).
    fn stored_after_all(&self, id: &QueueId, error: QueueError) -> Result<bool, QueueError> {
        let deadline = std::time::Instant::now() + UNKNOWN_COMMIT_PATIENCE;
        loop {
            let found = self.run("check", async || {
                let mut tx = self.store.begin_queue().await?;
                let row = tx.queue_lock(id.as_str()).await?;
                tx.rollback().await?;
                Ok(row.is_some())
            });
            match found {
                Ok(true) => {
                    tracing::info!(queue_id = %id, error = %error,
                        "the commit of a queued message reported an error but went through");
                    return Ok(true);
                }
                Ok(false) => return Err(error),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(UNKNOWN_COMMIT_RETRY);
                }
                Err(e) => {
                    tracing::warn!(queue_id = %id, error = %e,
                        "cannot tell whether a queued message was stored; the client is told to retry, so it \\
                         may be sent twice");
                    return Err(error);
                }
            }
        }
    }
}
