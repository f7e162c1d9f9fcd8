//! The spool as the engine's [`Storage`]: every change runs under the entry lock (see `lock.rs`), reads of
//! listings need none (records are replaced atomically), and a claim scan skips entries someone else is
//! changing at that instant.

use chrono::{DateTime, Utc};

use super::files::read_entry;
use super::lock::peek_lease;
use super::{FileStamp, Spool};
use crate::smtp::queue::storage::{Storage, Write};
use crate::smtp::queue::{Backoff, Claimed, Entry, Lease, QueueError, QueueId, Queued};

impl Storage for Spool {
    fn backoff(&self) -> &Backoff {
        &self.options.backoff
    }

    fn holder(&self) -> &str {
        &self.owner.token
    }

    /// Unexpired, and its holder is this spool or an owner whose process is alive.
    fn lease_live(&self, lease: &Lease, now: DateTime<Utc>) -> bool {
        lease.is_live(now)
            && (lease.holder == self.owner.token
                || super::lock::owner_alive(&self.owners, &lease.holder))
    }

    fn insert(&self, entry: &Entry, message: &[u8]) -> Result<bool, QueueError> {
        self.store_new(entry, message)
    }

    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.read_body(id)
    }

    fn ids(&self) -> Result<Vec<QueueId>, QueueError> {
        Spool::ids(self)
    }

    fn read(&self, id: &QueueId) -> Result<Option<Queued>, QueueError> {
        Ok(read_entry(&self.meta_path(id))?.map(|entry| Queued {
            entry,
            lease: peek_lease(&self.lease_path(id)),
        }))
    }

    /// Entries removed during the scan are skipped; unreadable records are logged and skipped (the sweep moves
    /// them to `corrupt/`).
    fn scan(&self) -> Result<Vec<Queued>, QueueError> {
        let mut queued = Vec::new();
        for id in Spool::ids(self)? {
            match self.read(&id) {
                Ok(Some(q)) => queued.push(q),
                Ok(None) => {}
                Err(e @ QueueError::Corrupt { .. }) => {
                    tracing::warn!(queue_id = %id, "skipping queue entry: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(queued)
    }

    fn update<T>(
        &self,
        id: &QueueId,
        mut decide: impl FnMut(&Queued) -> Result<(Write, T), QueueError>,
    ) -> Result<T, QueueError> {
        let (mut lock, entry) = self.lock_existing(id)?;
        let stored = Queued {
            lease: lock.lease(),
            entry,
        };
        let (write, value) = decide(&stored)?;
        self.carry_out(lock, &stored.entry, write)?;
        Ok(value)
    }

    /// Oldest first; a cheap look without the lock skips what is not due, the decision is taken again under
    /// it. A failure on one entry is logged (a corrupt record quarantined) and the scan goes on; it is
    /// returned only when nothing was claimed.
    fn claim(
        &self,
        now: DateTime<Utc>,
        max: usize,
        mut decide: impl FnMut(&Queued) -> Write,
    ) -> Result<Vec<Claimed>, QueueError> {
        let backoff = self.options.backoff;
        let mut claimed = Vec::new();
        let mut first_error = None;
        let ids = Spool::ids(self)?;
        let mut not_due = self.not_due.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what is gone (delivered, deleted) so the map never outgrows the queue.
        if not_due.len() > ids.len() {
            let present: std::collections::HashSet<&QueueId> = ids.iter().collect();
            not_due.retain(|id, _| present.contains(id));
        }
        for id in ids {
            if claimed.len() >= max {
                break;
            }
            let path = self.meta_path(&id);
            let stamp = FileStamp::of(&path);
            if let (Some(stamp), Some((seen, until))) = (stamp, not_due.get(&id))
                && *seen == stamp
                && now < *until
            {
                continue;
            }
            match read_entry(&path) {
                Ok(Some(entry)) if entry.is_due(now, &backoff) => {
                    not_due.remove(&id);
                }
                Ok(Some(entry)) => {
                    // Remembered at most five minutes: a safety net should a rewritten record ever carry the
                    // stamp of the one it replaced (a reused inode within one timestamp tick).
                    let until = entry
                        .next_due(&backoff)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC)
                        .min(now + chrono::TimeDelta::minutes(5));
                    if let Some(stamp) = stamp {
                        not_due.insert(id, (stamp, until));
                    }
                    continue;
                }
                Ok(None) => continue,
                Err(e) => {
                    self.note_failure(&id, e, &mut first_error);
                    continue;
                }
            }
            match self.claim_one(&id, &mut decide) {
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
}

impl Spool {
    /// Locks one entry without waiting (someone changing it now is skipped) and carries out the decision.
    fn claim_one(
        &self,
        id: &QueueId,
        decide: &mut impl FnMut(&Queued) -> Write,
    ) -> Result<Option<Claimed>, QueueError> {
        let Some(mut lock) = self.lock(id, false)? else {
            return Ok(None);
        };
        let Some(entry) = read_entry(&self.meta_path(id))? else {
            lock.remove();
            return Ok(None);
        };
        let stored = Queued {
            lease: lock.lease(),
            entry,
        };
        let write = decide(&stored);
        let claimed = match &write {
            Write::Lease(lease) => Some(Claimed {
                entry: stored.entry.clone(),
                lease: lease.clone(),
            }),
            _ => None,
        };
        self.carry_out(lock, &stored.entry, write)?;
        Ok(claimed)
    }

    /// Carries out `write` for the entry locked by `lock` (consumed: released at the end, or removed with
    /// the entry or its lease).
    fn carry_out(
        &self,
        mut lock: super::lock::EntryLock,
        entry: &Entry,
        write: Write,
    ) -> Result<(), QueueError> {
        match write {
            Write::Keep => Ok(()),
            Write::Entry(changed) => self.write_entry(&changed),
            Write::Lease(lease) => lock.set_lease(&self.faults, &lease),
            Write::Release => {
                lock.remove();
                Ok(())
            }
            Write::Remove => self.remove_entry(lock, &entry.id),
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
}
