//! Telling the sender: after the results are recorded, one DSN for the failures not yet notified and one
//! delay warning when it is due, each sent (locally or through the queue with the null sender) before it is
//! noted in the entry.

use chrono::{DateTime, Utc};

use super::process::StepError;
use super::{Inner, TARGET};
use crate::smtp::outbound::dsn::{self, Diagnostic, Dsn, RecipientStatus, Report};
use crate::smtp::queue::backoff::delta;
use crate::smtp::queue::{
    Claimed, Entry, Envelope, Notice, Outcome, QueueId, Recipient, Recorded, Status,
};

/// Enhanced status of a failure whose reply carried none.
const DEFAULT_FAILED: &str = "5.0.0";
/// Enhanced status of a recipient that expired without a usable reply (RFC 3463: delivery time expired).
const DEFAULT_EXPIRED: &str = "4.4.7";
/// Enhanced status of a delay whose last reply carried none.
const DEFAULT_DELAYED: &str = "4.0.0";

/// Sends and notes the DSN for every failure not yet notified (also those left by a run that crashed
/// after `record`), then the delay warning if it is due.
pub(super) async fn send_notices(
    inner: &Inner,
    claimed: &Claimed,
    recorded: &Recorded,
    body: &[u8],
) -> Result<(), StepError> {
    let entry = &recorded.entry;
    let failures = entry.unnotified_failures();
    if !failures.is_empty() {
        let statuses: Vec<RecipientStatus> = failures.iter().map(|r| failed_status(r)).collect();
        let built = dsn::bounce(&report(inner, entry, body), &statuses);
        send(inner, entry, built, "bounce").await?;
        let notice = Notice::Failures(failures.iter().map(|r| r.address.clone()).collect());
        let c = claimed.clone();
        inner.blocking(move |q| q.note(&c, &notice)).await?;
    }
    if recorded.delay_warning_due {
        let until = entry.created + delta(inner.backoff.give_up_after);
        let statuses: Vec<RecipientStatus> =
            entry.pending().map(|r| delayed_status(r, until)).collect();
        let built = dsn::delay_warning(&report(inner, entry, body), &statuses);
        send(inner, entry, built, "delay warning").await?;
        let c = claimed.clone();
        inner
            .blocking(move |q| q.note(&c, &Notice::DelayWarning))
            .await?;
    }
    Ok(())
}

/// What the DSN says about the original message.
fn report<'a>(inner: &'a Inner, entry: &'a Entry, body: &'a [u8]) -> Report<'a> {
    Report {
        reporting_mta: &inner.hostname,
        original_sender: &entry.sender,
        arrival_date: entry.created,
        original_message: body,
        original_envelope_id: None,
    }
}

/// Delivers a DSN locally when its recipient is hosted here, else queues it with the null sender. A DSN
/// that cannot be built (null or unusable sender) is logged and counts as sent: retrying cannot help.
async fn send(
    inner: &Inner,
    entry: &Entry,
    built: Result<Dsn, dsn::DsnError>,
    kind: &str,
) -> Result<(), StepError> {
    let dsn = match built {
        Ok(dsn) => dsn,
        Err(e) => {
            tracing::warn!(target: TARGET, queue_id = %entry.id, kind, error = %e, "no DSN sent");
            return Ok(());
        }
    };
    // The DSN is a message of its own: one id, whether it lands locally or goes through the queue.
    let dsn_id = QueueId::generate(inner.now());
    let local = inner
        .local
        .deliver_local(&dsn_id, Dsn::ENVELOPE_SENDER, &dsn.recipient, &dsn.message)
        .await;
    match local {
        Some(Outcome::Delivered(_)) => {
            tracing::info!(target: TARGET, queue_id = %entry.id, kind, to = %dsn.recipient, dsn_id = %dsn_id,
                message_id = %dsn.message_id, "DSN delivered locally");
            return Ok(());
        }
        Some(Outcome::Failed(reply)) => {
            tracing::warn!(target: TARGET, queue_id = %entry.id, kind, to = %dsn.recipient,
                reply = %crate::model::printable(&reply), "DSN refused by local delivery; dropped");
            return Ok(());
        }
        // A local mailbox that cannot take it now gets it through the queue, which retries.
        Some(Outcome::Deferred(_)) | None => {}
    }
    let envelope = Envelope {
        sender: Dsn::ENVELOPE_SENDER.to_string(),
        recipients: vec![dsn.recipient.clone()],
        dkim: None,
    };
    let now = inner.now();
    let message = dsn.message;
    let id = dsn_id.clone();
    inner
        .blocking(move |q| q.enqueue_as(&id, &envelope, &message, now))
        .await?;
    tracing::info!(target: TARGET, queue_id = %entry.id, kind, to = %dsn.recipient, dsn_id = %dsn_id,
        message_id = %dsn.message_id, "DSN queued");
    inner.notify.notify_one();
    Ok(())
}

