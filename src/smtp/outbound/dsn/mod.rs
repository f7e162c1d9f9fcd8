//! Delivery status notifications (RFC 3464) in a `multipart/report` (RFC 6522): the bounce a sender gets when
//! mail to a recipient failed for good, and the warning when it is still being retried.
//!
//! [`bounce`] and [`delay_warning`] build the complete RFC 5322 message (CRLF line ends, 7-bit except for a
//! UTF-8 `To:` address): a human explanation naming each recipient and the remote reply, the machine-readable
//! `message/delivery-status`, and the original message's headers only (`text/rfc822-headers`; the body is
//! never sent back, so a DSN cannot be used to reflect content at a third party).
//!
//! The queue sends a DSN with the null envelope sender (`MAIL FROM:<>`, [`Dsn::ENVELOPE_SENDER`]) so it can
//! never bounce back in turn (RFC 5321 4.5.5), to [`Dsn::recipient`]. No DSN is built for mail that itself came
//! from the null sender. Everything that came from outside (remote replies, addresses, header text) is reduced
//! to single lines or encoded, so nothing in it can start a header, a field or a MIME part.

mod encode;

pub(crate) use encode::one_line;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use rand::Rng;

use encode::{address_field, field, header_block, is_7bit_lines, quoted_printable, wrap};

/// Longest remote reply or diagnostic kept, in characters (the rest is cut, marked `...`).
const MAX_DIAGNOSTIC: usize = 900;
/// Longest address, host name or envelope id kept in a field, in characters.
const MAX_NAME: usize = 300;
/// The most of the original header block returned, in bytes.
const MAX_HEADERS: usize = 64 * 1024;

/// What the server knows about the message a DSN reports on.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// This server's host name (`server.hostname`): the DSN's `Reporting-MTA` and `MAILER-DAEMON@` domain.
    pub reporting_mta: &'a str,
    /// The original envelope sender (`MAIL FROM`), without angle brackets: the DSN goes to it. Empty for the
    /// null sender, for which no DSN is ever built.
    pub original_sender: &'a str,
    /// When the original message was accepted.
    pub arrival_date: DateTime<Utc>,
    /// The original message as queued (or just its header block): only the headers are returned.
    pub original_message: &'a [u8],
    /// The sender's `ENVID` (RFC 3461), if it gave one.
    pub original_envelope_id: Option<&'a str>,
}

/// Why the last attempt for a recipient failed, as the DSN's `Diagnostic-Code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnostic {
    /// The remote server's reply, e.g. `550 5.1.1 user unknown` (rendered `smtp; 550 5.1.1 user unknown`).
    Smtp(String),
    /// A failure with no SMTP reply (DNS, connection, expiry), rendered `X-mailctl; text`.
    Local(String),
}

/// The outcome for one recipient, as the queue recorded it.
#[derive(Debug, Clone)]
pub struct RecipientStatus {
    /// The address delivery was attempted to (`Final-Recipient`).
    pub final_recipient: String,
    /// The recipient as the sender gave it (`ORCPT`, RFC 3461), if it differs or was given.
    pub original_recipient: Option<String>,
    /// RFC 3463 enhanced status, e.g. `5.1.1` (a bounce) or `4.4.1` (a delay); a malformed one becomes
    /// `5.0.0` / `4.0.0`.
    pub status: String,
    /// The host name of the remote server that gave the reply, if one did.
    pub remote_mta: Option<String>,
    /// Why it failed, if known.
    pub diagnostic: Option<Diagnostic>,
    /// When delivery was last attempted.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Until when the queue keeps retrying (delay warnings only).
    pub will_retry_until: Option<DateTime<Utc>>,
}

/// A DSN ready to queue.
#[derive(Debug, Clone)]
pub struct Dsn {
    /// The envelope recipient: the original sender.
    pub recipient: String,
    /// The DSN's own `Message-ID`, with angle brackets.
    pub message_id: String,
    /// The whole message, CRLF line ends.
    pub message: Vec<u8>,
}

impl Dsn {
    /// The envelope sender every DSN is sent with: the null sender, `MAIL FROM:<>`.
    pub const ENVELOPE_SENDER: &'static str = "";
}

/// Why no DSN was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// The original sender is the null sender `<>` (a DSN or similar): it must never get a DSN.
    #[error("no delivery status notification for the null sender")]
    NullSender,
    /// The original sender is not an address a message can be sent to.
    #[error("the original sender '{0}' cannot receive a delivery status notification")]
    InvalidSender(String),
    /// There is no recipient to report on.
    #[error("a delivery status notification needs at least one recipient")]
    NoRecipients,
}

