//! The queue engine: every rule of the outbound queue, once, over a [`Storage`]. What is due, who holds a
//! claim and when it may be taken over, what delivery results do to an entry, when an entry goes and when an
//! admin's change is refused are decided here; the spool and the database only lock, read and write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backoff::later;
use super::storage::{Storage, Write};
use super::{
    Admin, Claimed, Completion, Delivery, Entry, Envelope, Intake, Lease, Notice, QueueError,
    QueueId, Queued, RecipientResult, Recorded, Status,
};

/// Tries with a fresh id when the random one is taken (practically never).
const ID_ATTEMPTS: usize = 4;

/// The outbound queue over one storage; implements [`Intake`], [`Delivery`] and [`Admin`]. Open one per
/// process and share it (`Arc`): its claims are numbered per handle.
#[derive(Debug)]
pub struct Engine<S> {
    storage: S,
    /// Claims made by this handle, numbering the leases.
    claims: AtomicU64,
}

impl<S: Storage> Engine<S> {
    /// The engine over `storage`.
    pub fn new(storage: S) -> Engine<S> {
        Engine {
            storage,
            claims: AtomicU64::new(1),
        }
    }

    /// The storage (for what only one kind has: the spool's sweep, the database node's holder name).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// A new lease of this handle, running out at `expires`.
    fn lease(&self, expires: DateTime<Utc>) -> Lease {
        Lease {
            holder: self.storage.holder().to_string(),
            claim: self.claims.fetch_add(1, Ordering::Relaxed),
            pid: std::process::id(),
            expires,
        }
    }

    /// Changes one entry with `change` and stores it when anything changed; returns it and whether it did.
    fn change(
        &self,
        id: &QueueId,
        change: impl Fn(&mut Entry),
    ) -> Result<(Entry, bool), QueueError> {
        self.storage.update(id, |stored| {
            let mut entry = stored.entry.clone();
            change(&mut entry);
            let changed = entry != stored.entry;
            let write = match changed {
                true => Write::Entry(entry.clone()),
                false => Write::Keep,
            };
            Ok((write, (entry, changed)))
        })
    }
}

/// True when the stored lease is exactly `claimed`'s (expired or not: until someone else claims the entry,
/// a late holder may still finish its claim).
fn holds(lease: Option<&Lease>, claimed: &Claimed) -> bool {
    lease.is_some_and(|l| l.holder == claimed.lease.holder && l.claim == claimed.lease.claim)
}

/// The error for a claim whose lease is no longer the caller's, naming whoever holds the entry now.
fn busy(lease: Option<&Lease>, claimed: &Claimed) -> QueueError {
    let current = lease.unwrap_or(&claimed.lease);
    QueueError::Busy {
        id: claimed.id().clone(),
        pid: current.pid,
        until: current.expires,
    }
}

/// An entry as `queue list` and `show` present it: the lease only while it is live.
fn shown(stored: Queued, now: DateTime<Utc>) -> Queued {
    Queued {
        lease: stored.lease.filter(|l| l.is_live(now)),
        entry: stored.entry,
    }
}

impl<S: Storage> Intake for Engine<S> {
    fn enqueue(
        &self,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<QueueId, QueueError> {
        for _ in 0..ID_ATTEMPTS {
            let id = QueueId::generate(now);
            match self.enqueue_as(&id, envelope, message, now) {
                Err(QueueError::Taken(_)) => continue,
                stored => return stored.map(|()| id),
            }
        }
        Err(QueueError::Invalid("no unused queue id found".into()))
    }

    fn enqueue_as(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let entry = Entry::new(id.clone(), envelope, message.len() as u64, now)?;
        match self.storage.insert(&entry, message)? {
            true => Ok(()),
            false => Err(QueueError::Taken(id.clone())),
        }
    }

    fn withdraw(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError> {
        Admin::delete(self, id, now)
    }

    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.storage.body(id)
    }
}

impl<S: Storage> Delivery for Engine<S> {
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let backoff = *self.storage.backoff();
        self.storage.claim(now, max, |stored| {
            let leased = stored.lease.as_ref();
            if leased.is_some_and(|l| self.storage.lease_live(l, now))
                || !stored.entry.is_due(now, &backoff)
            {
                Write::Keep
            } else if stored.entry.is_finished() {
                Write::Remove
            } else {
                Write::Lease(self.lease(later(now, lease)))
            }
        })
    }

