//! Final delivery of accepted messages: into Maildirs that Dovecot reads (through a group-commit writer), or
//! over LMTP. STUB of the `Deliverer` API: replaced by the delivery helper.

pub mod maildir;

use std::sync::Arc;

use crate::smtp::settings::DeliveryTarget;

/// One mailbox a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The mailbox address (`alice@example.org`): the LMTP recipient, and for logs.
    pub mailbox: String,
    /// The mailbox row's `maildir` (`example.org/alice/`), relative to the mail base.
    pub maildir: String,
    /// File into the Junk folder instead of INBOX.
    pub junk: bool,
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Retrying later may work (4xx); otherwise 5xx.
    pub temporary: bool,
    /// One line for the log and the SMTP reply text (no paths or secrets a client should not see).
    pub reason: String,
}

/// Delivers accepted messages. Cheap to clone; shared by every session.
#[derive(Clone)]
pub struct Deliverer {
    store: maildir::MaildirStore,
}

impl Deliverer {
    /// Starts the delivery machinery for `target` (for Maildir: the group-commit writer).
    pub fn start(target: &DeliveryTarget, hostname: &str) -> Deliverer {
        let base = match target {
            DeliveryTarget::Maildir(base) => base.clone(),
            _ => std::path::PathBuf::from("/nonexistent"),
        };
        Deliverer {
            store: maildir::MaildirStore::new(base, hostname),
        }
    }

    /// Delivers `message` (with trace headers already prepended) from `sender` (empty for `<>`) to every
    /// target. `Err`: delivered to none (the session answers 4xx/5xx). `Ok(list)`: delivered to every target
    /// except those listed (only LMTP can fail part of a message).
    pub async fn deliver(
        &self,
        _sender: &str,
        message: Arc<Vec<u8>>,
        targets: Vec<Target>,
    ) -> Result<Vec<(Target, Failure)>, Failure> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for t in &targets {
                let folder = t.junk.then_some("Junk");
                store.deliver(&t.maildir, folder, &message).map_err(|e| Failure {
                    temporary: e.temporary(),
                    reason: e.to_string(),
                })?;
            }
            Ok(Vec::new())
        })
        .await
        .map_err(|e| Failure {
            temporary: true,
            reason: format!("delivery task failed: {e}"),
        })?
    }

    /// Bytes used by the mailbox at `maildir` for quota checks; `None` when delivery is not local (over LMTP
    /// the LMTP server enforces quotas) or the usage cannot be read.
    pub async fn usage(&self, maildir: &str) -> Option<u64> {
        let store = self.store.clone();
        let maildir = maildir.to_string();
        tokio::task::spawn_blocking(move || store.usage(&maildir).ok())
            .await
            .ok()
            .flatten()
    }
}
