//! Local delivery for the queue manager: DSNs to local senders, and queued recipients that turn out to be
//! hosted here, go straight into the Maildir (through the same resolution as RCPT) instead of to an MX that
//! would be this server itself.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::smtp::deliver::Target;
use crate::smtp::inbound::Context;
use crate::smtp::inbound::recipients::{self, Recipient, ResolveLimits};
use crate::smtp::queue::manager::LocalDelivery;
use crate::smtp::queue::{Envelope, Outcome, QueueId};

/// [`LocalDelivery`] over the server's store, deliverer and queue.
pub struct Local(pub Arc<Context>);

impl LocalDelivery for Local {
    fn deliver_local<'a>(
        &'a self,
        id: &'a QueueId,
        sender: &'a str,
        recipient: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Option<Outcome>> {
        Box::pin(async move {
            let server = &self.0;
            let (local, domain) = recipient.rsplit_once('@')?;
            let resolved = async {
                let mut tx = server.store.begin().await?;
                let r = recipients::resolve_parts(&mut tx, local, domain, ResolveLimits::default())
                    .await?;
                tx.rollback().await?;
                Ok::<_, crate::error::Error>(r)
            };
            let resolved = match resolved.await {
                Ok(r) => r,
                Err(e) => return Some(Outcome::Deferred(format!("local lookup failed: {e}"))),
            };
            let queue_copy = |recipients: Vec<String>| {
                let envelope = Envelope {
                    sender: sender.to_string(),
                    recipients,
                    dkim: None,
                };
                let queue = server.queue.clone();
                let body = message.to_vec();
                async move {
                    let queued = tokio::task::spawn_blocking(move || {
                        queue.enqueue(&envelope, &body, chrono::Utc::now())
                    })
                    .await;
                    matches!(queued, Ok(Ok(_)))
                }
            };
            match resolved {
                Recipient::NotLocal => None,
                // A bounce to one of our SRS addresses goes on to the original sender.
                Recipient::Returned(original) => match queue_copy(vec![original.clone()]).await {
                    true => Some(Outcome::Delivered(format!(
                        "250 2.0.0 returned to <{original}> (SRS)"
                    ))),
                    false => Some(Outcome::Deferred("cannot queue the returned copy".into())),
                },
                Recipient::BadSrs(why) => {
                    Some(Outcome::Failed(format!("550 5.1.1 <{recipient}>: {why}")))
                }
                Recipient::Unknown => Some(Outcome::Failed(format!(
                    "550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"
                ))),
                Recipient::Disabled => Some(Outcome::Failed(format!(
                    "550 5.2.1 <{recipient}>: Mailbox disabled"
                ))),
                Recipient::Local {
                    mailboxes,
                    external,
                    ..
                } => {
                    if !external.is_empty()
                        && !queue_copy(external.iter().map(|a| a.to_string()).collect()).await
                    {
                        return Some(Outcome::Deferred("cannot queue forwarded copies".into()));
                    }
                    if mailboxes.is_empty() {
                        return Some(Outcome::Delivered("250 2.0.0 forwarded".into()));
                    }
                    let targets = mailboxes
                        .into_iter()
                        .map(|m| Target {
                            mailbox: m.username,
                            maildir: m.maildir,
                            junk: false,
                        })
                        .collect();
                    match server
                        .deliverer
                        .deliver(id, sender, Arc::new(message.to_vec()), targets)
                        .await
                    {
                        Ok(_) => Some(Outcome::Delivered(format!(
                            "250 2.0.0 delivered locally to <{recipient}>"
                        ))),
                        Err(f) if f.temporary => Some(Outcome::Deferred(f.reason)),
                        Err(f) => Some(Outcome::Failed(format!("554 5.3.0 {}", f.reason))),
                    }
                }
            }
        })
    }
}

/// The sending breaker's half in the queue: recipients other servers refused as unknown count against the
/// sender's daily limit of those (`mailctl limits set ... --unknown-recipients-per-day N`); reaching it turns
/// SMTP off for the mailbox like a flood of attempts does.
pub struct Breaker(pub Arc<Context>);

impl crate::smtp::queue::manager::Refusals for Breaker {
    fn refused_unknown<'a>(&'a self, sender: &'a str, unknown: usize) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let server = &self.0;
            let Ok(address) = sender.parse::<crate::model::Address>() else {
                return;
            };
            let login = address.to_string().to_ascii_lowercase();
            let now = chrono::Utc::now();
            let counted = async {
                let mut tx = server.store.begin_write().await?;
                let limits = crate::provision::limits::effective(&mut tx, &address).await?;
                let hosted = tx.mailbox(&login).await?.is_some();
                let Some(limit) = limits.unknown_recipients_per_day.filter(|_| hosted) else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let total = crate::provision::limits::count_unknown(
                    &mut tx,
                    &login,
                    i64::try_from(unknown).unwrap_or(i64::MAX),
                    now,
                )
                .await?;
                let tripped = total >= limit.value
                    && tx.disable_smtp(&login, &crate::time::to_db(now)).await?;
                tx.commit().await?;
                Ok::<_, crate::error::Error>(Some((total, limit.value, tripped)))
            };
            match counted.await {
                Ok(Some((total, limit, true))) => {
                    let why = format!(
                        "had {total} recipients refused as unknown by other servers today, against a limit \
                         of {limit} per day"
                    );
                    crate::smtp::inbound::breaker::tripped(server, &login, &why).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "mailctl::smtp", login, error = %e,
                        "recipients refused as unknown could not be counted against the sending limits");
                }
            }
        })
    }
}
