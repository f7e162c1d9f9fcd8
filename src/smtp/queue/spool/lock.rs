//! Locks and leases of the spool.
//!
//! **Owners.** Every open [`super::Spool`] registers as an owner: a file `owner/<token>` on which it holds an
//! exclusive `flock` for as long as it lives. The kernel drops that lock when the process dies, however it
//! dies, so "can I lock `owner/<token>`?" answers "is that process gone?" exactly, without trusting pids
//! (which another pid namespace may reuse). Temporary files carry their owner's token in their name.
//!
//! **Entry locks.** `lease/<id>` is both the entry's lock file and its lease record. Every change to an entry
//! (claim, record, note, release, complete, and the admin operations) runs under an exclusive `flock` on it,
//! held for a few file operations only, so changes to one entry are serialized across processes and a
//! read-modify-write of the record never loses an update. The lease inside (JSON: holder token, claim number,
//! pid, expiry) is what keeps other deliverers away for the whole delivery; it is written without fsync,
//! because only a crash of the whole machine can lose it and then its holder is gone too.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::files::{Faults, Step, remove_quietly};
use crate::smtp::queue::{Lease, QueueError};

/// How often to retry when the lock file was replaced between open and lock.
const LOCK_RETRIES: usize = 16;

/// An exclusive lock on one entry, released when dropped.
#[derive(Debug)]
pub(super) struct EntryLock {
    file: File,
    path: PathBuf,
}

/// Locks `path`: blocking when `wait`, else `None` when someone else holds it. The file is created if
/// missing; after locking, the lock is only kept if the file still is the one at `path` (someone holding the
/// lock may have removed it, and a lock on a removed file excludes nobody).
pub(super) fn lock_entry(path: &Path, wait: bool) -> Result<Option<EntryLock>, QueueError> {
    for _ in 0..LOCK_RETRIES {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(QueueError::io("open lock", path))?;
        if wait {
            file.lock().map_err(QueueError::io("lock", path))?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(QueueError::io("lock", path)(e)),
            }
        }
        let held = file.metadata().map_err(QueueError::io("stat", path))?;
        match fs::symlink_metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                return Ok(Some(EntryLock {
                    file,
                    path: path.to_path_buf(),
                }));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(QueueError::io("stat", path)(e)),
        }
    }
    Err(QueueError::Io {
        action: "lock",
        path: path.to_path_buf(),
        source: std::io::Error::other("lock file keeps being replaced"),
    })
}

impl EntryLock {
    /// The lease recorded in the lock file; `None` when there is none or it cannot be read (a claimer that
    /// died mid-write, or a machine crash, leaves such a file: its holder is gone either way).
    pub(super) fn lease(&mut self) -> Option<Lease> {
        let mut text = String::new();
        self.file.seek(SeekFrom::Start(0)).ok()?;
        self.file.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes `lease` into the lock file.
    pub(super) fn set_lease(&mut self, faults: &Faults, lease: &Lease) -> Result<(), QueueError> {
        let json = serde_json::to_vec(lease).map_err(|e| QueueError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        faults
            .check(Step::WriteLease)
            .and_then(|()| self.file.set_len(0))
            .and_then(|()| self.file.write_all_at(&json, 0))
            .map_err(QueueError::io("write lease", &self.path))
    }

    /// Removes the lock file (and with it any lease) while still holding the lock, then unlocks.
    pub(super) fn remove(self) {
        remove_quietly(&self.path);
    }
}

/// Reads a lease without locking, for listings; a lease being rewritten right now reads as none.
pub(super) fn peek_lease(path: &Path) -> Option<Lease> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// This process's registration as an owner: the token and the locked `owner/<token>` file.
#[derive(Debug)]
pub(super) struct Owner {
    /// Random token naming this open spool in file names and leases.
    pub(super) token: String,
    /// Where the locked owner file is.
    path: PathBuf,
    /// The open, locked owner file; dropping it unlocks.
    _file: File,
}

impl Owner {
    /// Registers a new owner: creates and locks `tmp/<token>.owner`, then renames it into `owner/` so that
    /// nobody ever sees it there unlocked. A sweeper that locked the file in the instant between create and
    /// lock has removed it; then the rename fails and a new token is tried.
    pub(super) fn register(tmp: &Path, owners: &Path) -> Result<Owner, QueueError> {
        let mut last = None;
        for _ in 0..LOCK_RETRIES {
            let token = format!("{:016x}", rand::random::<u64>());
            let staging = tmp.join(format!("{token}.owner"));
            let file = super::files::create_new(&staging)?;
            file.lock().map_err(QueueError::io("lock", &staging))?;
            let path = owners.join(&token);
            match fs::rename(&staging, &path) {
                Ok(()) => {
                    return Ok(Owner {
                        token,
                        path,
                        _file: file,
                    });
                }
                Err(e) => {
                    remove_quietly(&staging);
                    last = Some(QueueError::io("register owner", &path)(e));
                }
            }
        }
        Err(last.unwrap_or_else(|| QueueError::Invalid("cannot register owner".into())))
    }

    /// Unregisters on a clean close: removes the owner file while still holding its lock.
    pub(super) fn unregister(&self) {
        remove_quietly(&self.path);
    }
}

/// Whether the owner with `token` is alive: its owner file exists and someone holds its lock. When the lock
/// can be taken, its process is dead and the file is removed (while locked, so nobody is misled). Errors
/// other than "missing" count as alive: then only the lease expiry frees its entries.
pub(super) fn owner_alive(owners: &Path, token: &str) -> bool {
    if token.is_empty() || token.contains('/') || token.starts_with('.') {
        return false;
    }
    let path = owners.join(token);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => return e.kind() != ErrorKind::NotFound,
    };
    match file.try_lock() {
        Ok(()) => {
            remove_quietly(&path);
            false
        }
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(_)) => true,
    }
}

/// Whether a lock file named `*.owner` in `tmp/` belongs to a live process being registered right now.
pub(super) fn staging_owner_alive(path: &Path) -> bool {
    match File::open(path) {
        Ok(file) => matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}