/// Which kind of DSN is being built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failed,
    Delayed,
}

/// The non-delivery report for `recipients` (each `Action: failed`), addressed to the original sender.
pub fn bounce(report: &Report, recipients: &[RecipientStatus]) -> Result<Dsn, DsnError> {
    build(report, recipients, Kind::Failed)
}

/// The warning that mail to `recipients` is still being retried (each `Action: delayed`, with
/// `Will-Retry-Until` when known), addressed to the original sender.
pub fn delay_warning(report: &Report, recipients: &[RecipientStatus]) -> Result<Dsn, DsnError> {
    build(report, recipients, Kind::Delayed)
}

fn build(report: &Report, recipients: &[RecipientStatus], kind: Kind) -> Result<Dsn, DsnError> {
    let to = checked_sender(report.original_sender)?;
    if recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    let host: String = report
        .reporting_mta
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(MAX_NAME)
        .collect();
    let mut rng = rand::thread_rng();
    let now = Utc::now();
    let message_id = format!("<{}.{:016x}@{host}>", now.timestamp(), rng.r#gen::<u64>());

    let (human_type, human) = text_part(&human_text(report, recipients, kind, &host), "text/plain");
    let status = delivery_status(report, recipients, kind, &host);
    let (headers_encoding, headers) = text_part(
        &header_block(report.original_message, MAX_HEADERS),
        "text/rfc822-headers",
    );
    let mut boundary;
    loop {
        boundary = format!("=_mailctl-dsn-{:016x}", rng.r#gen::<u64>());
        if ![&human, &status, &headers]
            .iter()
            .any(|p| p.contains(&boundary))
        {
            break;
        }
    }

    let subject = match kind {
        Kind::Failed => "Undelivered Mail Returned to Sender",
        Kind::Delayed => "Delayed Mail (still being retried)",
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"
    ));
    m.push_str(&format!("To: <{to}>\r\n"));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {}\r\n", now.to_rfc2822()));
    m.push_str(&format!("Message-ID: {message_id}\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    m.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Description: Notification\r\n"
    ));
    m.push_str(&human_type);
    m.push_str(&human);
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&status);
    let description = match kind {
        Kind::Failed => "Undelivered Message Headers",
        Kind::Delayed => "Delayed Message Headers",
    };
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: {description}\r\n"
    ));
    m.push_str(&headers_encoding);
    m.push_str(&headers);
    m.push_str(&format!("\r\n--{boundary}--\r\n"));
    Ok(Dsn {
        recipient: to,
        message_id,
        message: m.into_bytes(),
    })
}

/// The original sender as a `To:` address, or why it cannot be one.
fn checked_sender(sender: &str) -> Result<String, DsnError> {
    let sender = sender.trim();
    if sender.is_empty() || sender == "<>" {
        return Err(DsnError::NullSender);
    }
    let usable = sender.len() <= 512
        && sender.contains('@')
        && !sender
            .chars()
            .any(|c| c.is_control() || matches!(c, '<' | '>'));
    if usable {
        Ok(sender.to_string())
    } else {
        Err(DsnError::InvalidSender(crate::model::printable(sender)))
    }
}

/// A text part's `Content-Type` of `media` (plus quoted-printable when 8-bit or long lines need it), the
/// blank line, and its body.
fn text_part(body: &[u8], media: &str) -> (String, String) {
    let charset = |cs: &str| {
        if media == "text/plain" {
            format!("; charset={cs}")
        } else {
            String::new()
        }
    };
    if is_7bit_lines(body) {
        let text = String::from_utf8_lossy(body).into_owned();
        (
            format!("Content-Type: {media}{}\r\n\r\n", charset("us-ascii")),
            text,
        )
    } else {
        (
            format!(
                "Content-Type: {media}{}\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
                charset("utf-8")
            ),
            quoted_printable(body),
        )
    }
}

