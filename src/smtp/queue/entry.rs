//! One queued message as every storage keeps it: the envelope, and per recipient where delivery stands. The
//! rules that turn delivery results into the next state ([`Entry::apply`]) live here, once, so the spool and
//! the database cannot disagree about them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::error::QueueError;
use super::id::QueueId;

/// The version of the record layout written by this code; readers accept it and older ones.
pub const RECORD_VERSION: u32 = 1;
/// Longest reply text kept per recipient; remote servers can send pages of it.
const MAX_REPLY: usize = 512;
/// Longest address accepted (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS: usize = 320;

/// What the SMTP session hands to the queue besides the message bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// The envelope sender (`MAIL FROM`), empty for the null sender `<>` (bounces, which are never bounced).
    pub sender: String,
    /// The remote recipients (`RCPT TO`); duplicates are dropped.
    pub recipients: Vec<String>,
    /// How the message was DKIM-signed (e.g. `d=example.org s=mail a=ed25519-sha256`), for `queue show`.
    pub dkim: Option<String>,
}

/// Where delivery to one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not delivered yet; tried again at `next_attempt`.
    Pending,
    /// The remote server accepted it; never tried again.
    Delivered,
    /// The remote server refused it for good (5xx); the sender gets a DSN.
    Failed,
    /// Still deferred when the queue lifetime ran out; the sender gets a DSN.
    Expired,
}

impl Status {
    /// True for the states that end delivery to this recipient.
    pub fn is_final(self) -> bool {
        self != Status::Pending
    }
}

/// One recipient of a queued message and its delivery history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The recipient address.
    pub address: String,
    /// Where delivery stands.
    pub status: Status,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// The last remote reply or connection error, one line (for the DSN and `queue list`).
    pub last_error: Option<String>,
    /// When a pending recipient is due for its next attempt.
    #[serde(with = "rfc3339")]
    pub next_attempt: DateTime<Utc>,
    /// When it was last tried.
    #[serde(default, with = "rfc3339_opt")]
    pub last_attempt: Option<DateTime<Utc>>,
    /// For a failed or expired recipient: the sender has been sent its DSN (or needs none: null sender).
    #[serde(default)]
    pub notified: bool,
}

/// The metadata record of one queued message (the message bytes are stored beside it, unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Record layout version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The queue id.
    pub id: QueueId,
    /// Envelope sender; empty for `<>`.
    pub sender: String,
    /// When the message was queued (RFC 3339 UTC in JSON).
    #[serde(with = "rfc3339")]
    pub created: DateTime<Utc>,
    /// Message size in bytes.
    pub size: u64,
    /// Every recipient with its own state.
    pub recipients: Vec<Recipient>,
    /// Held by an admin (`queue hold`): never claimed for delivery until released.
    #[serde(default)]
    pub hold: bool,
    /// The sender has been warned that the message is delayed.
    #[serde(default)]
    pub delay_warning_sent: bool,
    /// How the message was DKIM-signed, if it was.
    #[serde(default)]
    pub dkim: Option<String>,
}

/// The result of one delivery attempt to one recipient, as the SMTP client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (2xx); the text is the remote reply.
    Delivered(String),
    /// Try again later (4xx, timeout, connection failure); the text says what happened.
    Deferred(String),
    /// Refused for good (5xx, null MX); the text is the remote reply.
    Failed(String),
}

/// One recipient's result, handed to [`super::Delivery::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient address exactly as queued.
    pub address: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What [`super::Delivery::record`] changed, so the caller knows which notices to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The entry as now stored.
    pub entry: Entry,
    /// Recipients that just failed or expired and whose sender must get a DSN (empty for `<>`).
    pub failed: Vec<String>,
    /// Recipients still pending.
    pub pending: usize,
    /// A delay warning should be sent now (see [`Entry::delay_warning_due`]).
    pub delay_warning_due: bool,
}

/// A notice the caller has queued for the sender, recorded so it is not sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A DSN naming these failed recipients was queued.
    Failures(Vec<String>),
    /// The delay warning was queued.
    DelayWarning,
}

impl Entry {
    /// A new record for a message of `size` bytes queued at `now`, every recipient due at once.
    pub fn new(
        id: QueueId,
        envelope: &Envelope,
        size: u64,
        now: DateTime<Utc>,
    ) -> Result<Entry, QueueError> {
        check_address("sender", &envelope.sender, true)?;
        let mut recipients: Vec<Recipient> = Vec::with_capacity(envelope.recipients.len());
        for address in &envelope.recipients {
            check_address("recipient", address, false)?;
            if recipients.iter().any(|r| r.address == *address) {
                continue;
            }
            recipients.push(Recipient {
                address: address.clone(),
                status: Status::Pending,
                attempts: 0,
                last_error: None,
                next_attempt: now,
                last_attempt: None,
                notified: false,
            });
        }
        if recipients.is_empty() {
            return Err(QueueError::Invalid("no recipients".into()));
        }
        Ok(Entry {
            version: RECORD_VERSION,
            id,
            sender: envelope.sender.clone(),
            created: now,
            size,
            recipients,
            hold: false,
            delay_warning_sent: false,
            dkim: envelope.dkim.as_deref().map(one_line),
        })
    }

