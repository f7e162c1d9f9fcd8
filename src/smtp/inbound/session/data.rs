//! The end of DATA: the checks on the message, the trace headers, delivery, and the one reply that tells the
//! client the message is now ours (`250` only once it is on stable storage for every recipient).

use std::sync::Arc;
use std::time::Instant;

use super::received::Trace;
use super::{Session, forward, reports};
use crate::smtp::inbound::command::Reply;
use crate::smtp::metrics::RejectReason;
use crate::smtp::queue::Envelope;

impl Session {
    /// Greylisting's reply to a message on the MX listener, when it defers it (see
    /// [`crate::smtp::inbound::greylist`]); never for mail that passed DMARC.
    async fn greylisted(&self, dmarc_pass: bool) -> Option<Reply> {
        let settings = &self.server.settings.greylisting;
        let txn = self.txn.as_ref()?;
        if !settings.enabled || dmarc_pass || self.kind != crate::smtp::settings::ListenerKind::Smtp
        {
            return None;
        }
        let decided = crate::smtp::inbound::greylist::check(
            &self.server.store,
            settings,
            self.peer.ip(),
            &txn.sender,
            &txn.recipients,
            chrono::Utc::now().timestamp(),
        );
        match self.lookup("greylisting", decided).await {
            Ok(crate::smtp::inbound::greylist::Decision::Pass) | Err(()) => None,
            Ok(crate::smtp::inbound::greylist::Decision::Defer(secs)) => {
                self.server.metrics.rejected(RejectReason::Greylisted);
                Some(Reply::new(
                    451,
                    Some((4, 7, 1)),
                    format!(
                        "Greylisted: this server takes mail from new senders on retry; try again in {secs} seconds"
                    ),
                ))
            }
        }
    }

    /// Why DATA cannot start now, if it cannot.
    pub(super) fn data_refusal(&self) -> Option<Reply> {
        match &self.txn {
            None => Some(Reply::new(503, Some((5, 5, 1)), "Need MAIL command")),
            Some(txn) if txn.recipients.is_empty() => {
                Some(Reply::new(554, Some((5, 5, 1)), "No valid recipients"))
            }
            Some(_) => None,
        }
    }

