//! From a mailbox row's `maildir` (and a folder name) to directories under the mail base, without ever
//! leaving it.
//!
//! The row's value is checked as text first (relative, no `..`, no NUL or control characters, bounded length).
//! Then the directories are walked one component at a time from the canonical base: a real directory is
//! entered, a missing one is created (mode 0700, and its parent fsynced so the new entry survives a crash), and
//! a symlink is followed only if its canonical target stays strictly inside the base. Nothing is created before
//! the component that leads to it has been checked, so a symlinked domain directory pointing at `/etc` cannot
//! make us create even an empty directory there. (Whoever can write into the base can race these checks; that
//! is the mail system itself, which we trust, not IMAP users, who cannot create symlinks.)

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::durable;
use super::error::DeliverError;

/// Longest `maildir` value accepted; real ones are a domain and a local part.
const MAX_PATH_LEN: usize = 1024;
/// The usual filesystem limit on one path component.
const MAX_COMPONENT_LEN: usize = 255;
/// Longest folder name accepted (it becomes one component, with its dot).
const MAX_FOLDER_LEN: usize = 200;
/// How much of a refused value is repeated in the error message.
const SHOWN_LEN: usize = 120;
/// The marker Dovecot and Courier expect in every Maildir++ subfolder.
const FOLDER_MARKER: &str = "maildirfolder";

/// The directories one delivery needs, all resolved and existing.
#[derive(Debug)]
pub(super) struct Target {
    /// The mailbox's Maildir root (INBOX), where `maildirsize` lives.
    pub root: PathBuf,
    /// `tmp/` of the receiving folder.
    pub tmp: PathBuf,
    /// `new/` of the receiving folder.
    pub new: PathBuf,
}

/// Creates whatever is missing below the canonical `base` and returns where a message for this mailbox and
/// folder is written.
pub(super) fn prepare(
    base: &Path,
    rel: &str,
    folder: Option<&str>,
) -> Result<Target, DeliverError> {
    let components = rel_components(rel)?;
    let folder = match folder {
        Some(name) => folder_dir(name)?,
        None => None,
    };
    let mut root = base.to_path_buf();
    for component in components {
        root = enter_or_create(base, &root, component)?;
    }
    let (mut new, mut tmp) = ensure_maildir(base, &root)?;
    if let Some(name) = folder {
        let dir = enter_or_create(base, &root, &name)?;
        (new, tmp) = ensure_maildir(base, &dir)?;
        mark_folder(&dir)?;
    }
    Ok(Target { root, tmp, new })
}

/// The canonical base and the mailbox's existing Maildir root, or `None` when it was never created. Creates
/// nothing: used to measure quota usage.
pub(super) fn find_root(
    base: &Path,
    rel: &str,
) -> Result<Option<(PathBuf, PathBuf)>, DeliverError> {
    let components = rel_components(rel)?;
    let mut dir = base.to_path_buf();
    for component in components {
        match enter(base, &dir, component)? {
            Some(next) => dir = next,
            None => return Ok(None),
        }
    }
    Ok(Some((base.to_path_buf(), dir)))
}

/// Checks a row's `maildir` as text and splits it into components (empty ones from `//` or a trailing `/`
/// dropped).
pub(super) fn rel_components(rel: &str) -> Result<Vec<&str>, DeliverError> {
    let bad = |reason| DeliverError::BadPath {
        path: shown(rel),
        reason,
    };
    if rel.len() > MAX_PATH_LEN {
        return Err(bad("is longer than 1024 bytes"));
    }
    if rel.contains('\0') {
        return Err(bad("contains NUL"));
    }
    if rel.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    if rel.starts_with('/') {
        return Err(bad("is absolute"));
    }
    // Stricter than "no `..` component": no valid domain or local part holds two dots in a row.
    if rel.contains("..") {
        return Err(bad("contains .."));
    }
    let components: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return Err(bad("is empty"));
    }
    if components.contains(&".") {
        return Err(bad("has a . component"));
    }
    if components.iter().any(|c| c.len() > MAX_COMPONENT_LEN) {
        return Err(bad("has a component longer than 255 bytes"));
    }
    Ok(components)
}

/// The Maildir++ directory of an IMAP folder: `Junk` → `.Junk`, `Archive.2024` → `.Archive.2024` (a dot
/// separates hierarchy levels). `INBOX`, in any case, is the root itself: `None`. Names are limited to
/// printable ASCII without `/ \ & * % ~` (Dovecot stores other names in modified UTF-7; callers that need
/// them pass them encoded), and may not start or end with a dot or hold two in a row.
pub(super) fn folder_dir(folder: &str) -> Result<Option<String>, DeliverError> {
    let bad = |reason| DeliverError::BadFolder {
        folder: shown(folder),
        reason,
    };
    if folder.eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    if folder.is_empty() {
        return Err(bad("is empty"));
    }
    if folder.len() > MAX_FOLDER_LEN {
        return Err(bad("is longer than 200 bytes"));
    }
    let allowed = |c: char| {
        (c.is_ascii_graphic() || c == ' ') && !matches!(c, '/' | '\\' | '&' | '*' | '%' | '~')
    };
    if !folder.chars().all(allowed) {
        return Err(bad("may hold only printable ASCII without / \\ & * % ~"));
    }
    if folder.starts_with('.') || folder.ends_with('.') || folder.contains("..") {
        return Err(bad("starts or ends with a dot or holds two in a row"));
    }
    Ok(Some(format!(".{folder}")))
}

/// A refused value cut to a size fit for a log line.
fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_LEN) {
        Some((cut, _)) => format!("{}...", value.get(..cut).unwrap_or_default()),
        None => value.to_string(),
    }
}

