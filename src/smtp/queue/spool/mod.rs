//! The spool directory storage of the outbound queue (the default): [`Spool`] is the queue engine's
//! [`Storage`](crate::smtp::queue::Storage) over a directory, [`SpoolQueue`] the engine over it.
//!
//! ## Layout
//!
//! ```text
//! <spool>/msg/<id>.eml     the message, exactly as it will be sent; written once, never changed
//! <spool>/msg/<id>.json    the metadata record (an Entry as JSON); replaced atomically, never edited
//! <spool>/lease/<id>       the entry's lock file and current lease (see lock.rs)
//! <spool>/owner/<token>    one per open spool, flock-ed while its process lives
//! <spool>/tmp/<token>.*    files being written by that owner
//! <spool>/corrupt/         records that could not be read, moved aside for the admin
//! ```
//!
//! Body and record sit in one directory so one fsync of `msg/` makes both names durable; the record is the
//! entry's commit point (an entry exists exactly when `msg/<id>.json` does).
//!
//! ## Enqueue
//! 1. write `tmp/<token>.<id>.eml` and fsync it;
//! 2. write `tmp/<token>.<id>.json` and fsync it;
//! 3. hard-link the body to `msg/<id>.eml` (a link never replaces, so this also proves the id unused);
//! 4. rename the record to `msg/<id>.json` (the commit point);
//! 5. drop the temporary body name;
//! 6. fsync `msg/`, shared between concurrent enqueues (group commit, see `commit.rs`).
//!
//! Only then does `enqueue` return, and the SMTP session answer `250`. If the fsync fails, the entry is
//! removed again and the error returned, so the client (told to retry) does not get it delivered twice.
//!
//! ## Updates and removal
//! A record update (results, notices, hold, flush) writes a new record in `tmp/`, fsyncs it, renames it over
//! the old one and fsyncs `msg/`, all under the entry lock: readers see the old record or the new one, never
//! a mixture, and the results are durable before `record` returns. Removal unlinks the record first (the
//! commit point), fsyncs `msg/`, then unlinks the body and the lease.
//!
//! ## Crash recovery ([`Spool::sweep`], run by [`Spool::open`])
//! After a `kill -9` at any point the spool holds one of these states, and the sweep (which only ever touches
//! files of owners whose `flock` is gone) resolves it:
//! - files in `tmp/` of a dead owner: half-written or not yet renamed, never acknowledged: removed.
//! - `msg/<id>.eml` without its record and no live enqueue of that id in progress: an enqueue that died
//!   between link and rename (never acknowledged), or a removal that died after its commit point: removed.
//! - `msg/<id>.json` without its body, or a record that does not parse: cannot come from any crash of this
//!   code on a sane filesystem; moved to `corrupt/` and logged, never silently dropped.
//! - a lease of a dead owner, or one past its expiry: taken over by the next claim; a lease file whose entry
//!   is gone: removed.
//! - an entry with nothing left to do (its removal died before the commit point): removed by the next claim.
//!
//! A record update that died before its rename leaves the old record: results not yet recorded are simply
//! attempted again (delivery is at-least-once: a crash between the remote `250` and `record` means one
//! duplicate). One that died after the rename keeps the new record. Results are merged into the current
//! record and only ever move a recipient from pending to final, so a delivered recipient never becomes
//! pending again.
//!
//! The spool must be on a local filesystem (`flock`, `link` and `rename` semantics); NFS is not supported.
//! All methods block: async callers use `spawn_blocking`.

mod commit;
mod enqueue;
mod files;
mod lock;
mod storage;
mod sweep;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::PathBuf;

use self::commit::DirSync;
use self::files::{Faults, Step, ensure_dir, read_entry, remove_quietly, write_synced};
use self::lock::{EntryLock, Owner};
use super::{Backoff, Engine, Entry, QueueError, QueueId};
pub use sweep::Swept;