/// Part 1: what happened, for a human, one paragraph per recipient.
fn human_text(report: &Report, recipients: &[RecipientStatus], kind: Kind, host: &str) -> Vec<u8> {
    let mut t = format!("This is the mail system at host {host}.\r\n\r\n");
    match kind {
        Kind::Failed => t.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. The headers of your\r\n\
             message are attached below.\r\n\r\n",
        ),
        Kind::Delayed => t.push_str(
            "####################################################################\r\n\
             # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n\
             ####################################################################\r\n\r\n\
             Your message could not be delivered yet to the recipients below.\r\n\
             The mail system will keep trying; you will be told if it gives up.\r\n\r\n",
        ),
    }
    t.push_str(&wrap(
        &format!(
            "The message was received on {}.",
            report.arrival_date.to_rfc2822()
        ),
        "",
    ));
    t.push_str("\r\n");
    for r in recipients {
        let rcpt = one_line(&r.final_recipient, MAX_NAME, false);
        let why = match (&r.diagnostic, &r.remote_mta) {
            (Some(Diagnostic::Smtp(reply)), Some(mta)) => format!(
                "host {} said: {}",
                one_line(mta, MAX_NAME, false),
                one_line(reply, MAX_DIAGNOSTIC, false)
            ),
            (Some(Diagnostic::Smtp(text) | Diagnostic::Local(text)), _) => {
                one_line(text, MAX_DIAGNOSTIC, false)
            }
            (None, _) => format!("status {}", status_code(&r.status, kind)),
        };
        t.push_str(&wrap(&format!("<{rcpt}>: {why}"), "    "));
        if let (Kind::Delayed, Some(until)) = (kind, r.will_retry_until) {
            t.push_str("    ");
            t.push_str(&wrap(
                &format!("Delivery will be retried until {}.", until.to_rfc2822()),
                "    ",
            ));
        }
        t.push_str("\r\n");
    }
    t.into_bytes()
}

/// Part 2: the `message/delivery-status` fields (RFC 3464 2.2 and 2.3), 7-bit.
fn delivery_status(
    report: &Report,
    recipients: &[RecipientStatus],
    kind: Kind,
    host: &str,
) -> String {
    let mut s = field("Reporting-MTA", &format!("dns; {host}"));
    if let Some(envid) = report.original_envelope_id {
        s.push_str(&field(
            "Original-Envelope-Id",
            &one_line(envid, MAX_NAME, true),
        ));
    }
    s.push_str(&field("Arrival-Date", &report.arrival_date.to_rfc2822()));
    for r in recipients {
        s.push_str("\r\n");
        if let Some(orcpt) = &r.original_recipient {
            s.push_str(&field("Original-Recipient", &address_field(orcpt)));
        }
        s.push_str(&field(
            "Final-Recipient",
            &address_field(&r.final_recipient),
        ));
        let action = match kind {
            Kind::Failed => "failed",
            Kind::Delayed => "delayed",
        };
        s.push_str(&field("Action", action));
        s.push_str(&field("Status", &status_code(&r.status, kind)));
        if let Some(mta) = &r.remote_mta {
            s.push_str(&field(
                "Remote-MTA",
                &format!("dns; {}", one_line(mta, MAX_NAME, true)),
            ));
        }
        match &r.diagnostic {
            Some(Diagnostic::Smtp(reply)) => s.push_str(&field(
                "Diagnostic-Code",
                &format!("smtp; {}", one_line(reply, MAX_DIAGNOSTIC, true)),
            )),
            Some(Diagnostic::Local(text)) => s.push_str(&field(
                "Diagnostic-Code",
                &format!("X-mailctl; {}", one_line(text, MAX_DIAGNOSTIC, true)),
            )),
            None => {}
        }
        if let Some(at) = r.last_attempt {
            s.push_str(&field("Last-Attempt-Date", &at.to_rfc2822()));
        }
        if let (Kind::Delayed, Some(until)) = (kind, r.will_retry_until) {
            s.push_str(&field("Will-Retry-Until", &until.to_rfc2822()));
        }
    }
    s
}

/// `status` when it is a well-formed enhanced status code of the right class (2.x.x never; 4 or 5 for a
/// failure, 4 for a delay), else the generic `5.0.0` / `4.0.0`.
fn status_code(status: &str, kind: Kind) -> String {
    let parts: Vec<&str> = status.trim().split('.').collect();
    let well_formed = parts.len() == 3
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let class_ok = match kind {
        Kind::Failed => matches!(parts[0], "4" | "5"),
        Kind::Delayed => parts[0] == "4",
    };
    if well_formed && class_ok {
        status.trim().to_string()
    } else if kind == Kind::Failed {
        "5.0.0".into()
    } else {
        "4.0.0".into()
    }
}