    fn renew(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, QueueError> {
        self.storage.update(claimed.id(), |stored| {
            if !holds(stored.lease.as_ref(), claimed) {
                return Err(busy(stored.lease.as_ref(), claimed));
            }
            let mut renewed = claimed.lease.clone();
            renewed.expires = later(now, lease);
            let claim = Claimed {
                entry: stored.entry.clone(),
                lease: renewed.clone(),
            };
            Ok((Write::Lease(renewed), claim))
        })
    }

    /// Recorded even when the lease was lost meanwhile: results are facts, and [`Entry::apply`] merges
    /// forward only, so a stale report never undoes the new holder's results (dropping it would cause one
    /// more delivery).
    fn record(
        &self,
        claimed: &Claimed,
        results: &[RecipientResult],
        now: DateTime<Utc>,
    ) -> Result<Recorded, QueueError> {
        let backoff = *self.storage.backoff();
        self.storage.update(claimed.id(), |stored| {
            let mut entry = stored.entry.clone();
            let failed = entry.apply(results, now, &backoff);
            let write = match entry != stored.entry {
                true => Write::Entry(entry.clone()),
                false => Write::Keep,
            };
            let recorded = Recorded {
                pending: entry.pending().count(),
                delay_warning_due: entry.delay_warning_due(now, &backoff),
                failed,
                entry,
            };
            Ok((write, recorded))
        })
    }

    fn note(&self, claimed: &Claimed, notice: &Notice) -> Result<Entry, QueueError> {
        self.change(claimed.id(), |entry| entry.note(notice))
            .map(|(entry, _)| entry)
    }

    fn release(&self, claimed: &Claimed) -> Result<(), QueueError> {
        let released = self.storage.update(claimed.id(), |stored| {
            let write = match holds(stored.lease.as_ref(), claimed) {
                true => Write::Release,
                false => Write::Keep,
            };
            Ok((write, ()))
        });
        match released {
            Err(QueueError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// An entry that someone else has claimed meanwhile (this lease ran out and was taken over) is left to
    /// them.
    fn complete(&self, claimed: &Claimed) -> Result<Completion, QueueError> {
        self.storage.update(claimed.id(), |stored| {
            let entry = stored.entry.clone();
            Ok(match stored.lease.as_ref() {
                Some(_) if !holds(stored.lease.as_ref(), claimed) => {
                    (Write::Keep, Completion::Kept(entry))
                }
                _ if entry.is_finished() => (Write::Remove, Completion::Removed(entry)),
                _ => (Write::Release, Completion::Kept(entry)),
            })
        })
    }
}

impl<S: Storage> Admin for Engine<S> {
    fn list(&self, now: DateTime<Utc>) -> Result<Vec<Queued>, QueueError> {
        let stored = self.storage.scan()?;
        Ok(stored.into_iter().map(|q| shown(q, now)).collect())
    }

    fn show(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Queued, QueueError> {
        let stored = self
            .storage
            .read(id)?
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        Ok(shown(stored, now))
    }

    fn flush(&self, id: Option<&QueueId>, now: DateTime<Utc>) -> Result<usize, QueueError> {
        let ids = match id {
            Some(id) => vec![id.clone()],
            None => self.storage.ids()?,
        };
        let mut changed = 0;
        for one in &ids {
            let result = self.change(one, |entry| {
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

    fn hold(&self, id: &QueueId) -> Result<Entry, QueueError> {
        self.change(id, |entry| entry.hold = true)
            .map(|(entry, _)| entry)
    }

    fn release_held(&self, id: &QueueId) -> Result<Entry, QueueError> {
        self.change(id, |entry| entry.hold = false)
            .map(|(entry, _)| entry)
    }

    fn delete(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError> {
        self.storage.update(id, |stored| match &stored.lease {
            Some(l) if l.holder != self.storage.holder() && self.storage.lease_live(l, now) => {
                Err(QueueError::Busy {
                    id: id.clone(),
                    pid: l.pid,
                    until: l.expires,
                })
            }
            _ => Ok((Write::Remove, stored.entry.clone())),
        })
    }
}
