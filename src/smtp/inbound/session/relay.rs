//! Mail for other domains: a logged-in user's remote recipients and alias targets outside the hosted
//! domains. The message is DKIM-signed (for a logged-in user, with the active key of the From domain) and
//! written to the outbound queue before the client gets its `250`.

use std::sync::Arc;

use super::{Session, temporary_failure};
use crate::model::DomainName;
use crate::smtp::inbound::command::Reply;
use crate::smtp::metrics::RejectReason;
use crate::smtp::queue::{Envelope, QueueId};

impl Session {
    /// Signs (when a user is logged in) and queues the message for `remote` under the transaction's id `id`;
    /// `Err` is the reply to give when the queue cannot take it.
    pub(super) async fn queue_remote(
        &self,
        id: &QueueId,
        sender: &str,
        remote: Vec<String>,
        message: &Arc<Vec<u8>>,
    ) -> Result<(), Reply> {
        // The unsigned message is shared, not copied, on its way to the queue.
        let (body, dkim) = match &self.login {
            Some(_) => match self.sign(message).await {
                Ok(Some((signed, note))) => (Arc::new(signed), Some(note)),
                Ok(None) => (message.clone(), None),
                Err(()) => {
                    self.server.metrics.rejected(RejectReason::Tempfail);
                    return Err(temporary_failure());
                }
            },
            None => (message.clone(), None),
        };
        let envelope = Envelope {
            sender: sender.to_string(),
            recipients: remote,
            dkim,
        };
        self.enqueue(id, envelope, body).await
    }

    /// Writes `body` for `envelope` to the outbound queue under `id`; `Err` is the reply to give when the queue
    /// cannot take it.
    pub(super) async fn enqueue(
        &self,
        id: &QueueId,
        envelope: Envelope,
        body: Arc<Vec<u8>>,
    ) -> Result<(), Reply> {
        let (queue, id) = (self.server.queue.clone(), id.clone());
        let stored = tokio::task::spawn_blocking(move || {
            queue.enqueue_as(&id, &envelope, &body, chrono::Utc::now())
        })
        .await;
        match stored {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(target: "mailctl::smtp", error = %e, "cannot queue message");
                self.server.metrics.rejected(RejectReason::Tempfail);
                Err(temporary_failure())
            }
            Err(e) => {
                tracing::error!(target: "mailctl::smtp", error = %e, "queue task failed");
                self.server.metrics.rejected(RejectReason::Tempfail);
                Err(temporary_failure())
            }
        }
    }

    /// Takes a queued message back out after local delivery failed (the client will retry the whole
    /// transaction). A failure here is logged: the remote copy may then be sent twice, never lost.
    pub(super) async fn unqueue(&self, id: &QueueId) {
        let queue = self.server.queue.clone();
        let id = id.clone();
        let result =
            tokio::task::spawn_blocking(move || queue.withdraw(&id, chrono::Utc::now())).await;
        if !matches!(result, Ok(Ok(_))) {
            tracing::error!(target: "mailctl::smtp",
                "local delivery failed and the queued remote copy could not be withdrawn; it will still be sent");
        }
    }

    /// DKIM-signs `message` with the active key of its From domain, when that domain is hosted here and has
    /// one. `Ok(None)`: nothing to sign with (sent unsigned, and the log says so). `Err`: database trouble.
    async fn sign(&self, message: &Arc<Vec<u8>>) -> Result<Option<(Vec<u8>, String)>, ()> {
        let Ok(from_domain) = crate::dkim::sign::check_message(message) else {
            return Ok(None);
        };
        let Ok(domain) = from_domain.parse::<DomainName>() else {
            return Ok(None);
        };
        let lookup = async {
            let mut tx = self.server.store.begin().await?;
            let key = crate::provision::dkim::active_key(&mut tx, &domain).await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(key)
        };
        let Some(key) = self.lookup("DKIM key", lookup).await? else {
            tracing::warn!(target: "mailctl::smtp", domain = %domain,
                "no active DKIM key: sending unsigned (mailctl dkim generate)");
            return Ok(None);
        };
        let message = message.clone();
        let signed = tokio::task::spawn_blocking(move || {
            crate::provision::dkim::sign_with(&key, &domain, &message)
        })
        .await;
        match signed {
            Ok(Ok(done)) => Ok(Some(done)),
            Ok(Err(e)) => {
                tracing::error!(target: "mailctl::smtp", error = %e, "DKIM signing failed: sending unsigned");
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }
}
