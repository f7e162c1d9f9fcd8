//! Durable delivery into Maildirs, in the layout Dovecot reads (cr.yp.to/proto/maildir.html, with Dovecot's
//! Maildir++ folders and quota file).
//!
//! A message for a mailbox goes to `<base>/<row's maildir>/new/`, or to `.../.<Folder>/new/` for a Maildir++
//! folder such as `Junk`. Every delivery follows the same four steps, which is what lets the SMTP session
//! answer `250` only once the message would survive a crash or a power cut:
//!
//! 1. write the message to `tmp/<unique>` (created with `create_new`, mode 0600);
//! 2. fsync the file, so its bytes are on stable storage before any name points at them in `new/`;
//! 3. rename it to `new/<unique>`: atomic, so Dovecot sees either the whole message or nothing;
//! 4. fsync `new/`, so the rename itself is on stable storage.
//!
//! After a crash, a message is therefore either fully in `new/` or not there at all (a leftover in `tmp/` is
//! invisible to readers, and Dovecot removes it after 36 hours); a failure at any step removes what it made
//! and returns an error, so the session answers `451` and the sender keeps the message. Missing directories
//! (`cur/ new/ tmp/`, the folder with its `maildirfolder` marker) are created with mode 0700 and their parent
//! fsynced, so a first delivery is as durable as any other.
//!
//! Paths are hostile input until checked: a row's `maildir` must be relative and clean, a folder name plain,
//! and every directory on the way must stay under the base, symlinks included (see `path.rs`).
//!
//! **Blocking.** Everything here is blocking file I/O with fsyncs that take milliseconds on real disks. Async
//! callers run it on `tokio::task::spawn_blocking` or hand it to a dedicated writer thread (which is also
//! where [`MaildirStore::deliver_many`] pays off); never on the reactor.

mod durable;
mod error;
mod name;
mod path;
mod quota;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use error::DeliverError;

/// The mail store: a base directory holding one Maildir per mailbox, as Dovecot is configured to read it
/// (`mail_location = maildir:/var/vmail/%d/%n` or the row's `maildir`). Cheap to clone and safe to share
/// between threads; all state is on disk, and unique names come from a process-wide counter.
#[derive(Debug, Clone)]
pub struct MaildirStore {
    /// The mail base, e.g. `/var/vmail`; every Maildir lives under it.
    base: PathBuf,
    /// The base with its symlinks resolved, computed on first use and shared by every clone.
    resolved: Arc<OnceLock<PathBuf>>,
    /// This host's name, already escaped for use in file names (`/` → `\057`, `:` → `\072`).
    hostname: String,
}

/// One message for one mailbox, as [`MaildirStore::deliver_many`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The mailbox's Maildir relative to the mail base (`example.com/alice/`).
    pub maildir: &'a str,
    /// The Maildir++ folder (`Some("Junk")` -> `.Junk`), or the INBOX.
    pub folder: Option<&'a str>,
    /// The message bytes.
    pub message: &'a [u8],
    /// The message's id (its queue id), written into the file name so the file, the `250` reply and the log
    /// line can be matched; only its letters and digits are used.
    pub id: Option<&'a str>,
}

/// A message on stable storage: where it landed, and its size as recorded in its name (`,S=<size>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The file in `new/`.
    pub path: PathBuf,
    /// The message size in bytes, for logs and quota accounting.
    pub size: u64,
}

/// One message written and synced in `tmp/` (and later renamed into `new/`), not yet acknowledged.
struct Staged {
    root: PathBuf,
    tmp: PathBuf,
    new_dir: PathBuf,
    new: PathBuf,
    size: u64,
}

impl MaildirStore {
    /// A store under `base` (which must exist when delivering) that names files after `hostname` (the
    /// server's `hostname` from the config; `/`, `:` and other awkward characters are escaped).
    pub fn new(base: impl Into<PathBuf>, hostname: &str) -> Self {
        MaildirStore {
            base: base.into(),
            resolved: Arc::new(OnceLock::new()),
            hostname: name::escape_hostname(hostname),
        }
    }

    /// The mail base this store delivers under.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Delivers `message` durably into the mailbox whose row has `maildir = maildir_rel` (e.g.
    /// `example.com/alice/`), into its INBOX or, with `folder`, into the Maildir++ folder (`Some("Junk")` →
    /// `.Junk`). Returns only once the message and its name are fsynced. Blocking: see the module docs.
    pub fn deliver(
        &self,
        maildir_rel: &str,
        folder: Option<&str>,
        message: &[u8],
    ) -> Result<Delivered, DeliverError> {
        let item = Item {
            maildir: maildir_rel,
            folder,
            message,
            id: None,
        };
        let staged = self.stage(&item)?.commit()?;
        if let Err(e) = durable::sync_dir(&staged.new_dir) {
            return Err(staged.undo(e));
        }
        Ok(staged.finish())
    }

