//! One claimed entry, start to finish: read the body, deliver the due recipients domain by domain (renewing
//! the lease meanwhile, and stopping early at shutdown), record the results, send the notices, complete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::task::JoinError;

use super::{Inner, TARGET, notice};
use crate::smtp::queue::{
    Claimed, Completion, Entry, Outcome, QueueError, Recipient, RecipientResult, Recorded,
};

/// How often `record` is tried on an error that is not temporary before giving up: a lost result means a
/// duplicate delivery later. Temporary errors are retried for as long as the lease lasts (see [`record`]).
const RECORD_TRIES: u32 = 3;
/// The pause between two `record` tries.
const RECORD_RETRY: Duration = Duration::from_secs(1);
/// While `record` keeps failing, one warning per this many tries (the first one is always logged).
const RECORD_WARN_EVERY: u32 = 30;
/// Reply recorded for a recipient without a domain (the queue accepts it; no server would).
const NO_DOMAIN: &str = "550 5.1.3 recipient address has no domain";
/// Reply recorded when the transport returned no result for a recipient.
const NO_RESULT: &str = "no result from the delivery attempt";

/// Why processing an entry stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    /// A queue operation failed.
    #[error(transparent)]
    Queue(QueueError),
    /// A blocking queue task panicked or was cancelled.
    #[error("queue task failed: {0}")]
    Task(#[from] JoinError),
}

/// Processes one claimed entry; on failure keeps the claim for the error pause and then releases it.
pub(super) async fn deliver_entry(
    inner: Arc<Inner>,
    claimed: Claimed,
    cancel: watch::Receiver<bool>,
) {
    let id = claimed.id().clone();
    match attempt(&inner, &claimed, cancel.clone()).await {
        Ok(()) => {}
        Err(StepError::Queue(QueueError::NotFound(_))) => {
            tracing::info!(target: TARGET, queue_id = %id, "entry removed while being delivered");
        }
        Err(e) => {
            tracing::warn!(target: TARGET, queue_id = %id, error = %e,
                "delivery run failed; the entry is retried later");
            let _ = tokio::time::timeout(inner.options.error_pause, cancelled(cancel)).await;
            if let Err(e) = inner.blocking(move |q| q.release(&claimed)).await {
                tracing::warn!(target: TARGET, queue_id = %id, error = %e,
                    "cannot release claim; it is taken over when its lease runs out");
            }
        }
    }
}

/// The delivery protocol for one entry (see the queue's module documentation).
async fn attempt(
    inner: &Inner,
    claimed: &Claimed,
    cancel: watch::Receiver<bool>,
) -> Result<(), StepError> {
    let id = claimed.id().clone();
    let body = inner.blocking(move |q| q.body(&id)).await?;
    let due = claimed.entry.due_recipients(inner.now());
    let results = if due.is_empty() {
        Vec::new()
    } else {
        deliver_due(inner, claimed, &due, &body, cancel.clone()).await
    };
    let unknown = results
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Failed(text) if refused_as_unknown(text)))
        .count();
    let recorded = record(inner, claimed, results, cancel).await?;
    if let Some(refusals) = &inner.refusals
        && unknown > 0
        && !claimed.entry.sender.is_empty()
    {
        refusals
            .refused_unknown(&claimed.entry.sender, unknown)
            .await;
    }
    notice::send_notices(inner, claimed, &recorded, &body).await?;
    let c = claimed.clone();
    let completion = inner.blocking(move |q| q.complete(&c)).await?;
    match completion {
        Completion::Removed(_) => {
            tracing::debug!(target: TARGET, queue_id = %claimed.id(), "entry done, removed")
        }
        Completion::Kept(e) => tracing::debug!(target: TARGET, queue_id = %claimed.id(),
            pending = e.pending().count(),
            next_attempt = ?e.next_attempt().map(|t| t.to_rfc3339()), "entry kept"),
    }
    Ok(())
}

