//! The file operations the spool is built from: write-and-fsync a new file, read a record, remove quietly;
//! and, in test builds, a switch that makes a chosen step fail or "crash" (fail and skip every cleanup, as a
//! `kill -9` would) so the tests can check what recovery finds.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::smtp::queue::{Entry, QueueError, RECORD_VERSION};

/// A step that test builds can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Step {
    /// Writing the message body into `tmp/`.
    WriteBody,
    /// Fsyncing the body.
    SyncBody,
    /// Writing a metadata record into `tmp/`.
    WriteMeta,
    /// Fsyncing the record.
    SyncMeta,
    /// Linking the body into `msg/` (claims the id).
    LinkBody,
    /// Renaming the record into `msg/` (the commit point of an enqueue or update).
    RenameMeta,
    /// Fsyncing `msg/`.
    SyncDir,
    /// Removing a record from `msg/` (the commit point of a removal).
    RemoveMeta,
    /// Removing a body from `msg/`.
    RemoveBody,
    /// Writing a lease.
    WriteLease,
}

/// Creates a directory (mode 0700) if it is missing.
pub(super) fn ensure_dir(path: &Path) -> Result<(), QueueError> {
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
    {
        Ok(()) if path.is_dir() => Ok(()),
        Ok(()) => Err(QueueError::Io {
            action: "use directory",
            path: path.to_path_buf(),
            source: io::Error::new(ErrorKind::NotADirectory, "not a directory"),
        }),
        Err(e) => Err(QueueError::io("create directory", path)(e)),
    }
}

/// Opens a new file for writing: mode 0600, and `create_new` so an existing file or a planted symlink is
/// never reused.
pub(super) fn create_new(path: &Path) -> Result<File, QueueError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(QueueError::io("create", path))
}

/// Reads and parses a metadata record; `None` when it does not exist (removed meanwhile).
pub(super) fn read_entry(path: &Path) -> Result<Option<Entry>, QueueError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(QueueError::io("read", path)(e)),
    };
    let corrupt = |reason: String| QueueError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if entry.version > RECORD_VERSION {
        return Err(corrupt(format!(
            "record version {} is newer than this mailctl",
            entry.version
        )));
    }
    let expected = path.file_stem().and_then(|s| s.to_str());
    if expected != Some(entry.id.as_str()) {
        return Err(corrupt(format!("record is for entry {}", entry.id)));
    }
    Ok(Some(entry))
}

/// Removes a file we no longer want; failures are ignored because the caller already reports a more useful
/// error, and whatever is left is found by the next sweep.
pub(super) fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Removes a file that may already be gone.
pub(super) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fault injection: a no-op outside tests.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    state: std::sync::Mutex<FaultState>,
    #[cfg(test)]
    crashed: std::sync::atomic::AtomicBool,
}

/// What the test asked for.
#[cfg(test)]
#[derive(Debug, Default)]
struct FaultState {
    /// The step that fails, and whether it "crashes" (skips cleanup).
    at: Option<(Step, bool)>,
    /// Extra time every directory fsync takes, so group-commit tests see overlapping enqueues.
    sync_delay: std::time::Duration,
}

impl Faults {
    /// The injected error when `step` is the chosen one; outside tests always `Ok`.
    #[inline]
    pub(super) fn check(&self, step: Step) -> io::Result<()> {
        #[cfg(test)]
        {
            let (delay, at) = {
                let state = self
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (state.sync_delay, state.at)
            };
            if step == Step::SyncDir {
                std::thread::sleep(delay);
            }
            if let Some((at, crash)) = at
                && at == step
            {
                if crash {
                    self.crashed
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                return Err(io::Error::new(
                    ErrorKind::StorageFull,
                    format!("injected failure at {step:?}"),
                ));
            }
        }
        let _ = step;
        Ok(())
    }

    /// True after an injected crash: the "dead" process must not clean up anything.
    #[inline]
    pub(super) fn crashed(&self) -> bool {
        #[cfg(test)]
        {
            self.crashed.load(std::sync::atomic::Ordering::SeqCst)
        }
        #[cfg(not(test))]
        false
    }

    /// Makes `step` fail from now on; with `crash`, every cleanup after it is skipped too.
    #[cfg(test)]
    pub(crate) fn fail_at(&self, step: Option<Step>, crash: bool) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.at = step.map(|s| (s, crash));
    }

    /// Marks the owner as killed: nothing is cleaned up any more, and dropping the spool leaves its owner
    /// file behind unlocked, as `kill -9` would.
    #[cfg(test)]
    pub(crate) fn kill(&self) {
        self.crashed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every directory fsync take `delay` longer.
    #[cfg(test)]
    pub(crate) fn set_sync_delay(&self, delay: std::time::Duration) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.sync_delay = delay;
    }
}

/// Writes `bytes` to the new file `path` and fsyncs it; on failure the file is removed again (unless a test
/// crash is being simulated).
pub(super) fn write_synced(
    faults: &Faults,
    path: &Path,
    bytes: &[u8],
    steps: (Step, Step),
) -> Result<(), QueueError> {
    let mut file = create_new(path)?;
    let written = faults
        .check(steps.0)
        .and_then(|()| file.write_all(bytes))
        .map_err(QueueError::io("write", path))
        .and_then(|()| {
            faults
                .check(steps.1)
                .and_then(|()| file.sync_all())
                .map_err(QueueError::io("sync", path))
        });
    if written.is_err() && !faults.crashed() {
        drop(file);
        remove_quietly(path);
    }
    written
}
