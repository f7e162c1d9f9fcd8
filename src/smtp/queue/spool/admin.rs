//! The operations behind `mailctl queue`. They run safely while `serve` processes deliver from the same
//! spool: reads need no lock (records are replaced atomically), and every change takes the entry lock and
//! respects leases.

use chrono::{DateTime, Utc};

use super::Spool;
use super::files::read_entry;
use super::lock::peek_lease;
use crate::smtp::queue::{Entry, QueueError, QueueId, Queued, Status};

impl Spool {
    /// Every entry, oldest first, with its lease when one is live at `now`. Entries removed during the scan
    /// are skipped; unreadable records are logged and skipped (the sweep moves them to `corrupt/`).
    pub(super) fn list(&self, now: DateTime<Utc>) -> Result<Vec<Queued>, QueueError> {
        let mut queued = Vec::new();
        for id in self.ids()? {
            match self.show(&id, now) {
                Ok(q) => queued.push(q),
                Err(QueueError::NotFound(_)) => {}
                Err(e @ QueueError::Corrupt { .. }) => {
                    tracing::warn!(queue_id = %id, "skipping queue entry: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(queued)
    }

    /// One entry and its live lease.
    pub(super) fn show(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Queued, QueueError> {
        let entry =
            read_entry(&self.meta_path(id))?.ok_or_else(|| QueueError::NotFound(id.clone()))?;
        let lease = peek_lease(&self.lease_path(id)).filter(|l| l.is_live(now));
        Ok(Queued { entry, lease })
    }

    /// Makes the pending recipients of one entry (or of all) due at `now`; returns how many entries changed.
    pub(super) fn flush(
        &self,
        id: Option<&QueueId>,
        now: DateTime<Utc>,
    ) -> Result<usize, QueueError> {
        let ids = match id {
            Some(id) => vec![id.clone()],
            None => self.ids()?,
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

    /// Removes an entry and returns its record, unless another process holds a live lease on it.
    pub(super) fn delete(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError> {
        let (mut lock, entry) = self.lock_existing(id)?;
        if let Some(lease) = lock.lease()
            && lease.holder != self.owner.token
            && self.lease_live(&lease, now)
        {
            return Err(QueueError::Busy {
                id: id.clone(),
                pid: lease.pid,
                until: lease.expires,
            });
        }
        self.remove_entry(lock, id)?;
        Ok(entry)
    }

    /// Changes an entry under its lock and stores it durably if anything changed; returns the entry and
    /// whether it changed.
    fn update(
        &self,
        id: &QueueId,
        change: impl FnOnce(&mut Entry),
    ) -> Result<(Entry, bool), QueueError> {
        let (_lock, mut entry) = self.lock_existing(id)?;
        let before = entry.clone();
        change(&mut entry);
        let changed = entry != before;
        if changed {
            self.write_entry(&entry)?;
        }
        Ok((entry, changed))
    }
}
