//! The milters' turn (`[[server.milters]]`, see [`crate::smtp::inbound::milter`]): after serve's own checks
//! on the message, before anything is delivered or queued.

use super::Session;
use crate::smtp::inbound::command::Reply;
use crate::smtp::inbound::milter::{Client, Verdict};
use crate::smtp::metrics::RejectReason;

/// The message after the milters.
pub(super) struct Milted {
    /// What to deliver: the message as the milters changed it.
    pub message: Vec<u8>,
    /// A new envelope sender, when a milter changed it.
    pub sender: Option<String>,
    /// File as junk (a user's mail for other servers is refused instead): which milter said so and why.
    pub quarantine: Option<String>,
}

impl Session {
    /// Runs the message through this listener's milters. `Err` ends the transaction with the reply (the
    /// milter's refusal, or `250` for a message a milter discarded) and the words for the log line.
    pub(super) async fn milters(&self, message: Vec<u8>) -> Result<Milted, (Reply, String)> {
        let (Some(txn), true) = (&self.txn, self.server.milters.any_for(self.kind)) else {
            return Ok(Milted {
                message,
                sender: None,
                quarantine: None,
            });
        };
        let id = txn.id.to_string();
        let login = self.login.as_ref().map(ToString::to_string);
        let client = Client {
            id: &id,
            hostname: &self.server.settings.hostname,
            listener: self.kind,
            peer: self.peer,
            ptr: self.connect_checks.as_ref().and_then(|c| c.ptr.as_deref()),
            helo: self.helo.as_ref().map_or("", |h| h.0.as_str()),
            tls: self.tls.as_deref(),
            login: login.as_deref(),
            sender: &txn.sender,
            recipients: &txn.recipients,
            max_size: usize::try_from(self.server.settings.limits.max_message_size)
                .unwrap_or(usize::MAX),
        };
        match self
            .server
            .milters
            .run(&client, &message, &self.server.metrics)
            .await
        {
            Verdict::Accept {
                message: changed,
                sender,
                quarantine,
            } => Ok(Milted {
                message: changed.unwrap_or(message),
                sender,
                quarantine,
            }),
            Verdict::Refuse { reply, by } => {
                self.server.metrics.rejected(RejectReason::Milter);
                Err((reply, format!("milter={by}")))
            }
            Verdict::Discard(by) => {
                self.server.metrics.rejected(RejectReason::Milter);
                // The client is told the message is taken, as a milter's discard means.
                let reply = Reply::new(250, Some((2, 0, 0)), format!("Ok: queued as {id}"));
                Err((reply, format!("milter={by} discarded")))
            }
        }
    }
}
