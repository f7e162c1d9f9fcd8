//! What can go wrong while delivering into a Maildir, split by what the SMTP session must answer.

use std::io;
use std::path::PathBuf;

/// A failed Maildir operation. Every message is one line naming the path (or the refused input) so it can go
/// straight into the transaction's log line; [`DeliverError::temporary`] tells the session whether to answer
/// `451 4.3.0` (try again later) or a permanent `5xx`.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The mailbox row's `maildir` is not a safe relative path under the mail base (absolute, `..`, NUL,
    /// control characters, empty or too long). Retrying cannot help: permanent.
    #[error("refusing maildir path {path:?}: {reason}")]
    BadPath {
        /// The refused value, as given (rendered escaped, so it stays one line).
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The folder name is not one this module will turn into a Maildir++ directory. Permanent.
    #[error("refusing mail folder {folder:?}: {reason}")]
    BadFolder {
        /// The refused folder name, as given.
        folder: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A directory on the way is a symlink that leads outside the mail base. Refused as a security matter,
    /// permanently: retrying would only repeat the escape attempt.
    #[error("{} leads to {}, outside the mail base {}", path.display(), target.display(), base.display())]
    Escapes {
        /// The symlink found under the base.
        path: PathBuf,
        /// Where it resolves to.
        target: PathBuf,
        /// The canonical mail base.
        base: PathBuf,
    },
    /// Something that must be a directory is a file (or another non-directory). The admin can fix the store,
    /// so the sender is asked to retry: temporary.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// A filesystem call failed (disk full, I/O error, permissions, a dangling symlink). Temporary: the
    /// message was not accepted and the sender keeps it.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "sync", "move into new/", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl DeliverError {
    /// True when the failure may go away by itself or by an admin's fix (disk full, I/O error, a broken
    /// store layout): the session answers `451 4.3.0` and the sending MTA retries, so nothing is lost.
    /// False for a refused path or folder, which is answered with a permanent `5xx`.
    pub fn temporary(&self) -> bool {
        match self {
            DeliverError::BadPath { .. }
            | DeliverError::BadFolder { .. }
            | DeliverError::Escapes { .. } => false,
            DeliverError::NotADirectory { .. } | DeliverError::Io { .. } => true,
        }
    }

    /// Builds a closure that wraps an `io::Error` with the action and path, for `map_err`.
    pub(super) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| DeliverError::Io {
            action,
            path,
            source,
        }
    }
}
