//! Taking back the files of a job that failed for some of its targets, durably.
//!
//! A removal is an entry change in a directory like any other: until that directory is fsynced a crash can
//! undo it, and the message, which the sender was told to retry, would come back as a duplicate. So every
//! directory a file was removed from is fsynced, once per batch, before the jobs are answered.
//!
//! Dovecot may already have seen the message in `new/` and moved it to `cur/` as `<name>:2,<flags>`; then it
//! is removed from there (and both directories are synced, since the move and the removal must both stick).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The directories touched by removals in one batch.
#[derive(Debug, Default)]
pub(super) struct Rollback {
    dirs: BTreeSet<PathBuf>,
}

impl Rollback {
    /// Removes a delivered file (from `new/`, or from `cur/` if it was moved there meanwhile) and remembers
    /// which directories to sync. A file that cannot be removed is logged: it stays delivered although the
    /// sender was told it was not, the one duplicate we cannot prevent.
    pub(super) fn retract(&mut self, path: &Path) {
        match remove(path) {
            Ok(dirs) => self.dirs.extend(dirs),
            Err(e) => tracing::error!(
                path = %path.display(),
                error = %e,
                "cannot take back a message from a failed delivery; it may be delivered twice"
            ),
        }
    }

    /// Fsyncs every directory a file was removed from, making the removals durable.
    pub(super) fn sync(self) {
        for dir in self.dirs {
            if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
                tracing::error!(
                    dir = %dir.display(),
                    error = %e,
                    "cannot sync a directory after taking back a message; a crash could bring it back"
                );
            }
        }
    }
}

/// Removes the file, wherever Dovecot left it; returns the directories whose entries changed.
fn remove(path: &Path) -> io::Result<Vec<PathBuf>> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "message file is gone");
    let new_dir = path.parent().ok_or_else(not_found)?.to_path_buf();
    match fs::remove_file(path) {
        Ok(()) => return Ok(vec![new_dir]),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path.file_name().ok_or_else(not_found)?.to_string_lossy();
    let prefix = format!("{name}:");
    let cur_dir = new_dir.parent().ok_or_else(not_found)?.join("cur");
    for entry in fs::read_dir(&cur_dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            fs::remove_file(entry.path())?;
            return Ok(vec![new_dir, cur_dir]);
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let root = dir.path().to_path_buf();
        (dir, root)
    }

    #[test]
    fn a_file_in_new_is_removed_and_new_is_synced() {
        let (_dir, root) = maildir();
        let file = root.join("new/1.M1P1Q1.host,S=3");
        fs::write(&file, b"abc").unwrap();
        let mut undo = Rollback::default();
        undo.retract(&file);
        assert!(!file.exists());
        assert_eq!(undo.dirs.iter().collect::<Vec<_>>(), [&root.join("new")]);
        undo.sync();
    }

    #[test]
    fn a_file_dovecot_moved_to_cur_is_removed_from_there() {
        let (_dir, root) = maildir();
        let name = "1.M1P1Q7.host,S=3";
        let other = root.join("cur/1.M1P1Q70.host,S=3:2,S");
        fs::write(&other, b"keep").unwrap();
        let moved = root.join(format!("cur/{name}:2,S"));
        fs::write(&moved, b"abc").unwrap();
        let mut undo = Rollback::default();
        undo.retract(&root.join("new").join(name));
        assert!(!moved.exists());
        assert!(other.exists(), "a name sharing a prefix is not touched");
        assert_eq!(undo.dirs.len(), 2);
        undo.sync();
    }

    #[test]
    fn a_file_gone_everywhere_is_only_logged() {
        let (_dir, root) = maildir();
        let mut undo = Rollback::default();
        undo.retract(&root.join("new/missing,S=1"));
        assert!(undo.dirs.is_empty());
    }
}