/// The base with symlinks resolved, the prefix every directory we use must stay under.
/// The mail base with every symlink in it resolved: the root below which no Maildir path may escape. The
/// store computes it once (the base of a running server does not move) and passes it to [`prepare`] and
/// [`find_root`], which walk the Maildirs below it on every call.
pub(super) fn canonical_base(base: &Path) -> Result<PathBuf, DeliverError> {
    fs::canonicalize(base).map_err(DeliverError::io("resolve the mail base", base))
}

/// Creates `cur/`, `new/` and `tmp/` in `dir` if missing; returns the resolved `new/` and `tmp/`.
fn ensure_maildir(base: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), DeliverError> {
    enter_or_create(base, dir, "cur")?;
    let new = enter_or_create(base, dir, "new")?;
    let tmp = enter_or_create(base, dir, "tmp")?;
    Ok((new, tmp))
}

/// Puts the empty `maildirfolder` marker into a Maildir++ subfolder unless something by that name is there.
/// `create_new` never follows a symlink, so a planted link cannot make us create a file elsewhere.
fn mark_folder(dir: &Path) -> Result<(), DeliverError> {
    let marker = dir.join(FOLDER_MARKER);
    match fs::symlink_metadata(&marker) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(DeliverError::io("inspect", &marker)(e)),
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&marker)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DeliverError::io("create", &marker)(e)),
    }
}

/// `parent/name` as an existing directory inside `base`, created if missing.
fn enter_or_create(base: &Path, parent: &Path, name: &str) -> Result<PathBuf, DeliverError> {
    if let Some(dir) = enter(base, parent, name)? {
        return Ok(dir);
    }
    let path = parent.join(name);
    match DirBuilder::new().mode(0o700).create(&path) {
        Ok(()) => {
            durable::sync_dir(parent).map_err(DeliverError::io("sync directory", parent))?;
            Ok(path)
        }
        // Another delivery created it between our look and our mkdir: look again.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            enter(base, parent, name)?.ok_or_else(|| DeliverError::io("create directory", &path)(e))
        }
        Err(e) => Err(DeliverError::io("create directory", &path)(e)),
    }
}

/// `parent/name` as an existing directory inside `base` (a symlink is replaced by its canonical target), or
/// `None` when nothing by that name exists. A symlink leading outside the base (or to the base itself) is
/// refused; a dangling one is an I/O error, and nothing is created through it.
pub(super) fn enter(
    base: &Path,
    parent: &Path,
    name: &str,
) -> Result<Option<PathBuf>, DeliverError> {
    let path = parent.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DeliverError::io("inspect", &path)(e)),
    };
    if meta.is_dir() {
        return Ok(Some(path));
    }
    if !meta.file_type().is_symlink() {
        return Err(DeliverError::NotADirectory { path });
    }
    let target = fs::canonicalize(&path).map_err(DeliverError::io("follow the symlink", &path))?;
    if target == base || !target.starts_with(base) {
        return Err(DeliverError::Escapes {
            path,
            target,
            base: base.to_path_buf(),
        });
    }
    if !target.is_dir() {
        return Err(DeliverError::NotADirectory { path });
    }
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_maildir_values_split_into_components() {
        assert_eq!(
            rel_components("example.com/alice/").unwrap(),
            ["example.com", "alice"]
        );
        assert_eq!(
            rel_components("example.com//bob").unwrap(),
            ["example.com", "bob"]
        );
        assert_eq!(rel_components("x").unwrap(), ["x"]);
    }

    #[test]
    fn hostile_maildir_values_are_refused_permanently() {
        let long_component = format!("a/{}", "b".repeat(256));
        let long_path = "a/".repeat(600);
        for rel in [
            "",
            "/",
            "//",
            "/etc/passwd",
            "../x",
            "example.com/../../etc",
            "a/..",
            "..",
            "a..b/c",
            "a\0b",
            "a/b\n",
            "a/\rb",
            "./a",
            "a/./b",
            ".",
            "\u{85}x",
            &long_component,
            &long_path,
        ] {
            let err = rel_components(rel).unwrap_err();
            assert!(
                matches!(err, DeliverError::BadPath { .. }),
                "{rel:?}: {err}"
            );
            assert!(!err.temporary(), "{rel:?}");
            assert!(!err.to_string().contains('\n'), "{rel:?}");
        }
    }

    #[test]
    fn folder_names_map_to_dotted_maildir_plus_plus_directories() {
        assert_eq!(folder_dir("Junk").unwrap().as_deref(), Some(".Junk"));
        assert_eq!(
            folder_dir("Archive.2024").unwrap().as_deref(),
            Some(".Archive.2024")
        );
        assert_eq!(
            folder_dir("Sent Messages").unwrap().as_deref(),
            Some(".Sent Messages")
        );
        assert_eq!(folder_dir("INBOX").unwrap(), None);
        assert_eq!(folder_dir("inbox").unwrap(), None);
    }

    #[test]
    fn hostile_folder_names_are_refused_permanently() {
        let long = "J".repeat(201);
        for folder in [
            "", ".", "..", "../x", "a/b", "/abs", ".hidden", "Junk.", "a..b", "Junk\n", "Ju\0nk",
            "a\\b", "&-", "*", "%", "~x", "Jünk", &long,
        ] {
            let err = folder_dir(folder).unwrap_err();
            assert!(
                matches!(err, DeliverError::BadFolder { .. }),
                "{folder:?}: {err}"
            );
            assert!(!err.temporary());
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn refused_values_are_cut_in_messages() {
        let err = rel_components(&"/".repeat(5000)).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }
}
