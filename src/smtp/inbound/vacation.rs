//! Vacation auto-replies (RFC 3834), sent by `serve` for the mailboxes postfixadmin's `vacation` table says are
//! away, in place of postfixadmin's `vacation.pl`.
//!
//! After a message is delivered to local mailboxes (never one filed as Junk, never one refused), the sender is
//! answered once per vacation (or once per `interval_time`), unless the message is itself automatic: a null
//! sender, a `noreply`/`MAILER-DAEMON`/list-robot sender, `Auto-Submitted` other than `no`, `Precedence:
//! bulk|list|junk`, `List-*` fields, `X-Loop`, a spam flag or `X-Auto-Response-Suppress`. Whom was answered when
//! is in `vacation_notification`, so every node sharing the database (and a postfixadmin) agrees. The reply
//! (`Auto-Submitted: auto-replied`, `In-Reply-To`/`References`, null envelope sender so nothing answers it back)
//! is DKIM-signed with the mailbox's domain key and queued like any outbound mail.
//!
//! The work happens after the `250`, in a task of its own. Which mailboxes are away is read once every
//! [`REFRESH`] for all of them, so ordinary mail costs no query: a vacation set or switched off takes effect
//! within that time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::Context;
use crate::model::DomainName;
use crate::smtp::queue::Envelope;

/// How long the set of away mailboxes is trusted.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The mailboxes that are away (an active vacation row whose period has not ended), read at most every
/// [`REFRESH`].
#[derive(Debug, Default)]
pub struct Away {
    loaded: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl Away {
    async fn mailboxes(&self, server: &Context) -> Option<Arc<HashSet<String>>> {
        if let Ok(guard) = self.loaded.lock()
            && let Some((at, set)) = guard.as_ref()
            && at.elapsed() < REFRESH
        {
            return Some(set.clone());
        }
        let read = async {
            let mut tx = server.store.begin().await?;
            let away = tx.away_mailboxes(&crate::time::now_db()).await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(away)
        };
        match read.await {
            Ok(away) => {
                let set = Arc::new(away.into_iter().collect::<HashSet<_>>());
                if let Ok(mut guard) = self.loaded.lock() {
                    *guard = Some((Instant::now(), set.clone()));
                }
                Some(set)
            }
            Err(e) => {
                tracing::warn!(target: "mailctl::smtp", error = %e, "vacation: cannot read who is away");
                None
            }
        }
    }
}

/// After delivery of `message` from `sender` to `mailboxes`: answers for those away, in a task of its own.
pub fn after_delivery(
    server: Arc<Context>,
    mailboxes: Vec<String>,
    sender: String,
    message: Arc<Vec<u8>>,
) {
    if mailboxes.is_empty() || sender.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let Some(away) = server.away.mailboxes(&server).await else {
            return;
        };
        let mut answering: Vec<String> = mailboxes
            .into_iter()
            .filter(|m| away.contains(m) && !m.eq_ignore_ascii_case(&sender))
            .collect();
        answering.dedup();
        if answering.is_empty() {
            return;
        }
        let incoming = match screen(&sender, &message) {
            Ok(incoming) => incoming,
            Err(why) => {
                tracing::debug!(target: "mailctl::smtp", sender, "vacation: no reply: {why}");
                return;
            }
        };
        for mailbox in answering {
            if let Err(e) = respond(&server, &mailbox, &sender, &incoming).await {
                tracing::warn!(target: "mailctl::smtp", mailbox, sender, error = %e,
                    "vacation: the reply could not be sent");
            }
        }
    });
}

/// What of the incoming message the reply refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Its `Message-ID`, with the angle brackets.
    pub message_id: Option<String>,
    /// Its `References`.
    pub references: Option<String>,
}

/// Senders that are robots (vacation.pl's list).
const ROBOT_PREFIXES: &[&str] = &[
    "noreply",
    "no-reply",
    "no_reply",
    "do_not_reply",
    "do-not-reply",
    "donotreply",
    "postmaster",
    "mailer-daemon",
    "listserv",
    "majordomo",
    "owner-",
    "request-",
    "bounces-",
    "bounce-",
];

