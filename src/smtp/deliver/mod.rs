//! Final delivery of accepted messages: into the Maildirs that Dovecot reads, through a group-commit writer
//! ([`writer`]), or to an LMTP server such as Dovecot's ([`lmtp`]).
//!
//! The SMTP session answers `250` to DATA only once [`Deliverer::deliver`] has returned, so everything behind
//! it must mean "on stable storage": for Maildir every file is fsynced and so is the directory holding its name;
//! for LMTP the server's per-recipient `250` carries that promise.
//!
//! **Junk over LMTP.** LMTP (RFC 2033) has no way to choose a folder, and Dovecot's LMTP server files into a
//! folder only through Sieve. Targets marked `junk` are therefore delivered to the INBOX over LMTP; the message
//! carries the `Authentication-Results` header the checks produced, so a Sieve rule on it (or on a header the
//! session adds) can file it into Junk. With Maildir delivery `junk` targets go to the `.Junk` folder directly.

pub mod lmtp;
pub mod maildir;
pub mod writer;

use std::sync::Arc;

use crate::smtp::queue::QueueId;
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

impl Failure {
    /// A failure that retrying may cure (the session answers 4xx).
    pub fn transient(reason: impl Into<String>) -> Failure {
        Failure {
            temporary: true,
            reason: reason.into(),
        }
    }

    /// A failure that retrying cannot cure (the session answers 5xx).
    pub fn permanent(reason: impl Into<String>) -> Failure {
        Failure {
            temporary: false,
            reason: reason.into(),
        }
    }

    /// The failure that stands for several (a message that reached none of its targets): temporary when any of
    /// them is, so the sender retries rather than bounces, with the reason of the first failure of that kind.
    /// `None` for an empty list.
    pub fn combine<'a>(failures: impl IntoIterator<Item = &'a Failure>) -> Option<Failure> {
        let failures: Vec<&Failure> = failures.into_iter().collect();
        failures
            .iter()
            .find(|f| f.temporary)
            .or_else(|| failures.first())
            .map(|f| (*f).clone())
    }
}

/// Delivers accepted messages. Cheap to clone; shared by every session. For Maildir delivery the clones share
/// one group-commit writer, which stops once the last clone is dropped.
#[derive(Clone)]
pub struct Deliverer {
    inner: Inner,
}

/// Where messages go.
#[derive(Clone)]
enum Inner {
    /// Local Maildirs: the store (for quota usage) and the writer that delivers into it.
    Maildir {
        store: maildir::MaildirStore,
        writer: writer::Writer,
    },
    /// An LMTP server.
    Lmtp(lmtp::Client),
}

impl Deliverer {
    /// Starts the delivery machinery for `target`: for Maildir the group-commit writer threads; for LMTP
    /// nothing yet (a connection is made per delivery, so an LMTP server that starts later is no problem).
    /// `hostname` names the files (Maildir) or is sent in `LHLO` (LMTP).
    pub fn start(target: &DeliveryTarget, hostname: &str) -> Deliverer {
        let inner = match target {
            DeliveryTarget::Maildir(base) => {
                let store = maildir::MaildirStore::new(base.clone(), hostname);
                let writer = writer::Writer::start(store.clone(), writer::Config::default());
                Inner::Maildir { store, writer }
            }
            DeliveryTarget::LmtpTcp(addr) => Inner::Lmtp(lmtp::Client::new(
                lmtp::Endpoint::Tcp(addr.clone()),
                hostname,
            )),
            DeliveryTarget::LmtpUnix(path) => Inner::Lmtp(lmtp::Client::new(
                lmtp::Endpoint::Unix(path.clone()),
                hostname,
            )),
        };
        Deliverer { inner }
    }

    /// Delivers message `id` (with trace headers already prepended) from `sender` (empty for `<>`) to every
    /// target; Maildir file names carry the id. `Err`: delivered to none (the session answers 4xx/5xx).
    /// `Ok(list)`: delivered to every target except those listed (only LMTP can fail part of a message;
    /// Maildir delivery is all or nothing).
    pub async fn deliver(
        &self,
        id: &QueueId,
        sender: &str,
        message: Arc<Vec<u8>>,
        targets: Vec<Target>,
    ) -> Result<Vec<(Target, Failure)>, Failure> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        match &self.inner {
            Inner::Maildir { writer, .. } => {
                writer.deliver(id, message, targets).await?;
                Ok(Vec::new())
            }
            Inner::Lmtp(client) => client.deliver(sender, &message, targets).await,
        }
    }

    /// Bytes used by the mailbox at `maildir` for quota checks; `None` when delivery is not local (over LMTP
    /// the LMTP server enforces quotas) or the usage cannot be read.
    pub async fn usage(&self, maildir: &str) -> Option<u64> {
        let Inner::Maildir { store, .. } = &self.inner else {
            return None;
        };
        let store = store.clone();
        let maildir = maildir.to_string();
        tokio::task::spawn_blocking(move || store.usage(&maildir).ok())
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_failure_is_temporary_when_any_is() {
        let list = [
            Failure::permanent("p1"),
            Failure::transient("t1"),
            Failure::transient("t2"),
        ];
        assert_eq!(Failure::combine(&list), Some(Failure::transient("t1")));
        let list = [Failure::permanent("p1"), Failure::permanent("p2")];
        assert_eq!(Failure::combine(&list), Some(Failure::permanent("p1")));
        assert_eq!(Failure::combine(&[]), None);
    }

    #[tokio::test]
    async fn lmtp_delivery_has_no_local_usage() {
        let d = Deliverer::start(&DeliveryTarget::LmtpUnix("/nonexistent".into()), "mx");
        assert_eq!(d.usage("example.com/alice/").await, None);
    }

    #[tokio::test]
    async fn maildir_delivery_reports_usage_and_no_targets_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let d = Deliverer::start(&DeliveryTarget::Maildir(dir.path().into()), "mx");
        assert_eq!(d.usage("example.com/alice/").await, Some(0));
        let message = Arc::new(b"Subject: x\r\n\r\nbody\r\n".to_vec());
        let id = QueueId::generate(chrono::Utc::now());
        assert_eq!(
            d.deliver(&id, "", message.clone(), Vec::new()).await,
            Ok(vec![])
        );
        let target = Target {
            mailbox: "alice@example.com".into(),
            maildir: "example.com/alice/".into(),
            junk: false,
        };
        assert_eq!(
            d.deliver(&id, "a@b", message, vec![target]).await,
            Ok(vec![])
        );
        assert_eq!(d.usage("example.com/alice/").await, Some(20));
    }
}
