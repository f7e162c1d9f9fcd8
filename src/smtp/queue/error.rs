//! What can go wrong in the outbound queue. Every message is one line naming the path or the entry, so it can go
//! straight into a log line, an SMTP reply's log context or `mailctl queue`'s `error:` line.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::id::QueueId;
use crate::error::Error;

/// A failed queue operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A filesystem call failed (disk full, I/O error, permissions). The operation did not happen; for
    /// `enqueue` the SMTP session answers `451 4.3.0` and the client keeps the message.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "sync", "rename", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A metadata record or lease file exists but cannot be understood. Records are only ever replaced by an
    /// atomic rename of an fsynced file, so this means outside damage; the spool moves such entries to
    /// `corrupt/` for the admin instead of guessing.
    #[error("corrupt queue record {}: {reason}", path.display())]
    Corrupt {
        /// The unreadable file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// No entry with this id is queued (it may have been delivered and removed meanwhile).
    #[error("queue entry {0} does not exist")]
    NotFound(QueueId),
    /// The text given as a queue id is not one (ids are 24 lowercase hex digits); also keeps an admin's
    /// argument from ever naming a path outside the spool.
    #[error("invalid queue id {0:?}: expected 24 lowercase hex digits")]
    BadId(String),
    /// The entry is leased by a delivering process, so it cannot be removed now.
    #[error("queue entry {id} is being delivered by process {pid} (lease until {}); try again later", until.to_rfc3339())]
    Busy {
        /// The entry.
        id: QueueId,
        /// The process holding the lease (as seen from its own pid namespace).
        pid: u32,
        /// When the lease runs out if it is not renewed.
        until: DateTime<Utc>,
    },
    /// A message with this id is queued already (an id given to [`super::Intake::enqueue_as`] collided).
    #[error("queue entry {0} exists already")]
    Taken(QueueId),
    /// The caller's input cannot be queued (no recipients, an address with a line break, ...).
    #[error("cannot queue message: {0}")]
    Invalid(String),
}

impl QueueError {
    /// Builds a closure that wraps an `io::Error` with the action and path, for `map_err`.
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| QueueError::Io {
            action,
            path,
            source,
        }
    }

    /// True when retrying later may work (I/O trouble, a busy entry): the SMTP session answers `451` rather
    /// than a permanent `5xx`, and `mailctl queue` suggests trying again.
    pub fn temporary(&self) -> bool {
        matches!(
            self,
            QueueError::Io { .. } | QueueError::Busy { .. } | QueueError::Taken(_)
        )
    }
}

impl From<QueueError> for Error {
    /// Maps queue failures onto the crate's exit codes: a missing entry is "not found", a bad id is a usage
    /// error, file trouble is a file error, everything else is a refusal.
    fn from(err: QueueError) -> Self {
        match err {
            // The message already reads "cannot <action> <path>: <reason>".
            QueueError::Io { .. } => Error::Refused(format!("queue: {err}")),
            QueueError::NotFound(id) => Error::not_found("queue entry", id),
            QueueError::BadId(_) | QueueError::Invalid(_) => Error::Usage(err.to_string()),
            QueueError::Corrupt { .. } | QueueError::Busy { .. } | QueueError::Taken(_) => {
                Error::Refused(err.to_string())
            }
        }
    }
}
