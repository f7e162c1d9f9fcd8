//! Sending limits of logged-in users ([`crate::provision::limits`]): checked at MAIL (messages per hour) and at
//! each RCPT (recipients and new recipients per day), counted once the message is accepted. Over a limit the
//! reply is `450 4.7.1` (the client retries later), and the refused attempt counts towards the breaker: at
//! [`limits::BREAKER_FACTOR`] times the hourly limit in one hour, SMTP is turned off for the mailbox, its queued
//! mail is held and the postmaster gets one notice.
//!
//! Without any limit for the login (no `default`, domain or address row) nothing is counted: one read per MAIL
//! is the whole cost. A database that does not answer in time refuses the MAIL for now (`451`), like every
//! other lookup of the session. Counting is in memory, written within a second ([`super::super::send_counter`]),
//! so the submission path has no write of its own.

use chrono::Utc;

use super::{Session, temporary_failure};
use crate::model::Address;
use crate::provision::limits::{self, Limits, Usage};
use crate::smtp::inbound::command::{ForwardPath, Reply};
use crate::smtp::metrics::RejectReason;
use crate::store::SendUsageRow;

/// The limits of the transaction's login and what it sent before this message.
#[derive(Debug, Clone)]
pub(super) struct Sending {
    login: String,
    limits: Limits,
    usage: Usage,
    /// Accepted recipients the login never wrote to before.
    new: Vec<String>,
}

fn over(what: &str) -> Reply {
    Reply::new(
        450,
        Some((4, 7, 1)),
        format!("Sending limit reached: {what}; try again later"),
    )
}

impl Sending {
    /// Notes an accepted recipient the login never wrote to.
    pub(super) fn note_new(&mut self, recipient: String) {
        if !self.new.contains(&recipient) {
            self.new.push(recipient);
        }
    }
}

impl Session {
    /// At MAIL of `login`: the limits in force (None: no limit, nothing counted), or the reply refusing this
    /// message (over the hourly limit; the breaker may trip).
    pub(super) async fn sending_limits(
        &self,
        login: &Address,
    ) -> Result<Option<Box<Sending>>, Reply> {
        let address = login.to_string().to_ascii_lowercase();
        let now = Utc::now();
        let read = async {
            let mut tx = self.server.store.begin().await?;
            let limits = limits::effective(&mut tx, login).await?;
            let usage = if limits.is_empty() {
                Usage::default()
            } else {
                self.server
                    .send_counter
                    .usage(&mut tx, &address, now)
                    .await?
            };
            tx.rollback().await?;
            Ok::<_, crate::error::Error>((limits, usage))
        };
        let Ok((limits, usage)) = self.lookup("MAIL", read).await else {
            self.server.metrics.rejected(RejectReason::Tempfail);
            return Err(temporary_failure());
        };
        if limits.is_empty() {
            return Ok(None);
        }
        if let Some(limit) = &limits.messages_per_hour
            && usage.hour.messages >= limit.value
        {
            self.refused_over_limit(&address, limit.value).await;
            return Err(over(&format!("{} messages per hour", limit.value)));
        }
        Ok(Some(Box::new(Sending {
            login: address,
            limits,
            usage,
            new: Vec::new(),
        })))
    }

    /// At RCPT: whether one more recipient `to` stays within the daily limits; Ok names the recipient when it
    /// is one the login never wrote to (counted once the RCPT is accepted).
    pub(super) async fn recipient_within_limits(
        &self,
        to: &ForwardPath,
    ) -> Result<Option<String>, Reply> {
        let Some(sending) = self.txn.as_ref().and_then(|t| t.sending.as_deref()) else {
            return Ok(None);
        };
        let ForwardPath::Path(path) = to else {
            return Ok(None);
        };
        let accepted = self.txn.as_ref().map_or(0, |t| t.recipients.len()) as i64;
        if let Some(limit) = &sending.limits.recipients_per_day
            && sending.usage.day.recipients + accepted >= limit.value
        {
            self.server.metrics.rejected(RejectReason::SendLimit);
            tracing::info!(target: "mailctl::smtp", login = %sending.login, limit = limit.value,
                "RCPT refused: recipients per day");
            return Err(over(&format!("{} recipients per day", limit.value)));
        }
        let Some(limit) = &sending.limits.new_recipients_per_day else {
            return Ok(None);
        };
        let recipient = path.to_string().to_ascii_lowercase();
        if sending.new.contains(&recipient)
            || self
                .server
                .send_counter
                .knows_recipient(&sending.login, &recipient)
        {
            return Ok(None);
        }
        let read = async {
            let mut tx = self.server.store.begin().await?;
            let known = tx
                .known_recipients(&sending.login, std::slice::from_ref(&recipient))
                .await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(!known.is_empty())
        };
        let Ok(known) = self.lookup("RCPT", read).await else {
            self.server.metrics.rejected(RejectReason::Tempfail);
            return Err(temporary_failure());
        };
        if known {
            return Ok(None);
        }
        if sending.usage.day.new_recipients + sending.new.len() as i64 >= limit.value {
            self.server.metrics.rejected(RejectReason::SendLimit);
            tracing::info!(target: "mailctl::smtp", login = %sending.login, limit = limit.value,
                "RCPT refused: new recipients per day");
            return Err(over(&format!("{} new recipients per day", limit.value)));
        }
        Ok(Some(recipient))
    }

    /// After the message was accepted: counts it for its login (in memory; written within a second).
    pub(super) fn count_sent(&self, sending: &Sending, recipients: &[String]) {
        self.server.send_counter.message(
            &sending.login,
            recipients.len(),
            &sending.new,
            Utc::now(),
        );
    }

    /// Counts a MAIL refused over the hourly `limit` and trips the breaker at its threshold.
    async fn refused_over_limit(&self, login: &str, limit: i64) {
        self.server.metrics.rejected(RejectReason::SendLimit);
        let now = Utc::now();
        let counter = &self.server.send_counter;
        counter.add(SendUsageRow {
            address: login.to_string(),
            period: limits::hour(now),
            refused: 1,
            ..SendUsageRow::default()
        });
        // A read to count the attempts; a write only when the breaker trips (`disable_smtp` changes the row
        // once, so of two sessions tripping at once only one goes on).
        let decide = async {
            let mut tx = self.server.store.begin().await?;
            let usage = counter.usage(&mut tx, login, now).await?;
            tx.rollback().await?;
            let attempts = usage.hour.messages + usage.hour.refused;
            if !limits::trips(attempts, limit) {
                return Ok::<_, crate::error::Error>((attempts, false));
            }
            let mut tx = self.server.store.begin_write().await?;
            let tripped = tx.disable_smtp(login, &crate::time::to_db(now)).await?;
            tx.commit().await?;
            Ok((attempts, tripped))
        };
        let Ok((attempts, tripped)) = self.lookup("MAIL", decide).await else {
            return;
        };
        tracing::info!(target: "mailctl::smtp", login, limit, attempts, "MAIL refused: messages per hour");
        if tripped {
            let why = format!(
                "tried to send {attempts} messages within one hour, against a limit of {limit} per hour"
            );
            crate::smtp::inbound::breaker::tripped(&self.server, login, &why).await;
        }
    }
}