/// Whether a message from `sender` may be answered: `Err` says why not.
pub fn screen(sender: &str, message: &[u8]) -> Result<Incoming, &'static str> {
    let sender = sender.to_ascii_lowercase();
    let local = sender.rsplit_once('@').map_or(sender.as_str(), |(l, _)| l);
    if sender.is_empty() {
        return Err("null sender");
    }
    if ROBOT_PREFIXES.iter().any(|p| local.starts_with(p))
        || ["-owner", "-request", "-bounces"]
            .iter()
            .any(|s| local.ends_with(s))
    {
        return Err("the sender is a robot");
    }
    let mut incoming = Incoming {
        message_id: None,
        references: None,
    };
    for (name, value) in fields(message) {
        let v = value.trim().to_ascii_lowercase();
        match name.as_str() {
            "auto-submitted" if v != "no" => return Err("Auto-Submitted"),
            "precedence" if matches!(v.as_str(), "bulk" | "list" | "junk") => {
                return Err("Precedence bulk, list or junk");
            }
            "list-id" | "list-post" | "list-unsubscribe" => return Err("mailing list"),
            "x-loop" => return Err("X-Loop"),
            "x-spam-flag" | "x-spam" if v.starts_with("yes") => return Err("marked as spam"),
            "x-spam-status" if v.starts_with("yes") => return Err("marked as spam"),
            "x-autogenerated" if v == "reply" => return Err("X-Autogenerated"),
            "x-auto-response-suppress" if v.contains("oof") || v.contains("all") => {
                return Err("X-Auto-Response-Suppress");
            }
            "message-id" => incoming.message_id = Some(value.trim().to_string()),
            "references" => incoming.references = Some(value.trim().to_string()),
            _ => {}
        }
    }
    Ok(incoming)
}

