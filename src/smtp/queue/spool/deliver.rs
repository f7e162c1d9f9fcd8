//! The delivery side of the spool: claiming due entries under a lease, recording results, notices, and
//! releasing or completing the claim. Every change runs under the entry lock (see `lock.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Spool;
use super::files::read_entry;
use super::lock::EntryLock;
use crate::smtp::queue::backoff::delta;
use crate::smtp::queue::{
    Claimed, Completion, Entry, Notice, QueueError, QueueId, RecipientResult, Recorded,
};

impl Spool {
    /// Claims up to `max` due entries, oldest first. Entries locked by someone else at this instant are
    /// skipped (they are being changed; the next scan sees them), and so are entries with a live lease.
    /// A failure on one entry is logged and the scan goes on; it is returned only when nothing was claimed.
    pub(super) fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        let backoff = &self.options.backoff;
        let mut claimed = Vec::new();
        let mut first_error = None;
        for id in self.ids()? {
            if claimed.len() >= max {
                break;
            }
            // A cheap look without the lock first; the decision is taken again under it.
            match read_entry(&self.meta_path(&id)) {
                Ok(Some(entry)) if entry.is_due(now, backoff) => {}
                Ok(_) => continue,
                Err(e) => {
                    self.note_failure(&id, e, &mut first_error);
                    continue;
                }
            }
            match self.claim_one(&id, now, lease) {
                Ok(Some(c)) => claimed.push(c),
                Ok(None) => {}
                Err(e) => self.note_failure(&id, e, &mut first_error),
            }
        }
        match first_error {
            Some(e) if claimed.is_empty() => Err(e),
            _ => Ok(claimed),
        }
    }

    /// Logs a failure met during a scan, quarantining a corrupt record, and keeps the first error.
    fn note_failure(&self, id: &QueueId, e: QueueError, first: &mut Option<QueueError>) {
        tracing::warn!(queue_id = %id, "skipping queue entry: {e}");
        if matches!(e, QueueError::Corrupt { .. }) {
            self.quarantine(id);
        }
        first.get_or_insert(e);
    }

    /// Claims one entry if it is still due and free once locked. A finished entry is removed instead.
    fn claim_one(
        &self,
        id: &QueueId,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claimed>, QueueError> {
        let Some(mut lock) = self.lock(id, false)? else {
            return Ok(None);
        };
        let Some(entry) = read_entry(&self.meta_path(id))? else {
            lock.remove();
            return Ok(None);
        };
        if !entry.is_due(now, &self.options.backoff) {
            return Ok(None);
        }
        if lock.lease().is_some_and(|l| self.lease_live(&l, now)) {
            return Ok(None);
        }
        if entry.is_finished() {
            self.remove_entry(lock, id)?;
            return Ok(None);
        }
        let lease = self.owner.lease(now + delta(lease));
        lock.set_lease(&self.faults, &lease)?;
        Ok(Some(Claimed { entry, lease }))
    }

    /// Extends the lease of `claimed` to `now + lease`, if it is still the holder's.
    pub(super) fn renew(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, QueueError> {
        let (mut lock, entry) = self.lock_existing(claimed.id())?;
        if !Self::holds(&mut lock, claimed) {
            return Err(self.busy(&mut lock, claimed));
        }
        let mut renewed = claimed.lease.clone();
        renewed.expires = now + delta(lease);
        lock.set_lease(&self.faults, &renewed)?;
        Ok(Claimed {
            entry,
            lease: renewed,
        })
    }

    /// The error for a lease that is no longer the caller's.
    fn busy(&self, lock: &mut EntryLock, claimed: &Claimed) -> QueueError {
        let current = lock.lease().unwrap_or_else(|| claimed.lease.clone());
        QueueError::Busy {
            id: claimed.id().clone(),
            pid: current.pid,
            until: current.expires,
        }
    }

    /// Merges `results` into the current record and stores it durably before returning. Results are
    /// recorded even if the lease was lost meanwhile: they are facts, and merging never undoes a final state.
    pub(super) fn record(
        &self,
        claimed: &Claimed,
        results: &[RecipientResult],
        now: DateTime<Utc>,
    ) -> Result<Recorded, QueueError> {
        let backoff = &self.options.backoff;
        let (_lock, mut entry) = self.lock_existing(claimed.id())?;
        let before = entry.clone();
        let failed = entry.apply(results, now, backoff);
        if entry != before {
            self.write_entry(&entry)?;
        }
        Ok(Recorded {
            pending: entry.pending().count(),
            delay_warning_due: entry.delay_warning_due(now, backoff),
            failed,
            entry,
        })
    }

    /// Durably notes that a notice for the sender was queued.
    pub(super) fn note(&self, claimed: &Claimed, notice: &Notice) -> Result<Entry, QueueError> {
        let (_lock, mut entry) = self.lock_existing(claimed.id())?;
        let before = entry.clone();
        entry.note(notice);
        if entry != before {
            self.write_entry(&entry)?;
        }
        Ok(entry)
    }

    /// Gives up the claim if it is still the holder's; the entry stays as recorded.
    pub(super) fn release(&self, claimed: &Claimed) -> Result<(), QueueError> {
        match self.lock_existing(claimed.id()) {
            Ok((mut lock, _)) => {
                if Self::holds(&mut lock, claimed) {
                    lock.remove();
                }
                Ok(())
            }
            Err(QueueError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the entry when nothing is left to do, else releases the claim. An entry that someone else
    /// has claimed meanwhile (this lease ran out and was taken over) is left to them.
    pub(super) fn complete(&self, claimed: &Claimed) -> Result<Completion, QueueError> {
        let (mut lock, entry) = self.lock_existing(claimed.id())?;
        if !Self::holds(&mut lock, claimed) && lock.lease().is_some() {
            return Ok(Completion::Kept(entry));
        }
        if entry.is_finished() {
            self.remove_entry(lock, claimed.id())?;
            return Ok(Completion::Removed(entry));
        }
        lock.remove();
        Ok(Completion::Kept(entry))
    }
}