/// Whether a permanent failure's text is a remote server refusing the recipient as unknown: a reply with
/// the enhanced status 5.1.1 (`mx.b.test[192.0.2.1]: 550 5.1.1 <x@b.test>: User unknown`).
fn refused_as_unknown(text: &str) -> bool {
    text.split_whitespace().any(|w| w == "5.1.1")
}

/// Durably records the results. Results that are never recorded mean the recipients are delivered again
/// later, so a temporary failure (the disk or the database away for a while) is retried every
/// [`RECORD_RETRY`] for as long as the lease lasts, and any other failure [`RECORD_TRIES`] times; shutdown
/// (`cancel`) ends the retries once [`RECORD_TRIES`] tries were made (a few seconds, within the shutdown grace).
async fn record(
    inner: &Inner,
    claimed: &Claimed,
    results: Vec<RecipientResult>,
    cancel: watch::Receiver<bool>,
) -> Result<Recorded, StepError> {
    let results = Arc::new(results);
    let patience = tokio::time::Instant::now() + inner.options.lease;
    let mut tries = 0;
    loop {
        tries += 1;
        let (c, r, now) = (claimed.clone(), results.clone(), inner.now());
        match inner.blocking(move |q| q.record(&c, &r, now)).await {
            Ok(recorded) => {
                if tries > 1 {
                    tracing::info!(target: TARGET, queue_id = %claimed.id(), tries,
                        "delivery results recorded after all");
                }
                return Ok(recorded);
            }
            Err(StepError::Queue(QueueError::NotFound(id))) => {
                return Err(StepError::Queue(QueueError::NotFound(id)));
            }
            Err(e) => {
                let temporary = matches!(&e, StepError::Queue(q) if q.temporary());
                let again = if temporary {
                    tokio::time::Instant::now() + RECORD_RETRY < patience
                } else {
                    tries < RECORD_TRIES
                };
                if !again || (*cancel.borrow() && tries >= RECORD_TRIES) {
                    return Err(e);
                }
                if tries % RECORD_WARN_EVERY == 1 {
                    tracing::warn!(target: TARGET, queue_id = %claimed.id(), error = %e, tries,
                        "cannot record delivery results; trying again");
                }
                if *cancel.borrow() {
                    tokio::time::sleep(RECORD_RETRY).await;
                } else {
                    tokio::select! {
                        () = tokio::time::sleep(RECORD_RETRY) => {}
                        () = cancelled(cancel.clone()) => {}
                    }
                }
            }
        }
    }
}

/// Delivers the due recipients, one concurrent transaction per domain, and returns the results of the
/// transactions that finished: all of them, unless `cancel` cut them off at shutdown. Renews the lease
/// every third of its length meanwhile.
async fn deliver_due(
    inner: &Inner,
    claimed: &Claimed,
    due: &[&Recipient],
    body: &[u8],
    cancel: watch::Receiver<bool>,
) -> Vec<RecipientResult> {
    let mut groups: BTreeMap<Option<String>, Vec<&Recipient>> = BTreeMap::new();
    for r in due {
        groups.entry(domain_of(&r.address)).or_default().push(r);
    }
    let mut running: FuturesUnordered<_> = groups
        .into_iter()
        .map(|(domain, rcpts)| deliver_group(inner, &claimed.entry, domain, rcpts, body))
        .collect();
    let every = (inner.options.lease / 3).max(Duration::from_secs(1));
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut results = Vec::new();
    loop {
        tokio::select! {
            group = running.next() => match group {
                Some(group) => results.extend(group),
                None => break,
            },
            _ = renew.tick() => renew_lease(inner, claimed).await,
            () = cancelled(cancel.clone()) => {
                tracing::info!(target: TARGET, queue_id = %claimed.id(), unfinished = running.len(),
                    "shutting down: deliveries cut off, retried later");
                break;
            }
        }
    }
    results
}

