//! The three steps that make a delivery durable, each cleaning up after itself when it fails: write and fsync
//! the message in `tmp/`, rename it into `new/`, fsync a directory. Test builds can make any step fail on
//! demand ([`fault`]) to prove that no stray file is left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::DeliverError;
pub(super) use fault::Step;

/// Writes `message` to the new file `path` (mode 0600, `create_new` so an existing file, or a planted symlink,
/// is never reused) and fsyncs it. On failure after the file was created, the file is removed again.
pub(super) fn write_synced(path: &Path, message: &[u8]) -> Result<(), DeliverError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(DeliverError::io("create", path))?;
    let written = fault::check(Step::Write)
        .and_then(|()| file.write_all(message))
        .map_err(DeliverError::io("write", path))
        .and_then(|()| {
            fault::check(Step::SyncFile)
                .and_then(|()| file.sync_all())
                .map_err(DeliverError::io("sync", path))
        });
    if written.is_err() {
        drop(file);
        remove_quietly(path);
    }
    written
}

/// Renames the synced file from `tmp/` into `new/`; atomic, so readers see all of the message or none. On
/// failure the file in `tmp/` is removed.
pub(super) fn move_into_new(tmp: &Path, new: &Path) -> Result<(), DeliverError> {
    let moved = fault::check(Step::Rename)
        .and_then(|()| fs::rename(tmp, new))
        .map_err(DeliverError::io("move into new/", tmp));
    if moved.is_err() {
        remove_quietly(tmp);
    }
    moved
}

/// Fsyncs a directory, making the entries created, renamed or removed in it so far durable, whoever made them.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    fault::check(Step::SyncDir)?;
    File::open(dir)?.sync_all()
}

/// Removes a file we created and no longer want. Failure is ignored: the caller is already reporting a more
/// useful error, and Dovecot removes files left in `tmp/` for more than 36 hours.
pub(super) fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Failure injection for tests: a thread may ask that one step fail with a "disk full" error.
#[cfg(test)]
pub(super) mod fault {
    use std::cell::Cell;
    use std::io;

    /// A step that can be made to fail.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Step {
        Write,
        SyncFile,
        Rename,
        SyncDir,
    }

    thread_local! {
        static FAIL_AT: Cell<Option<Step>> = const { Cell::new(None) };
        static DIR_SYNCS: Cell<usize> = const { Cell::new(0) };
    }

    /// How many directory fsyncs this thread has attempted so far.
    pub fn dir_syncs() -> usize {
        DIR_SYNCS.with(Cell::get)
    }

    /// Makes `step` fail on this thread from now on (`None`: nothing fails).
    pub fn fail_at(step: Option<Step>) {
        FAIL_AT.with(|cell| cell.set(step));
    }

    /// The injected error when `step` is the one chosen to fail.
    pub fn check(step: Step) -> io::Result<()> {
        if step == Step::SyncDir {
            DIR_SYNCS.with(|n| n.set(n.get() + 1));
        }
        if FAIL_AT.with(Cell::get) == Some(step) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("injected failure at {step:?}"),
            ));
        }
        Ok(())
    }
}

/// Without tests every step simply goes ahead.
#[cfg(not(test))]
mod fault {
    /// A step that tests can make fail.
    pub enum Step {
        Write,
        SyncFile,
        Rename,
        SyncDir,
    }

    /// Always succeeds outside tests.
    #[inline(always)]
    pub fn check(_step: Step) -> std::io::Result<()> {
        Ok(())
    }
}
