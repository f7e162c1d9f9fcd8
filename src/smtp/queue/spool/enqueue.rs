//! Putting a message on the spool durably (the steps are listed in the module documentation), and reading it
//! back.

use std::fs;
use std::io::ErrorKind;

use super::Spool;
use super::files::{Step, remove_quietly, write_synced};
use crate::smtp::queue::{Entry, QueueError, QueueId};

impl Spool {
    /// One enqueue attempt under `entry.id`; `Ok(false)` when that id is taken.
    pub(super) fn store_new(&self, entry: &Entry, message: &[u8]) -> Result<bool, QueueError> {
        let id = &entry.id;
        let tmp_body = self.tmp_path(id, "eml");
        let tmp_meta = self.tmp_path(id, "json");
        let body = self.body_path(id);
        let meta = self.meta_path(id);
        // Removes what this attempt created, unless a test is simulating a crash (the dead leave no order).
        let clean = |paths: &[&std::path::Path]| {
            if !self.faults.crashed() {
                paths.iter().for_each(|p| remove_quietly(p));
            }
        };

        write_synced(
            &self.faults,
            &tmp_body,
            message,
            (Step::WriteBody, Step::SyncBody),
        )?;
        let json = serde_json::to_vec_pretty(entry).map_err(|e| QueueError::Corrupt {
            path: tmp_meta.clone(),
            reason: e.to_string(),
        });
        let written = json.and_then(|json| {
            write_synced(
                &self.faults,
                &tmp_meta,
                &json,
                (Step::WriteMeta, Step::SyncMeta),
            )
        });
        if let Err(e) = written {
            clean(&[&tmp_body]);
            return Err(e);
        }
        match self
            .faults
            .check(Step::LinkBody)
            .and_then(|()| fs::hard_link(&tmp_body, &body))
        {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                clean(&[&tmp_body, &tmp_meta]);
                return Ok(false);
            }
            Err(e) => {
                clean(&[&tmp_body, &tmp_meta]);
                return Err(QueueError::io("link", &body)(e));
            }
        }
        let renamed = self
            .faults
            .check(Step::RenameMeta)
            .and_then(|()| fs::rename(&tmp_meta, &meta));
        if let Err(e) = renamed {
            clean(&[&tmp_meta, &body, &tmp_body]);
            return Err(QueueError::io("rename", &tmp_meta)(e));
        }
        remove_quietly(&tmp_body);
        if let Err(e) = self.sync_msg() {
            // Not durable, so not accepted: take it back, or the client's retry would make it a duplicate.
            clean(&[&meta, &body]);
            return Err(e);
        }
        Ok(true)
    }

    /// The message bytes of an entry.
    pub(super) fn read_body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        let path = self.body_path(id);
        fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => QueueError::NotFound(id.clone()),
            _ => QueueError::io("read", &path)(e),
        })
    }
}