/// The outbound queue over a spool directory.
pub type SpoolQueue = Engine<Spool>;

impl SpoolQueue {
    /// Opens the queue in the spool directory `root` (see [`Spool::open`]).
    pub fn open(root: impl Into<PathBuf>, options: SpoolOptions) -> Result<SpoolQueue, QueueError> {
        Ok(Engine::new(Spool::open(root, options)?))
    }

    /// Cleans up after dead owners ([`Spool::sweep`]).
    pub fn sweep(&self) -> Result<Swept, QueueError> {
        self.storage().sweep()
    }

    /// The fault switch of the spool, for tests.
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &Faults {
        self.storage().faults()
    }

    /// Directory fsyncs run so far, for the group-commit test.
    #[cfg(test)]
    pub(crate) fn dir_sync_rounds(&self) -> usize {
        self.storage().dir_sync_rounds()
    }
}

/// The directories inside a spool, in the order [`Spool::open`] creates them (the start-up checks verify that
/// the daemon's user can write each).
pub const SUBDIRS: [&str; 5] = ["tmp", "msg", "lease", "owner", "corrupt"];

/// How a spool behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolOptions {
    /// The retry schedule applied by `record`, and the delay-warning age.
    pub backoff: Backoff,
}

/// The spool directory: see the module documentation for the layout and the crash guarantees. Several
/// processes (and threads) may open the same directory at once.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    msg: PathBuf,
    leases: PathBuf,
    owners: PathBuf,
    corrupt: PathBuf,
    options: SpoolOptions,
    owner: Owner,
    msg_sync: DirSync,
    faults: Faults,
    /// Entries a claim scan found not due: the record's file as it was then, and until when it is not due. A
    /// later scan skips such an entry with one `stat` instead of reading and parsing its record, until its time
    /// comes or the file changes (every change, by any process, renames a new file into place). Without it a
    /// backlog of deferred mail made every claim read every record.
    not_due: std::sync::Mutex<
        std::collections::HashMap<QueueId, (FileStamp, chrono::DateTime<chrono::Utc>)>,
    >,
}

/// What identifies one version of a record file: a replaced file has another inode (or another time or size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    inode: u64,
    modified: (i64, i64),
    size: u64,
}

impl FileStamp {
    /// The stamp of the file at `path`, None when it cannot be read (gone, or an error the read that follows
    /// reports).
    pub(super) fn of(path: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).ok()?;
        Some(FileStamp {
            inode: m.ino(),
            modified: (m.mtime(), m.mtime_nsec()),
            size: m.size(),
        })
    }
}

impl Spool {
    /// Opens (creating if needed, mode 0700) the spool at `root`, registers this process as an owner and
    /// sweeps what dead owners left behind.
    pub fn open(root: impl Into<PathBuf>, options: SpoolOptions) -> Result<Spool, QueueError> {
        options.backoff.validate().map_err(QueueError::Invalid)?;
        let root = root.into();
        let [tmp, msg, leases, owners, corrupt] = SUBDIRS.map(|d| root.join(d));
        for dir in [&root, &tmp, &msg, &leases, &owners, &corrupt] {
            ensure_dir(dir)?;
        }
        let owner = Owner::register(&tmp, &owners)?;
        let spool = Spool {
            msg_sync: DirSync::new(msg.clone()),
            root,
            tmp,
            msg,
            leases,
            owners,
            corrupt,
            options,
            owner,
            faults: Faults::default(),
            not_due: Default::default(),
        };
        spool.sweep()?;
        Ok(spool)
    }

    fn body_path(&self, id: &QueueId) -> PathBuf {
        self.msg.join(format!("{id}.eml"))
    }

    fn meta_path(&self, id: &QueueId) -> PathBuf {
        self.msg.join(format!("{id}.json"))
    }

    fn lease_path(&self, id: &QueueId) -> PathBuf {
        self.leases.join(id.as_str())
    }