/// The DSN status of a failed or expired recipient, from its last reply.
fn failed_status(r: &Recipient) -> RecipientStatus {
    let default = if r.status == Status::Expired {
        DEFAULT_EXPIRED
    } else {
        DEFAULT_FAILED
    };
    status(r, default, &['4', '5'], None)
}

/// The DSN status of a recipient still being retried.
fn delayed_status(r: &Recipient, until: DateTime<Utc>) -> RecipientStatus {
    status(r, DEFAULT_DELAYED, &['4'], Some(until))
}

fn status(
    r: &Recipient,
    default: &str,
    classes: &[char],
    will_retry_until: Option<DateTime<Utc>>,
) -> RecipientStatus {
    let text = r.last_error.as_deref().unwrap_or("");
    let parsed = parse_reply(text);
    let code = parsed
        .reply
        .and_then(enhanced_code)
        .filter(|c| c.starts_with(classes))
        .unwrap_or(default);
    RecipientStatus {
        final_recipient: r.address.clone(),
        original_recipient: None,
        status: code.to_string(),
        remote_mta: parsed.host.map(str::to_string),
        diagnostic: parsed.diagnostic,
        last_attempt: r.last_attempt,
        will_retry_until,
    }
}

/// A recorded outcome text taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parsed<'a> {
    /// The remote host that answered, from a `host[address]: ` or `host: ` prefix.
    pub host: Option<&'a str>,
    /// The SMTP reply itself (`550 5.1.1 ...`), if the text has one.
    pub reply: Option<&'a str>,
    /// What the DSN shows as `Diagnostic-Code`.
    pub diagnostic: Option<Diagnostic>,
}

/// Splits an outcome text such as `mx1.b.test[127.0.0.2]: 550 5.1.1 <x@b.test>: User unknown` (or
/// `relay smtp.provider.example[192.0.2.1]: ...`) into the remote host and the reply; texts without an SMTP reply (DNS or connection trouble) become a local
/// diagnostic.
pub(super) fn parse_reply(text: &str) -> Parsed<'_> {
    let text = text.trim();
    if text.is_empty() {
        return Parsed {
            host: None,
            reply: None,
            diagnostic: None,
        };
    }
    let (host, rest) = match text.split_once(": ") {
        // `relay HOST[IP]: ` names the relay host that answered.
        Some((head, rest)) if is_host(head.strip_prefix("relay ").unwrap_or(head)) => {
            let head = head.strip_prefix("relay ").unwrap_or(head);
            let name = head.split_once('[').map_or(head, |(name, _)| name);
            (Some(name), rest.trim_start())
        }
        _ => (None, text),
    };
    if is_reply(rest) {
        Parsed {
            host,
            reply: Some(rest),
            diagnostic: Some(Diagnostic::Smtp(rest.to_string())),
        }
    } else {
        Parsed {
            host: None,
            reply: None,
            diagnostic: Some(Diagnostic::Local(text.to_string())),
        }
    }
}

/// `name` or `name[address]`, where name looks like a host name.
fn is_host(head: &str) -> bool {
    let name = match head.split_once('[') {
        Some((name, address)) if address.ends_with(']') => name,
        Some(_) => return false,
        None => head,
    };
    !name.is_empty()
        && name.contains('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// True when `text` starts with a three-digit SMTP reply code.
fn is_reply(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 3
        && matches!(b[0], b'2'..=b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b.get(3).is_none_or(|c| matches!(c, b' ' | b'-'))
}

/// The first enhanced status code (`5.1.1`) in a reply.
pub(super) fn enhanced_code(reply: &str) -> Option<&str> {
    reply
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', ';', ':', '.', ')']))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
}
