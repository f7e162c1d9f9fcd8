//! Behaviour of the Maildir store on a real filesystem (temporary directories), including hostile paths and
//! failures injected at every durable step.

mod deliver;
mod many;
mod paths;
mod quota;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Item, MaildirStore};

/// An item of a `deliver_many` batch, without a message id.
fn item<'a>(maildir: &'a str, folder: Option<&'a str>, message: &'a [u8]) -> Item<'a> {
    Item {
        maildir,
        folder,
        message,
        id: None,
    }
}

/// A scratch area holding the mail base `vmail/` and a sibling `outside/` that no delivery may touch.
struct Scratch {
    _dir: tempfile::TempDir,
    base: PathBuf,
    outside: PathBuf,
    store: MaildirStore,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("vmail");
    let outside = dir.path().join("outside");
    fs::create_dir(&base).unwrap();
    fs::create_dir(&outside).unwrap();
    let store = MaildirStore::new(&base, "mx.example.test");
    Scratch {
        _dir: dir,
        base,
        outside,
        store,
    }
}

/// Permission bits of a path (not following a final symlink).
fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sorted names in a directory; empty when it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every path under `dir`, recursively (symlinks not followed).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for name in names(dir) {
        let path = dir.join(name);
        out.push(path.clone());
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(tree(&path));
        }
    }
    out
}
