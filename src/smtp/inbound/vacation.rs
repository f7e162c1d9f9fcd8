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
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::Context;
use crate::model::DomainName;

/// How long the set of away mailboxes is trusted.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The mailboxes that are away (an active vacation row whose period has not ended), read at most every
/// [`REFRESH`].
#[derive(Debug)]
pub struct Away {
    mailboxes: crate::smtp::cached::Cached<HashSet<String>>,
    /// Replies worked on at once: a burst of mail to an away mailbox waits here instead of taking every
    /// database connection.
    permits: tokio::sync::Semaphore,
}

impl Default for Away {
    fn default() -> Self {
        Away {
            mailboxes: crate::smtp::cached::Cached::new(REFRESH),
            permits: tokio::sync::Semaphore::new(2),
        }
    }
}

impl Away {
    async fn mailboxes(&self, server: &Context) -> Option<Arc<HashSet<String>>> {
        let load = || async {
            let read = async {
                let mut tx = server.store.begin().await?;
                let away = tx.away_mailboxes(&crate::time::now_db()).await?;
                tx.rollback().await?;
                Ok::<_, crate::error::Error>(away)
            };
            match read.await {
                Ok(away) => Some(away.into_iter().collect::<HashSet<_>>()),
                Err(e) => {
                    tracing::warn!(target: "mailctl::smtp", error = %e, "vacation: cannot read who is away");
                    None
                }
            }
        };
        self.mailboxes.get(load).await
    }
}

/// After delivery of `message` from `sender` to `mailboxes`: answers for those away, in a task of its own.
///
/// `mailboxes` come each with the RCPT addresses that led to it: as RFC 3834 asks, only mail that names the
/// mailbox (or one of those addresses) in `To`, `Cc`, `Resent-To` or `Resent-Cc` is answered, never a Bcc or
/// a list, even when another recipient of the same message is named.
pub fn after_delivery(
    server: Arc<Context>,
    mailboxes: Vec<(String, Vec<String>)>,
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
        // Each mailbox comes once (the session's targets are unique).
        let answering: Vec<(String, Vec<String>)> = mailboxes
            .into_iter()
            .filter(|(m, _)| away.contains(m) && !m.eq_ignore_ascii_case(&sender))
            .collect();
        if answering.is_empty() {
            return;
        }
        let Ok(_permit) = server.away.permits.acquire().await else {
            return;
        };
        let incoming = match screen(&sender, &message) {
            Ok(incoming) => incoming,
            Err(why) => {
                tracing::debug!(target: "mailctl::smtp", sender, "vacation: no reply: {why}");
                return;
            }
        };
        for (mailbox, rcpts) in answering {
            let named = std::iter::once(&mailbox)
                .chain(&rcpts)
                .any(|a| incoming.addressed.contains(&a.to_ascii_lowercase()));
            if !named {
                tracing::debug!(target: "mailctl::smtp", mailbox, sender,
                    "vacation: no reply: the mailbox is not in To or Cc");
                continue;
            }
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
    /// Its `Message-ID`, with the angle brackets (only a well-formed one).
    pub message_id: Option<String>,
    /// Its `References`: the well-formed ids, at most the last [`MAX_REFERENCES`].
    pub references: Vec<String>,
    /// The addresses in its `To`, `Cc`, `Resent-To` and `Resent-Cc`, lower-case.
    pub addressed: Vec<String>,
}

/// The most message ids carried on in `References`.
pub const MAX_REFERENCES: usize = 10;

/// The `<id@host>` tokens of a header value that are well-formed printable ASCII.
fn message_ids(value: &str) -> Vec<String> {
    value
        .split('<')
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(id, _)| id))
        .filter(|id| {
            id.contains('@')
                && id.len() <= 250
                && id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
        })
        .map(|id| format!("<{id}>"))
        .collect()
}

