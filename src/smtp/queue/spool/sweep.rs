//! Recovery: what dead owners left behind is removed or set aside (the cases are listed in the module
//! documentation). Safe while other processes use the spool: only files of dead owners are touched, and
//! every entry is re-checked under its lock before anything is done to it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::Path;

use super::Spool;
use super::files::{read_entry, remove_if_present};
use super::lock::{owner_alive, staging_owner_alive};
use crate::smtp::queue::{QueueError, QueueId};

/// What a sweep cleaned up, for the log line `serve` writes at startup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Temporary files of dead owners removed (half-written or never committed).
    pub temporary: usize,
    /// Message bodies without a record removed (uncommitted enqueues, interrupted removals).
    pub orphan_bodies: usize,
    /// Entries moved to `corrupt/` (unreadable record, or record without body).
    pub quarantined: usize,
    /// Lease files of entries that no longer exist removed.
    pub stale_leases: usize,
}

impl Spool {
    /// Cleans up after dead owners. [`Spool::open`] runs it; `serve` may also run it now and then.
    pub fn sweep(&self) -> Result<Swept, QueueError> {
        let mut swept = Swept::default();
        let (bodies, metas) = self.msg_listing()?;
        // Read tmp/ after msg/: an enqueue between link and rename then shows up in one or the other.
        let in_progress = self.sweep_tmp(&mut swept)?;
        for id in &metas {
            let suspect = !bodies.contains(id)
                || matches!(
                    read_entry(&self.meta_path(id)),
                    Err(QueueError::Corrupt { .. })
                );
            if suspect && self.quarantine(id) {
                swept.quarantined += 1;
            }
        }
        for id in bodies.difference(&metas) {
            if in_progress.contains(id) || self.meta_path(id).exists() {
                continue;
            }
            let body = self.body_path(id);
            remove_if_present(&body).map_err(QueueError::io("remove", &body))?;
            swept.orphan_bodies += 1;
        }
        self.sweep_leases(&mut swept)?;
        for token in names(&self.owners)? {
            if token != self.owner.token {
                owner_alive(&self.owners, &token);
            }
        }
        if swept != Swept::default() {
            tracing::info!(spool = %self.root.display(), ?swept, "queue spool recovered");
        }
        Ok(swept)
    }

    /// The ids of the bodies and of the records in `msg/`.
    fn msg_listing(&self) -> Result<(BTreeSet<QueueId>, BTreeSet<QueueId>), QueueError> {
        let (mut bodies, mut metas) = (BTreeSet::new(), BTreeSet::new());
        for name in names(&self.msg)? {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
            let set = match ext {
                "eml" => &mut bodies,
                "json" => &mut metas,
                _ => continue,
            };
            if let Ok(id) = QueueId::parse(stem) {
                set.insert(id);
            }
        }
        Ok((bodies, metas))
    }

    /// Removes temporary files of dead owners; returns the ids that live owners are writing records for.
    fn sweep_tmp(&self, swept: &mut Swept) -> Result<HashSet<QueueId>, QueueError> {
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut in_progress = HashSet::new();
        for name in names(&self.tmp)? {
            let path = self.tmp.join(&name);
            let live = if name.ends_with(".owner") {
                staging_owner_alive(&path)
            } else {
                let token = name.split('.').next().unwrap_or_default();
                token == self.owner.token
                    || *alive
                        .entry(token.to_string())
                        .or_insert_with(|| owner_alive(&self.owners, token))
            };
            if live {
                let id = name.strip_suffix(".json").and_then(|n| n.split('.').nth(1));
                if let Some(Ok(id)) = id.map(QueueId::parse) {
                    in_progress.insert(id);
                }
                continue;
            }
            remove_if_present(&path).map_err(QueueError::io("remove", &path))?;
            swept.temporary += 1;
        }
        Ok(in_progress)
    }

    /// Removes lease files whose entry is gone (and files in `lease/` that are no lease at all).
    fn sweep_leases(&self, swept: &mut Swept) -> Result<(), QueueError> {
        for name in names(&self.leases)? {
            let Ok(id) = QueueId::parse(&name) else {
                let path = self.leases.join(&name);
                remove_if_present(&path).map_err(QueueError::io("remove", &path))?;
                continue;
            };
            if self.meta_path(&id).exists() {
                continue;
            }
            if let Some(lock) = self.lock(&id, false)?
                && !self.meta_path(&id).exists()
            {
                lock.remove();
                swept.stale_leases += 1;
            }
        }
        Ok(())
    }

    /// Moves a suspect entry to `corrupt/` after re-checking it under its lock; true when it was moved.
    /// Failures are logged: a quarantine that fails is tried again by the next sweep.
    pub(super) fn quarantine(&self, id: &QueueId) -> bool {
        let moved = (|| -> Result<bool, QueueError> {
            let Some(lock) = self.lock(id, true)? else {
                return Ok(false);
            };
            let (meta, body) = (self.meta_path(id), self.body_path(id));
            let corrupt = match read_entry(&meta) {
                Ok(None) => return Ok(false),
                Ok(Some(_)) => !body.exists(),
                Err(QueueError::Corrupt { .. }) => true,
                Err(e) => return Err(e),
            };
            if !corrupt {
                return Ok(false);
            }
            for (from, ext) in [(&meta, "json"), (&body, "eml")] {
                let to = self.corrupt.join(format!("{id}.{ext}"));
                match fs::rename(from, &to) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(QueueError::io("move aside", from)(e));
                    }
                    _ => {}
                }
            }
            for dir in [&self.corrupt, &self.msg] {
                fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(QueueError::io("sync", dir))?;
            }
            lock.remove();
            Ok(true)
        })();
        match moved {
            Ok(true) => {
                tracing::warn!(queue_id = %id, dir = %self.corrupt.display(), "moved corrupt queue entry aside");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(queue_id = %id, "cannot move corrupt queue entry aside: {e}");
                false
            }
        }
    }
}

/// The file names in `dir` (names that are not UTF-8 are skipped: the spool never creates any).
fn names(dir: &Path) -> Result<Vec<String>, QueueError> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(QueueError::io("read directory", dir))? {
        let item = item.map_err(QueueError::io("read directory", dir))?;
        if let Ok(name) = item.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}
