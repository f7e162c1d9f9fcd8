//! The delivery side of the database queue: enqueue, claims under a lease, results, notices, and releasing
//! or completing a claim. Each operation is one transaction (see the module documentation).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::row::{add, entry_of, holds, lease_of, lease_row};
use super::{DatabaseQueue, Fail};
use crate::smtp::queue::{
    Claimed, Completion, Entry, Envelope, Lease, Notice, QueueError, QueueId, RecipientResult,
    Recorded,
};
use crate::store::{NewQueueRow, QueueUpdate};

/// Tries with a fresh id when the random one is taken (practically never).
const ID_ATTEMPTS: usize = 4;
/// How long an enqueue whose commit failed waits for the database to say whether the row is there.
const UNKNOWN_COMMIT_PATIENCE: Duration = Duration::from_secs(30);
/// The pause between two such questions.
const UNKNOWN_COMMIT_RETRY: Duration = Duration::from_millis(250);

impl DatabaseQueue {
    /// Stores `message` for `envelope`; returns its id once the transaction has committed.
    pub(super) fn enqueue(
        &self,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<QueueId, QueueError> {
        for _ in 0..ID_ATTEMPTS {
            let entry = Entry::new(QueueId::generate(now), envelope, message.len() as u64, now)?;
            let record =
                serde_json::to_string(&entry).map_err(|e| QueueError::Invalid(e.to_string()))?;
            let row = NewQueueRow {
                id: entry.id.as_str(),
                sender: &entry.sender,
                created: entry.created,
                size: entry.size,
                record: &record,
                next_attempt: super::row::due_at(&entry, &self.options.backoff),
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
            let stored = match stored {
                Ok(stored) => stored,
                Err(e) if committing.get() => self.stored_after_all(&entry.id, e)?,
                Err(e) => return Err(e),
            };
            if stored {
                return Ok(entry.id);
            }
        }
        Err(QueueError::Invalid("no unused queue id found".into()))
    }

    /// Settles an enqueue whose commit failed (`error`), typically because the connection broke: the
    /// outcome is unknown, and a `451` for a message that did commit means it is delivered and then sent again
    /// by the client. So the row is looked up (a locking read, which waits for the server to finish that
    /// transaction either way) until the database answers, for up to [`UNKNOWN_COMMIT_PATIENCE`]: `Ok(true)`
    /// when it is there, `error` when it is not or the question cannot be answered in time (then, as before,
    /// the message may be queued although the client was told to retry).
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
                        "cannot tell whether a queued message was stored; the client is told to retry, so it \
                         may be sent twice");
                    return Err(error);
                }
            }
        }
    }

    /// Claims up to `max` due rows in one transaction (see the module documentation). Rows that turn out
    /// not to be due get their `next_attempt` corrected, finished ones are removed, and an unreadable
    /// record is held (and logged) so it stops coming back. Those are not returned, so a call may return
    /// fewer than `max` while more rows are due; the next call finds them.
    pub(super) fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let backoff = &self.options.backoff;
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
                if row.lease.as_ref().is_some_and(|l| l.expires > now) {
                    continue;
                }
                if !entry.is_due(now, backoff) {
                    self.write(&mut tx, &entry, row.lease.as_ref()).await?;
                    continue;
                }
                if entry.is_finished() {
                    tx.queue_delete(&row.id).await?;
                    continue;
                }
                let lease = Lease {
                    holder: self.holder.clone(),
                    claim: self.next_claim(),
                    pid: std::process::id(),
                    expires: add(now, lease),
                };
                self.write(&mut tx, &entry, Some(&lease_row(&lease)))
                    .await?;
                claimed.push(Claimed { entry, lease });
            }
            tx.commit().await?;
            Ok(claimed)
        })
    }

    /// Extends the lease of `claimed` to `now + lease` while it is still this claim's.
    pub(super) fn renew(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (entry, current) = self.lock_existing(&mut tx, claimed.id()).await?;
            if !holds(current.as_ref(), claimed) {
                let shown = current
                    .as_ref()
                    .map_or_else(|| claimed.lease.clone(), lease_of);
                return Err(Fail::Queue(QueueError::Busy {
                    id: claimed.id().clone(),
                    pid: shown.pid,
                    until: shown.expires,
                }));
            }
            let mut renewed = claimed.lease.clone();
            renewed.expires = add(now, lease);
            self.write(&mut tx, &entry, Some(&lease_row(&renewed)))
                .await?;
            tx.commit().await?;
            Ok(Claimed {
                entry,
                lease: renewed,
            })
        })
    }

    /// Merges `results` into the current record and commits before returning. Recorded even when the
    /// lease was lost meanwhile: results are facts, and the merge never undoes a final state.
    pub(super) fn record(
        &self,
        claimed: &Claimed,
        results: &[RecipientResult],
        now: DateTime<Utc>,
    ) -> Result<Recorded, QueueError> {
        let backoff = &self.options.backoff;
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (mut entry, lease) = self.lock_existing(&mut tx, claimed.id()).await?;
            let before = entry.clone();
            let failed = entry.apply(results, now, backoff);
            if entry != before {
                self.write(&mut tx, &entry, lease.as_ref()).await?;
                tx.commit().await?;
            }
            Ok(Recorded {
                pending: entry.pending().count(),
                delay_warning_due: entry.delay_warning_due(now, backoff),
                failed,
                entry,
            })
        })
    }

    /// Durably notes that a notice for the sender was queued.
    pub(super) fn note(&self, claimed: &Claimed, notice: &Notice) -> Result<Entry, QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (mut entry, lease) = self.lock_existing(&mut tx, claimed.id()).await?;
            let before = entry.clone();
            entry.note(notice);
            if entry != before {
                self.write(&mut tx, &entry, lease.as_ref()).await?;
                tx.commit().await?;
            }
            Ok(entry)
        })
    }

    /// Gives up the claim if it is still this claim's; the entry stays as recorded.
    pub(super) fn release(&self, claimed: &Claimed) -> Result<(), QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (entry, lease) = match self.lock_existing(&mut tx, claimed.id()).await {
                Ok(found) => found,
                Err(Fail::Queue(QueueError::NotFound(_))) => return Ok(()),
                Err(e) => return Err(e),
            };
            if holds(lease.as_ref(), claimed) {
                self.write(&mut tx, &entry, None).await?;
                tx.commit().await?;
            }
            Ok(())
        })
    }

    /// Removes the entry when nothing is left to do, else releases the claim. An entry someone else has
    /// claimed meanwhile (this lease ran out and was taken over) is left to them.
    pub(super) fn complete(&self, claimed: &Claimed) -> Result<Completion, QueueError> {
        self.run("write to", async || {
            let mut tx = self.store.begin_queue().await?;
            let (entry, lease) = self.lock_existing(&mut tx, claimed.id()).await?;
            if lease.is_some() && !holds(lease.as_ref(), claimed) {
                return Ok(Completion::Kept(entry));
            }
            if entry.is_finished() {
                tx.queue_delete(entry.id.as_str()).await?;
                tx.commit().await?;
                return Ok(Completion::Removed(entry));
            }
            self.write(&mut tx, &entry, None).await?;
            tx.commit().await?;
            Ok(Completion::Kept(entry))
        })
    }
}