/// The header fields of `message`, names lower-case, values unfolded.
fn fields(message: &[u8]) -> Vec<(String, String)> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    let head = String::from_utf8_lossy(&message[..end]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

/// Answers `sender` for `mailbox` if its vacation is on and the sender was not told too recently.
async fn respond(
    server: &Context,
    mailbox: &str,
    sender: &str,
    incoming: &Incoming,
) -> crate::error::Result<()> {
    let now = Utc::now();
    let mut tx = server.store.begin_write().await?;
    let Some(vacation) = tx.vacation_now(mailbox, &crate::time::to_db(now)).await? else {
        tx.rollback().await?;
        return Ok(());
    };
    let sender_key = sender.to_ascii_lowercase();
    if !tx
        .vacation_notify(mailbox, &sender_key, vacation.interval_time, now)
        .await?
    {
        tx.rollback().await?;
        return Ok(());
    }
    let domain = DomainName::from_stored(mailbox.rsplit_once('@').map_or("", |(_, d)| d));
    let key = crate::provision::dkim::active_key(&mut tx, &domain).await?;
    tx.commit().await?;
    let reply = message(
        &server.settings.hostname,
        mailbox,
        sender,
        &vacation.subject,
        &vacation.body,
        incoming,
        now,
    );
    let (body, dkim) = match key {
        Some(key) => {
            let domain = domain.clone();
            match tokio::task::spawn_blocking(move || {
                crate::provision::dkim::sign_with(&key, &domain, &reply).map_err(|e| (e, reply))
            })
            .await
            {
                Ok(Ok((signed, note))) => (signed, Some(note)),
                Ok(Err((e, unsigned))) => {
                    tracing::warn!(target: "mailctl::smtp", mailbox, error = %e, "vacation: reply sent unsigned");
                    (unsigned, None)
                }
                Err(e) => return Err(crate::error::Error::refused(format!("signing failed: {e}"))),
            }
        }
        None => (reply, None),
    };
    let envelope = Envelope {
        sender: String::new(),
        recipients: vec![sender.to_string()],
        dkim,
    };
    let queue = server.queue.clone();
    tokio::task::spawn_blocking(move || queue.enqueue(&envelope, &body, Utc::now()))
        .await
        .map_err(|e| crate::error::Error::refused(format!("queue task failed: {e}")))?
        .map_err(|e| crate::error::Error::refused(format!("cannot queue the reply: {e}")))?;
    server.wake_queue();
    tracing::info!(target: "mailctl::smtp", mailbox, sender, "vacation: replied");
    Ok(())
}

/// The reply (RFC 3834): from the mailbox to the sender, `Auto-Submitted: auto-replied`, referring to the
/// message it answers.
pub fn message(
    hostname: &str,
    mailbox: &str,
    sender: &str,
    subject: &str,
    body: &str,
    incoming: &Incoming,
    now: chrono::DateTime<Utc>,
) -> Vec<u8> {
    let id = crate::smtp::queue::QueueId::generate(now);
    let mut head = vec![
        format!("From: <{mailbox}>"),
        format!("To: <{sender}>"),
        format!("Subject: {}", encode_subject(subject)),
        format!("Date: {}", now.to_rfc2822()),
        format!("Message-ID: <{id}.vacation@{hostname}>"),
    ];
    if let Some(original) = &incoming.message_id {
        head.push(format!("In-Reply-To: {original}"));
        let references = match &incoming.references {
            Some(r) => format!("{r} {original}"),
            None => original.clone(),
        };
        head.push(format!("References: {references}"));
    }
    head.extend([
        "Auto-Submitted: auto-replied".to_string(),
        "X-Loop: mailctl vacation".to_string(),
        "Precedence: junk".to_string(),
        "MIME-Version: 1.0".to_string(),
        "Content-Type: text/plain; charset=utf-8".to_string(),
        format!(
            "Content-Transfer-Encoding: {}",
            if body.is_ascii() { "7bit" } else { "8bit" }
        ),
    ]);
    let mut text = head.join("\r\n");
    text.push_str("\r\n\r\n");
    for line in body.replace("\r\n", "\n").trim_end().split('\n') {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// A subject as a header value: as it is when ASCII, else RFC 2047 encoded words of at most 45 bytes of text
/// each (whole characters), folded.
fn encode_subject(subject: &str) -> String {
    if subject.is_ascii() {
        return subject.to_string();
    }
    use base64::Engine as _;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in subject.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &[u8] =
        b"From: <a@far.test>\r\nMessage-ID: <m1@far.test>\r\nReferences: <m0@far.test>\r\n\
        Subject: hi\r\n\r\nbody\r\n";

    fn with(field: &str) -> Vec<u8> {
        let mut m = format!("{field}\r\n").into_bytes();
        m.extend_from_slice(PLAIN);
        m
    }

    #[test]
    fn automatic_mail_and_robots_are_never_answered() {
        assert_eq!(
            screen("a@far.test", PLAIN),
            Ok(Incoming {
                message_id: Some("<m1@far.test>".into()),
                references: Some("<m0@far.test>".into()),
            })
        );
        for field in [
            "Auto-Submitted: auto-replied",
            "Auto-Submitted: auto-generated",
            "Precedence: bulk",
            "Precedence: list",
            "Precedence: junk",
            "List-Id: <list.far.test>",
            "List-Unsubscribe: <mailto:u@far.test>",
            "X-Loop: something",
            "X-Spam-Flag: YES",
            "X-Auto-Response-Suppress: OOF, AutoReply",
        ] {
            assert!(screen("a@far.test", &with(field)).is_err(), "{field}");
        }
        assert!(screen("a@far.test", &with("Auto-Submitted: no")).is_ok());
        assert!(screen("a@far.test", &with("Precedence: first-class")).is_ok());
        for sender in [
            "",
            "noreply@far.test",
            "no-reply@far.test",
            "MAILER-DAEMON@far.test",
            "postmaster@far.test",
            "owner-list@far.test",
            "list-request@far.test",
            "news-bounces@far.test",
        ] {
            assert!(screen(sender, PLAIN).is_err(), "{sender}");
        }
    }

    #[test]
    fn the_reply_refers_to_the_message_and_says_it_is_automatic() {
        let incoming = screen("a@far.test", PLAIN).unwrap();
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let m = message(
            "mx.example.org",
            "bob@example.org",
            "a@far.test",
            "Abwesend bis Montag – Grüße",
            "Back on Monday.\nBob",
            &incoming,
            now,
        );
        let text = String::from_utf8(m).unwrap();
        assert!(
            text.contains("\r\nAuto-Submitted: auto-replied\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nIn-Reply-To: <m1@far.test>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nReferences: <m0@far.test> <m1@far.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("Subject: =?UTF-8?B?"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nBack on Monday.\r\nBob\r\n"),
            "{text}"
        );
        assert!(
            text.lines().all(|l| l.len() <= 78 || l.starts_with("Date")),
            "{text}"
        );
    }
}