    /// Delivers many messages (to one or many mailboxes) with one directory fsync per distinct `new/` instead
    /// of one per message: the group commit that lets many SMTP sessions share the cost of syncing. Each item
    /// is `(maildir_rel, folder, message)` as for [`deliver`](Self::deliver); results come back in item order,
    /// and a bad item fails alone.
    ///
    /// Durability: every file is written and fsynced in `tmp/` first, so no name in `new/` can ever point at
    /// unsynced bytes; then each is renamed into `new/`; then each distinct `new/` is fsynced once. An fsync of
    /// a directory makes durable every entry change made in it before the call, by any thread or process, so
    /// that one sync covers all the renames into it. Only after it has succeeded are the items reported as
    /// delivered; if it fails, the files it should have covered are removed and reported as failed
    /// (temporary), so the senders retry and no message is both refused and delivered.
    pub fn deliver_many(&self, items: &[Item]) -> Vec<Result<Delivered, DeliverError>> {
        let staged: Vec<Result<Staged, DeliverError>> =
            items.iter().map(|item| self.stage(item)).collect();
        let committed: Vec<Result<Staged, DeliverError>> = staged
            .into_iter()
            .map(|item| item.and_then(Staged::commit))
            .collect();
        let mut synced: HashMap<PathBuf, Option<(io::ErrorKind, String)>> = HashMap::new();
        for item in committed.iter().flatten() {
            synced.entry(item.new_dir.clone()).or_insert_with(|| {
                durable::sync_dir(&item.new_dir)
                    .err()
                    .map(|e| (e.kind(), e.to_string()))
            });
        }
        committed
            .into_iter()
            .map(|item| {
                let item = item?;
                match synced.get(&item.new_dir) {
                    Some(Some((kind, message))) => {
                        Err(item.undo(io::Error::new(*kind, message.clone())))
                    }
                    _ => Ok(item.finish()),
                }
            })
            .collect()
    }

    /// The bytes stored in the mailbox (all folders), as Dovecot's Maildir++ quota counts them: from
    /// `maildirsize` when present, else from the `S=` sizes in the file names. 0 for a Maildir not created yet.
    /// Callers compare it (plus the incoming message size) with the mailbox's quota in bytes, 0 meaning
    /// unlimited, and answer `552 5.2.2` when over. Blocking, like delivery.
    pub fn usage(&self, maildir_rel: &str) -> Result<u64, DeliverError> {
        quota::usage(&self.resolved_base()?, maildir_rel)
    }

    /// The canonical base, resolved once (and again only while resolving fails, e.g. before the admin has
    /// created it): resolving costs a readlink per component, on every delivery otherwise.
    fn resolved_base(&self) -> Result<PathBuf, DeliverError> {
        if let Some(resolved) = self.resolved.get() {
            return Ok(resolved.clone());
        }
        let resolved = path::canonical_base(&self.base)?;
        Ok(self.resolved.get_or_init(|| resolved).clone())
    }

    /// Steps 1 and 2: checks the path, creates what is missing, writes and fsyncs the message in `tmp/`.
    fn stage(&self, item: &Item) -> Result<Staged, DeliverError> {
        let target = path::prepare(&self.resolved_base()?, item.maildir, item.folder)?;
        let size = item.message.len() as u64;
        let unique = name::unique_name(&self.hostname, size, item.id);
        let tmp = target.tmp.join(&unique);
        durable::write_synced(&tmp, item.message)?;
        Ok(Staged {
            root: target.root,
            new: target.new.join(&unique),
            new_dir: target.new,
            tmp,
            size,
        })
    }
}

impl Staged {
    /// Step 3: the rename into `new/`.
    fn commit(self) -> Result<Staged, DeliverError> {
        durable::move_into_new(&self.tmp, &self.new)?;
        Ok(self)
    }

    /// Step 4 failed: the rename may not be durable, so take the message back out of `new/` (the sender will
    /// retry and a later success must not make it a duplicate) and report the sync failure.
    fn undo(self, source: io::Error) -> DeliverError {
        durable::remove_quietly(&self.new);
        DeliverError::Io {
            action: "sync directory",
            path: self.new_dir,
            source,
        }
    }

    /// Step 4 succeeded: the message is delivered. Counts it in `maildirsize` when the mailbox has one.
    fn finish(self) -> Delivered {
        quota::record_delivery(&self.root, self.size);
        Delivered {
            path: self.new,
            size: self.size,
        }
    }
}