    /// Judges, stamps and delivers a complete message; returns the final reply and ends the transaction.
    pub(super) async fn finish_data(&mut self, message: Vec<u8>, received_at: Instant) -> Reply {
        let Some(txn) = &self.txn else {
            return Reply::new(503, Some((5, 5, 1)), "Need MAIL command");
        };
        let size = message.len() as u64;
        let ip = self.peer.ip();
        let helo = self.helo.as_ref().map(|h| h.0.clone()).unwrap_or_default();
        let (results, junk, summary) = match &self.login {
            Some(login) => (
                self.server.checks.submission_results(&login.to_string()),
                None,
                format!("auth={login}"),
            ),
            None => {
                let conn = self.connect_checks.clone().unwrap_or_default();
                let spf = txn.spf.clone().unwrap_or_default();
                let verdict = self
                    .server
                    .checks
                    .message(&conn, &spf, ip, &helo, &txn.sender, &message)
                    .await;
                // What the report about this message says: recorded once the message is refused for good
                // or taken, never for a greylisting deferral (the retry is the same message).
                let seen = verdict
                    .dmarc
                    .as_ref()
                    .and_then(|d| d.seen.as_ref())
                    .filter(|_| {
                        self.server.settings.reports.send
                            && !txn
                                .recipients
                                .iter()
                                .any(|r| self.server.settings.reports.is_report_address(r))
                    })
                    .map(|seen| seen.event(chrono::Utc::now().timestamp()));
                if let Some(reject) = verdict.reject {
                    if let Some(event) = seen {
                        self.server.reports.record(event);
                    }
                    self.server
                        .metrics
                        .rejected(verdict.reason.unwrap_or(RejectReason::Dmarc));
                    self.finish_log(size, &verdict.summary, &reject);
                    return reject;
                }
                let dmarc_pass = verdict
                    .dmarc
                    .as_ref()
                    .is_some_and(|d| d.outcome == crate::smtp::inbound::checks::Outcome::Pass);
                if let Some(reply) = self.greylisted(dmarc_pass).await {
                    self.finish_log(size, &verdict.summary, &reply);
                    return reply;
                }
                if let Some(event) = seen {
                    self.server.reports.record(event);
                }
                (
                    verdict.authentication_results,
                    verdict
                        .junk
                        .then(|| verdict.reason.unwrap_or(RejectReason::Dmarc)),
                    verdict.summary,
                )
            }
        };
        let milted = match self.milters(message).await {
            Ok(milted) => milted,
            Err((reply, why)) => {
                self.finish_log(size, &format!("{summary} {why}"), &reply);
                return reply;
            }
        };
        let Some(txn) = &self.txn else {
            return Reply::new(503, Some((5, 5, 1)), "Need MAIL command");
        };
        // A quarantined message a user sends to other servers is not sent at all: it could leave before a
        // hold set after queueing took effect.
        if milted.quarantine.is_some()
            && self.login.is_some()
            && (!txn.remote.is_empty() || !txn.returned.is_empty())
        {
            let reply = Reply::new(
                554,
                Some((5, 7, 1)),
                "Message quarantined by a content filter, not sent",
            );
            self.server.metrics.rejected(RejectReason::Milter);
            let why = milted.quarantine.unwrap_or_default();
            self.finish_log(size, &format!("{summary} quarantine=({why})"), &reply);
            return reply;
        }
        let message = milted.message;
        let size = message.len() as u64;
        let (junk, summary) = match &milted.quarantine {
            Some(why) => (
                junk.or(Some(RejectReason::Milter)),
                format!("{summary} quarantine=({why})"),
            ),
            None => (junk, summary),
        };
        if let ([_], [(quota, used)]) = (txn.targets.as_slice(), txn.quotas.as_slice())
            && *quota > 0
            && used.saturating_add(size) > *quota
        {
            let reply = Reply::new(552, Some((5, 2, 2)), "Mailbox full");
            self.server.metrics.rejected(RejectReason::Quota);
            self.finish_log(size, &summary, &reply);
            return reply;
        }
        let trace = Trace {
            helo: &helo,
            ptr: self.connect_checks.as_ref().and_then(|c| c.ptr.as_deref()),
            ip,
            hostname: &self.server.settings.hostname,
            esmtp: self.helo.as_ref().is_some_and(|h| h.1),
            tls: self.tls.as_deref(),
            authenticated: self.login.is_some(),
            id: txn.id.as_str(),
            single_recipient: match txn.recipients.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            },
        };
        let received = trace.header();
        let mut stamped = Vec::with_capacity(results.len() + received.len() + message.len());
        stamped.extend_from_slice(results.as_bytes());
        stamped.extend_from_slice(received.as_bytes());
        let trace_len = stamped.len();
        stamped.extend_from_slice(&message);
        drop(message);
        let targets: Vec<crate::smtp::deliver::Target> = txn
            .targets
            .iter()
            .cloned()
            .map(|mut t| {
                t.junk = junk.is_some();
                t
            })
            .collect();
        let id = txn.id.clone();
        let sender = milted.sender.unwrap_or_else(|| txn.sender.clone());
        let stamped = Arc::new(stamped);
        // Reports other servers send us are stored before the reply; without `keep` they need no delivery.
        if self.login.is_none()
            && junk.is_none()
            && self
                .take_reports(&id.to_string(), &sender, &txn.recipients, stamped.clone())
                .await
                == reports::Taken::Stored
        {
            self.server
                .metrics
                .accepted(self.kind, received_at.elapsed());
            let reply = Reply::new(250, Some((2, 0, 0)), format!("Ok: queued as {id}"));
            self.finish_log(size, &summary, &reply);
            return reply;
        }
        // Remote recipients first: once the queue holds the message, local delivery follows; if that fails,
        // the queue entry is taken back out, so a retrying client never causes a second remote copy.
        let queued = if self.login.is_some() {
            // A logged-in user's mail to an SRS address of ours goes where the address leads, like any remote
            // recipient.
            let mut remote = txn.remote.clone();
            remote.extend(txn.returned.iter().cloned());
            let queued = !remote.is_empty();
            if queued && let Err(reply) = self.queue_remote(&id, &sender, remote, &stamped).await {
                self.finish_log(size, &summary, &reply);
                return reply;
            }
            queued
        } else {
            let input = forward::Inputs {
                sender: &sender,
                remote: &txn.remote,
                returned: &txn.returned,
                forwarders: &txn.forwarders,
                message: &stamped[trace_len..],
                stamped: &stamped,
                junk,
                helo: &helo,
                spf: txn.spf.as_ref().and_then(|s| s.eval.as_ref()),
            };
            match self.forward(input).await {
                Err(reply) => {
                    self.server.metrics.rejected(RejectReason::Tempfail);
                    self.finish_log(size, &summary, &reply);
                    return reply;
                }
                Ok(forward::Decision::Nothing) => false,
                Ok(forward::Decision::HeldBack(why, reason)) if targets.is_empty() => {
                    let reply = Reply::new(550, Some((5, 7, 1)), format!("Not forwarded: {why}"));
                    self.server.metrics.rejected(reason);
                    self.finish_log(size, &summary, &reply);
                    return reply;
                }
                Ok(forward::Decision::HeldBack(..)) => false,
                Ok(forward::Decision::Send(copy)) => {
                    let envelope = Envelope {
                        sender: copy.sender,
                        recipients: copy.recipients,
                        dkim: copy.dkim,
                    };
                    if let Err(reply) = self.enqueue(&id, envelope, copy.body).await {
                        self.finish_log(size, &summary, &reply);
                        return reply;
                    }
                    true
                }
            }
        };
        // Who may owe the sender a vacation reply: not for mail filed as Junk.
        let answering: Vec<String> = if junk.is_none() {
            targets.iter().map(|t| t.mailbox.clone()).collect()
        } else {
            Vec::new()
        };
        let outcome = if targets.is_empty() {
            Ok(Vec::new())
        } else {
            self.server
                .deliverer
                .deliver(&id, &sender, stamped.clone(), targets)
                .await
        };
        match (&outcome, queued) {
            (Err(_), true) => self.unqueue(&id).await,
            (Ok(_), true) => self.server.wake_queue(),
            _ => {}
        }
        let reply = match outcome {
            Ok(failed) => {
                for (target, failure) in &failed {
                    tracing::error!(target: "mailctl::smtp", id = %id, mailbox = %target.mailbox,
                        reason = %failure.reason, "delivery to one recipient failed after the others succeeded");
                }
                // Each delivered mailbox with the RCPTs that led to it.
                let delivered = answering
                    .into_iter()
                    .filter(|m| failed.iter().all(|(t, _)| t.mailbox != *m))
                    .map(|m| {
                        let rcpts = txn
                            .led_to
                            .iter()
                            .filter(|(mailbox, _)| *mailbox == m)
                            .map(|(_, rcpt)| rcpt.clone())
                            .collect();
                        (m, rcpts)
                    })
                    .collect();
                crate::smtp::inbound::vacation::after_delivery(
                    self.server.clone(),
                    delivered,
                    sender.clone(),
                    stamped.clone(),
                );
                self.server
                    .metrics
                    .accepted(self.kind, received_at.elapsed());
                // Where the message was filed (INBOX or Junk) is the recipient's business, not the sender's.
                Reply::new(250, Some((2, 0, 0)), format!("Ok: queued as {id}"))
            }
            Err(failure) => {
                tracing::warn!(target: "mailctl::smtp", id = %id, reason = %failure.reason, "delivery failed");
                self.server.metrics.rejected(RejectReason::Tempfail);
                if failure.temporary {
                    Reply::new(
                        451,
                        Some((4, 3, 0)),
                        "Temporary local problem, try again later",
                    )
                } else {
                    Reply::new(
                        554,
                        Some((5, 3, 0)),
                        format!("Delivery failed: {}", failure.reason),
                    )
                }
            }
        };
        if reply.is_positive()
            && let Some(sending) = txn.sending.as_deref()
        {
            self.count_sent(sending, &txn.recipients);
        }
        self.finish_log(size, &summary, &reply);
        reply
    }
}
