//! Between queue rows and entries: parsing a record, the lease columns, and when a row is due.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::{DatabaseStorage, Fail};
use crate::smtp::queue::backoff::later;
use crate::smtp::queue::{Backoff, Entry, Lease, QueueError};
use crate::store::{QueueLeaseRow, QueueRow, QueueUpdate, Tx};

/// The record of a row; a record that does not parse, or names another id, is outside damage.
pub(super) fn entry_of(row: &QueueRow) -> Result<Entry, QueueError> {
    let corrupt = |reason: String| QueueError::Corrupt {
        path: PathBuf::from(format!("mailctl_queue/{}", row.id)),
        reason,
    };
    let entry: Entry = serde_json::from_str(&row.record).map_err(|e| corrupt(e.to_string()))?;
    if entry.id.as_str() != row.id {
        return Err(corrupt(format!("the record names entry {}", entry.id)));
    }
    Ok(entry)
}

/// The lease columns as a [`Lease`].
pub(super) fn lease_of(row: &QueueLeaseRow) -> Lease {
    Lease {
        holder: row.holder.clone(),
        claim: u64::try_from(row.claim).unwrap_or(0),
        pid: u32::try_from(row.pid).unwrap_or(0),
        expires: row.expires,
    }
}

/// A [`Lease`] as lease columns.
pub(super) fn lease_row(lease: &Lease) -> QueueLeaseRow {
    QueueLeaseRow {
        holder: lease.holder.clone(),
        claim: i64::try_from(lease.claim).unwrap_or(i64::MAX),
        pid: i64::from(lease.pid),
        expires: lease.expires,
    }
}

/// When a delivery run has work on `entry` next, ignoring hold: at once when it is finished (removal) or
/// owes a DSN, else at its earliest pending recipient's attempt or, if sooner, when the delay warning falls
/// due. Claims re-check [`Entry::is_due`]; this only has to be no later than that turns true.
pub(super) fn due_at(entry: &Entry, backoff: &Backoff) -> DateTime<Utc> {
    if entry.is_finished() || !entry.unnotified_failures().is_empty() {
        return entry.created;
    }
    let mut at = entry.next_attempt().unwrap_or(entry.created);
    if !entry.delay_warning_sent && !entry.sender.is_empty() {
        at = at.min(later(entry.created, backoff.warn_after));
    }
    at
}

impl DatabaseStorage {
    /// Writes `entry` and `lease` back to the locked row, with `next_attempt` computed from both.
    pub(super) async fn write(
        &self,
        tx: &mut Tx,
        entry: &Entry,
        lease: Option<&QueueLeaseRow>,
    ) -> Result<(), Fail> {
        let record = serde_json::to_string(entry).map_err(|e| QueueError::Corrupt {
            path: PathBuf::from(format!("mailctl_queue/{}", entry.id)),
            reason: e.to_string(),
        })?;
        let due = due_at(entry, &self.options.backoff);
        let next_attempt = lease.map_or(due, |l| due.max(l.expires));
        let update = QueueUpdate {
            record: &record,
            hold: entry.hold,
            next_attempt,
            lease,
        };
        tx.queue_update(entry.id.as_str(), &update).await?;
        Ok(())
    }
}
