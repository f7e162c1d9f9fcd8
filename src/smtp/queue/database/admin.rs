//! The operations behind `mailctl queue` on the database queue. They work from any node while others
//! deliver: reads take no locks, and every change is a read-modify-write under the row lock that keeps the
//! row's lease as it is.

use chrono::{DateTime, Utc};

use super::row::{entry_of, lease_of};
use super::{DatabaseQueue, Fail};
use crate::smtp::queue::{Entry, QueueError, QueueId, Queued, Status};
use crate::store::QueueRow;

impl DatabaseQueue {
    /// The message bytes of an entry.
    pub(super) fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.run("read", async || {
            let mut tx = self.store.begin().await?;
            let body = tx.queue_body(id.as_str()).await?;
            tx.rollback().await?;
            body.ok_or_else(|| Fail::Queue(QueueError::NotFound(id.clone())))
        })
    }

    /// Every entry, oldest first, with its lease when one is live at `now`. Unreadable records are logged
    /// and skipped (the next claim holds them).
    pub(super) fn list(&self, now: DateTime<Utc>) -> Result<Vec<Queued>, QueueError> {
        let rows = self.run("read", async || {
            let mut tx = self.store.begin().await?;
            let rows = tx.queue_rows().await?;
            tx.rollback().await?;
            Ok(rows)
        })?;
        let mut queued = Vec::with_capacity(rows.len());
        for row in &rows {
            match queued_of(row, now) {
                Ok(q) => queued.push(q),
                Err(e) => tracing::warn!(queue_id = %row.id, "skipping queue entry: {e}"),
            }
        }
        Ok(queued)
    }

    /// One entry and its live lease.
    pub(super) fn show(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Queued, QueueError> {
        let row = self.run("read", async || {
            let mut tx = self.store.begin().await?;
            let row = tx.queue_row(id.as_str()).await?;
            tx.rollback().await?;
            Ok(row)
        })?;
        queued_of(&row.ok_or_else(|| QueueError::NotFound(id.clone()))?, now)
    }

    /// Makes the pending recipients of one entry (or of all) due at `now`; returns how many entries changed.
    pub(super) fn flush(
        &self,
        id: Option<&QueueId>,
        now: DateTime<Utc>,
    ) -> Result<usize, QueueError> {
        let ids = match id {
            Some(id) => vec![id.clone()],
            None => {
                let ids = self.run("read", async || {
                    let mut tx = self.store.begin().await?;
                    let ids = tx.queue_ids().await?;
                    tx.rollback().await?;
                    Ok(ids)
                })?;
                // Ids in the table were checked when queued; anything else is skipped, not trusted.
                ids.iter().filter_map(|i| QueueId::parse(i).ok()).collect()
            }
        };
        let mut changed = 0;
        for one in &ids {
            let result = self.update(one, |entry| {
                for r in &mut entry.recipients {
                    if r.status == Status::Pending && r.next_attempt > now {
                        r.next_attempt = now;
                    }
                }
            });
            match result {
                Ok((_, true)) => changed += 1,
                Ok((_, false)) => {}
                Err(QueueError::NotFound(_)) if id.is_none() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Sets or clears the hold flag. A delivery already running finishes; holding only stops new claims.
    pub(super) fn set_hold(&self, id: &QueueId, hold: bool) -> Result<Entry, QueueError> {
        self.update(id, |entry| entry.hold = hold)
            .map(|(entry, _)| entry)
    }

    /// Removes an entry and returns its record, unless another holder's lease on it is live.
    pub(super) fn delete(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (entry, lease) = self.lock_existing(&mut tx, id).await?;
            if let Some(lease) = lease.as_ref().map(lease_of)
                && lease.holder != self.holder
                && lease.is_live(now)
            {
                return Err(Fail::Queue(QueueError::Busy {
                    id: id.clone(),
                    pid: lease.pid,
                    until: lease.expires,
                }));
            }
            tx.queue_delete(id.as_str()).await?;
            tx.commit().await?;
            Ok(entry)
        })
    }

    /// Changes an entry under its row lock and commits if anything changed; returns the entry and whether
    /// it changed. The lease stays as it is.
    fn update(
        &self,
        id: &QueueId,
        change: impl Fn(&mut Entry),
    ) -> Result<(Entry, bool), QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (mut entry, lease) = self.lock_existing(&mut tx, id).await?;
            let before = entry.clone();
            change(&mut entry);
            let changed = entry != before;
            if changed {
                self.write(&mut tx, &entry, lease.as_ref()).await?;
                tx.commit().await?;
            }
            Ok((entry, changed))
        })
    }
}

/// A row as `queue list` shows it: the record and the lease if it is live at `now`.
fn queued_of(row: &QueueRow, now: DateTime<Utc>) -> Result<Queued, QueueError> {
    Ok(Queued {
        entry: entry_of(row)?,
        lease: row.lease.as_ref().map(lease_of).filter(|l| l.is_live(now)),
    })
}