/// The addresses of an address-list header value, lower-case (words with an `@` between delimiters).
fn addresses(value: &str) -> Vec<String> {
    value
        .split([',', ';', '<', '>', ' ', '\t', '"', '(', ')'])
        .filter(|w| w.contains('@'))
        .map(|w| w.trim().to_ascii_lowercase())
        .collect()
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
        references: Vec::new(),
        addressed: Vec::new(),
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
            "message-id" => incoming.message_id = message_ids(&value).into_iter().next(),
            "references" => {
                let ids = message_ids(&value);
                let skip = ids.len().saturating_sub(MAX_REFERENCES);
                incoming.references = ids.into_iter().skip(skip).collect();
            }
            "to" | "cc" | "resent-to" | "resent-cc" => incoming.addressed.extend(addresses(&value)),
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
    let sender_key = sender.to_ascii_lowercase();
    // A read first: mail from someone already told needs no write transaction at all.
    let mut tx = server.store.begin().await?;
    let vacation = tx.vacation_now(mailbox, &crate::time::to_db(now)).await?;
    let due = match &vacation {
        Some(v) => {
            tx.vacation_due(mailbox, &sender_key, v.interval_time, now)
                .await?
        }
        None => false,
    };
    let domain = DomainName::from_stored(mailbox.rsplit_once('@').map_or("", |(_, d)| d));
    let key = match due {
        true => crate::provision::dkim::active_key(&mut tx, &domain).await?,
        false => None,
    };
    tx.rollback().await?;
    let Some(vacation) = vacation.filter(|_| due) else {
        return Ok(());
    };
    // The write transaction only claims the reply (the one writer of SQLite is held for no read).
    let mut tx = server.store.begin_write().await?;
    if !tx
        .vacation_notify(mailbox, &sender_key, vacation.interval_time, now)
        .await?
    {
        tx.rollback().await?;
        return Ok(());
    }
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
    server
        .queue_generated(sender.to_string(), body, dkim)
        .await
        .map_err(|e| crate::error::Error::refused(format!("cannot queue the reply: {e}")))?;
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
        let mut references = incoming.references.clone();
        references.push(original.clone());
        head.push(format!("References: {}", references.join("\r\n ")));
    }
    head.extend([
        "Auto-Submitted: auto-replied".to_string(),
        "X-Loop: mailctl vacation".to_string(),
        "Precedence: junk".to_string(),
        "MIME-Version: 1.0".to_string(),
        "Content-Type: text/plain; charset=utf-8".to_string(),
    ]);
    // The text as stored (postfixadmin's portal writes it too): every line break made CRLF, control characters
    // but tab dropped; base64 when it is not short-lined ASCII.
    let lines: Vec<String> = body
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim_end()
        .split('\n')
        .map(|l| {
            l.chars()
                .filter(|c| *c == '\t' || !c.is_control())
                .collect()
        })
        .collect();
    let plain = lines.join("\r\n") + "\r\n";
    let encoded = if plain.is_ascii() && lines.iter().all(|l| l.len() <= 998) {
        head.push("Content-Transfer-Encoding: 7bit".to_string());
        plain
    } else {
        use base64::Engine as _;
        head.push("Content-Transfer-Encoding: base64".to_string());
        let b64 = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
        let mut wrapped = String::with_capacity(b64.len() + b64.len() / 38);
        for chunk in b64.as_bytes().chunks(76) {
            wrapped.push_str(&String::from_utf8_lossy(chunk));
            wrapped.push_str("\r\n");
        }
        wrapped
    };
    let mut text = head.join("\r\n");
    text.push_str("\r\n\r\n");
    text.push_str(&encoded);
    text.into_bytes()
}

/// A subject as a header value: as it is when ASCII, else RFC 2047 encoded words of at most 45 bytes of text
/// each (whole characters), folded.
fn encode_subject(subject: &str) -> String {
    // As stored (by postfixadmin too): no control characters, so nothing can start a header line.
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    if subject.is_ascii() && subject.len() <= 66 {
        return subject;
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
        b"From: <a@far.test>\r\nTo: Bob <Bob@Example.org>\r\nMessage-ID: <m1@far.test>\r\nReferences: <m0@far.test>\r\n\
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
                references: vec!["<m0@far.test>".into()],
                addressed: vec!["bob@example.org".into()],
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
            text.contains("\r\nReferences: <m0@far.test>\r\n <m1@far.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("Subject: =?UTF-8?B?"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
        // A text stored with stray CRs, control characters, 8-bit and a long line travels as base64; a subject
        // with a line break cannot add a field.
        let odd = message(
            "mx.example.org",
            "bob@example.org",
            "a@far.test",
            "Away\r\nBcc: victim@far.test",
            &format!("Grüße\rzwei\u{7}\n{}", "x".repeat(1200)),
            &incoming,
            now,
        );
        let odd = String::from_utf8(odd).unwrap();
        assert!(!odd.contains("\r\nBcc:"), "{odd}");
        assert!(odd.contains("Content-Transfer-Encoding: base64"), "{odd}");
        assert!(odd.split("\r\n").all(|l| l.len() <= 998), "{odd}");
        let ids = message_ids("<a@b> junk <no-at> <c@d\u{1}> <e@f>");
        assert_eq!(ids, ["<a@b>", "<e@f>"]);
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