    /// Recipients not yet delivered, failed or expired.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| r.status == Status::Pending)
    }

    /// Pending recipients due for an attempt at `now`: the ones a delivery run should try.
    pub fn due_recipients(&self, now: DateTime<Utc>) -> Vec<&Recipient> {
        self.pending().filter(|r| r.next_attempt <= now).collect()
    }

    /// The earliest next attempt of any pending recipient.
    pub fn next_attempt(&self) -> Option<DateTime<Utc>> {
        self.pending().map(|r| r.next_attempt).min()
    }

    /// Failed or expired recipients whose sender has not been sent a DSN yet.
    pub fn unnotified_failures(&self) -> Vec<&Recipient> {
        self.recipients
            .iter()
            .filter(|r| r.status.is_final() && r.status != Status::Delivered && !r.notified)
            .collect()
    }

    /// True when the sender should now be told the message is delayed: some recipient is still pending, the
    /// message is older than the warning age, no warning was sent, and the sender is not `<>`.
    pub fn delay_warning_due(&self, now: DateTime<Utc>, backoff: &Backoff) -> bool {
        !self.delay_warning_sent
            && !self.sender.is_empty()
            && self.pending().next().is_some()
            && backoff.warning_due(self.created, now)
    }

    /// When a delivery run next has work on this entry if nothing else changes it: the earliest next attempt
    /// of a pending recipient, or the delay warning. None while held, or with nothing pending (a claim scan
    /// then reads the entry every time, which costs nothing: such an entry is due or about to be removed).
    pub fn next_due(&self, backoff: &Backoff) -> Option<DateTime<Utc>> {
        if self.hold {
            return None;
        }
        let warning = (!self.delay_warning_sent
            && !self.sender.is_empty()
            && self.pending().next().is_some())
        .then(|| backoff.warning_at(self.created));
        self.next_attempt().into_iter().chain(warning).min()
    }

    /// True when nothing is left to do: no recipient pending and every failure notified. Such an entry is
    /// removed from the queue.
    pub fn is_finished(&self) -> bool {
        self.pending().next().is_none() && self.unnotified_failures().is_empty()
    }

    /// True when a delivery run has work on this entry at `now`: a due recipient, a DSN or a delay warning
    /// to send, or (finished) removal. Held entries are never due.
    pub fn is_due(&self, now: DateTime<Utc>, backoff: &Backoff) -> bool {
        !self.hold
            && (self.is_finished()
                || !self.due_recipients(now).is_empty()
                || !self.unnotified_failures().is_empty()
                || self.delay_warning_due(now, backoff))
    }

    /// The most attempts made to any recipient.
    pub fn attempts(&self) -> u32 {
        self.recipients
            .iter()
            .map(|r| r.attempts)
            .max()
            .unwrap_or(0)
    }

    /// The most recent error of any recipient, for `queue list`.
    pub fn last_error(&self) -> Option<&str> {
        self.recipients
            .iter()
            .filter(|r| r.last_error.is_some())
            .max_by_key(|r| r.last_attempt)
            .and_then(|r| r.last_error.as_deref())
    }

    /// How long the message has been queued.
    pub fn age(&self, now: DateTime<Utc>) -> TimeDelta {
        now - self.created
    }

    /// Applies delivery results at `now`: delivered recipients become final, deferred ones get their next
    /// attempt from `backoff` (or expire when the queue lifetime is over), failed ones become final. Results
    /// for recipients that are not pending (already delivered or failed, or unknown) are ignored: a recorded
    /// delivery is never undone, whoever reports what later.
    pub fn apply(
        &mut self,
        results: &[RecipientResult],
        now: DateTime<Utc>,
        backoff: &Backoff,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        let null_sender = self.sender.is_empty();
        for result in results {
            let created = self.created;
            let Some(r) = self
                .recipients
                .iter_mut()
                .find(|r| r.address == result.address && r.status == Status::Pending)
            else {
                continue;
            };
            r.attempts = r.attempts.saturating_add(1);
            r.last_attempt = Some(now);
            match &result.outcome {
                Outcome::Delivered(_) => {
                    r.status = Status::Delivered;
                    r.last_error = None;
                }
                Outcome::Deferred(reply) => {
                    r.last_error = Some(one_line(reply));
                    match backoff.next_attempt(created, r.attempts, now) {
                        Some(next) => r.next_attempt = next,
                        None => r.status = Status::Expired,
                    }
                }
                Outcome::Failed(reply) => {
                    r.status = Status::Failed;
                    r.last_error = Some(one_line(reply));
                }
            }
            if matches!(r.status, Status::Failed | Status::Expired) {
                r.notified = null_sender;
                if !null_sender {
                    failed.push(r.address.clone());
                }
            }
        }
        failed
    }

    /// Records that a notice was queued for the sender.
    pub fn note(&mut self, notice: &Notice) {
        match notice {
            Notice::DelayWarning => self.delay_warning_sent = true,
            Notice::Failures(addresses) => {
                for r in &mut self.recipients {
                    if r.status.is_final() && addresses.contains(&r.address) {
                        r.notified = true;
                    }
                }
            }
        }
    }
}

/// Refuses addresses that could break a record, a log line or an SMTP command.
fn check_address(what: &str, address: &str, may_be_empty: bool) -> Result<(), QueueError> {
    if address.is_empty() && !may_be_empty {
        return Err(QueueError::Invalid(format!("empty {what} address")));
    }
    if address.len() > MAX_ADDRESS || address.chars().any(char::is_control) {
        let shown: String = address.chars().take(64).collect();
        return Err(QueueError::Invalid(format!("bad {what} address {shown:?}")));
    }
    Ok(())
}

/// A remote reply as one bounded line: control characters become spaces.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REPLY)
        .collect();
    line.trim().to_string()
}

/// RFC 3339 UTC timestamps (`2026-05-01T12:00:00.123456Z`) in records.
pub(crate) mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `time` as RFC 3339 UTC with microseconds.
    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    /// Reads an RFC 3339 timestamp in any offset, as UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Optional RFC 3339 timestamps (`null` when absent).
pub(crate) mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some` as RFC 3339 UTC and `None` as `null`.
    pub fn serialize<S: Serializer>(time: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` or an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}