    fn tmp_path(&self, id: &QueueId, ext: &str) -> PathBuf {
        self.tmp.join(format!("{}.{id}.{ext}", self.owner.token))
    }

    /// The ids of every record in `msg/`, oldest first.
    fn ids(&self) -> Result<Vec<QueueId>, QueueError> {
        let mut ids = Vec::new();
        let dir = fs::read_dir(&self.msg).map_err(QueueError::io("read directory", &self.msg))?;
        for item in dir {
            let item = item.map_err(QueueError::io("read directory", &self.msg))?;
            let name = item.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(id) = QueueId::parse(stem) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Locks an entry (see [`lock::lock_entry`]).
    fn lock(&self, id: &QueueId, wait: bool) -> Result<Option<EntryLock>, QueueError> {
        lock::lock_entry(&self.lease_path(id), wait)
    }

    /// Locks an entry and reads its record; a missing record is [`QueueError::NotFound`] (and the lock file
    /// that locking created is removed again).
    fn lock_existing(&self, id: &QueueId) -> Result<(EntryLock, Entry), QueueError> {
        let Some(lock) = self.lock(id, true)? else {
            return Err(QueueError::NotFound(id.clone()));
        };
        match read_entry(&self.meta_path(id))? {
            Some(entry) => Ok((lock, entry)),
            None => {
                lock.remove();
                Err(QueueError::NotFound(id.clone()))
            }
        }
    }

    /// Fsyncs `msg/`, sharing the fsync with concurrent callers.
    fn sync_msg(&self) -> Result<(), QueueError> {
        self.msg_sync
            .sync(&self.faults)
            .map_err(QueueError::io("sync", &self.msg))
    }

    /// Durably replaces the record of `entry` (caller holds the entry lock): write and fsync in `tmp/`,
    /// rename over the old record, fsync `msg/`.
    fn write_entry(&self, entry: &Entry) -> Result<(), QueueError> {
        let tmp = self.tmp_path(&entry.id, "json");
        let path = self.meta_path(&entry.id);
        let json = serde_json::to_vec_pretty(entry).map_err(|e| QueueError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_synced(&self.faults, &tmp, &json, (Step::WriteMeta, Step::SyncMeta))?;
        let renamed = self
            .faults
            .check(Step::RenameMeta)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(QueueError::io("rename", &tmp));
        if renamed.is_err() && !self.faults.crashed() {
            remove_quietly(&tmp);
        }
        renamed?;
        self.sync_msg()
    }

    /// Removes an entry (caller holds its lock, consumed here): record first (the commit point), fsync,
    /// then body and lock file.
    fn remove_entry(&self, lock: EntryLock, id: &QueueId) -> Result<(), QueueError> {
        let meta = self.meta_path(id);
        self.faults
            .check(Step::RemoveMeta)
            .and_then(|()| files::remove_if_present(&meta))
            .map_err(QueueError::io("remove", &meta))?;
        self.sync_msg()?;
        // The entry is gone now; a body left behind is found by the next sweep, so this is no failure.
        let body = self.body_path(id);
        let removed = self
            .faults
            .check(Step::RemoveBody)
            .and_then(|()| files::remove_if_present(&body));
        if let Err(e) = removed {
            if self.faults.crashed() {
                return Err(QueueError::io("remove", &body)(e));
            }
            tracing::warn!(path = %body.display(), "cannot remove queued message body: {e}");
        }
        lock.remove();
        Ok(())
    }

    /// The fault switch, for tests.
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Directory fsyncs run so far, for the group-commit test.
    #[cfg(test)]
    pub(crate) fn dir_sync_rounds(&self) -> usize {
        self.msg_sync
            .rounds
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Spool {
    /// Unregisters the owner, so its leases are free at once; after a simulated crash the owner file stays
    /// (unlocked), exactly as a `kill -9` leaves it.
    fn drop(&mut self) {
        if !self.faults.crashed() {
            self.owner.unregister();
        }
    }
}