/// Resolves once shutdown cuts deliveries off; never if the signal's sender is gone.
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Extends the lease of a long delivery; losing it is logged, the delivery goes on (its results are facts
/// and are recorded whoever holds the entry).
async fn renew_lease(inner: &Inner, claimed: &Claimed) {
    let (c, now, lease) = (claimed.clone(), inner.now(), inner.options.lease);
    if let Err(e) = inner.blocking(move |q| q.renew(&c, now, lease)).await {
        tracing::warn!(target: TARGET, queue_id = %claimed.id(), error = %e, "cannot renew lease");
    }
}

/// One domain's recipients: hosted ones are delivered locally, the rest in one transaction within the
/// concurrency limits. Logs one line for the attempt.
async fn deliver_group(
    inner: &Inner,
    entry: &Entry,
    domain: Option<String>,
    rcpts: Vec<&Recipient>,
    body: &[u8],
) -> Vec<RecipientResult> {
    let attempt = rcpts.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
    let mut results = Vec::with_capacity(rcpts.len());
    let mut remote = Vec::new();
    for r in &rcpts {
        match inner
            .local
            .deliver_local(&entry.id, &entry.sender, &r.address, body)
            .await
        {
            Some(outcome) => results.push(result(&r.address, outcome)),
            None => remote.push(r.address.clone()),
        }
    }
    if !remote.is_empty() {
        match &domain {
            Some(domain) => {
                let _permits = inner.limits.acquire(domain).await;
                let got = inner
                    .transport
                    .deliver_domain(domain, &entry.sender, &remote, body)
                    .await;
                results.extend(matched(&remote, got));
            }
            None => results.extend(
                remote
                    .iter()
                    .map(|a| result(a, Outcome::Failed(NO_DOMAIN.into()))),
            ),
        }
    }
    log_attempt(entry, domain.as_deref(), attempt, &results);
    results
}

/// One result per recipient, in order: the transport's result for it, or a deferral when it gave none.
fn matched(recipients: &[String], mut got: Vec<RecipientResult>) -> Vec<RecipientResult> {
    recipients
        .iter()
        .map(|a| match got.iter().position(|r| r.address == *a) {
            Some(i) => got.swap_remove(i),
            None => result(a, Outcome::Deferred(NO_RESULT.into())),
        })
        .collect()
}

fn result(address: &str, outcome: Outcome) -> RecipientResult {
    RecipientResult {
        address: address.to_string(),
        outcome,
    }
}

/// The lowercase domain of an address, `None` when it has none.
pub(super) fn domain_of(address: &str) -> Option<String> {
    match address.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() => Some(domain.to_ascii_lowercase()),
        _ => None,
    }
}

/// The log line of one delivery attempt to one domain.
fn log_attempt(entry: &Entry, domain: Option<&str>, attempt: u32, results: &[RecipientResult]) {
    let describe = |o: &Outcome| match o {
        Outcome::Delivered(t) => format!("delivered: {t}"),
        Outcome::Deferred(t) => format!("deferred: {t}"),
        Outcome::Failed(t) => format!("failed: {t}"),
    };
    let recipients: Vec<&str> = results.iter().map(|r| r.address.as_str()).collect();
    let texts: Vec<String> = results
        .iter()
        .map(|r| format!("<{}> {}", r.address, describe(&r.outcome)))
        .collect();
    let all_delivered = results
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Delivered(_)));
    let domain = domain.unwrap_or("-");
    let sender = crate::model::printable(&entry.sender);
    let texts = crate::model::printable(&texts.join("; "));
    if all_delivered {
        tracing::info!(target: TARGET, queue_id = %entry.id, domain, sender = %sender,
            recipients = %recipients.join(","), attempt, result = %texts, "delivery attempt");
    } else {
        tracing::warn!(target: TARGET, queue_id = %entry.id, domain, sender = %sender,
            recipients = %recipients.join(","), attempt, result = %texts, "delivery attempt");
    }
}
