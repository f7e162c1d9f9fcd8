//! Manager tests over a real spool in a temporary directory, with a fake transport and fake local delivery.

mod delivery;
mod looping;
mod notices;
mod outage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{BoxFuture, join_all};
use tokio::sync::watch;

use super::{Clock, Inner, LocalDelivery, Manager, ManagerOptions, Transport, process};
use crate::smtp::queue::{Admin, Delivery, Intake};
use crate::smtp::queue::{
    Backoff, Envelope, Outcome, QueueId, Queued, RecipientResult, SpoolOptions, SpoolQueue,
};
use crate::smtp::settings::OutboundSettings;

const BODY: &[u8] =
    b"From: someone\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n";

/// 2027-01-15T08:00:00Z plus `secs`.
fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

/// A clock the test sets.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn at(time: DateTime<Utc>) -> TestClock {
        TestClock(Arc::new(Mutex::new(time)))
    }
    fn set(&self, time: DateTime<Utc>) {
        *self.0.lock().unwrap() = time;
    }
    fn clock(&self) -> Clock {
        let cell = self.0.clone();
        Arc::new(move || *cell.lock().unwrap())
    }
}

/// Decides the outcome per recipient.
type Script = Box<dyn Fn(&str) -> Outcome + Send + Sync>;

/// One call of the fake transport.
#[derive(Debug, Clone)]
struct Call {
    domain: String,
    sender: String,
    recipients: Vec<String>,
    message: Vec<u8>,
}

/// Counts shared by fake transports (two managers on one spool share one).
#[derive(Default)]
struct Counts {
    calls: Vec<Call>,
    delivered: HashMap<String, usize>,
    in_flight: HashMap<String, usize>,
    max_in_flight: HashMap<String, usize>,
    total: usize,
    max_total: usize,
}

struct FakeTransport {
    script: Script,
    delay: Duration,
    /// Calls for this domain never return.
    hang: Option<String>,
    counts: Arc<Mutex<Counts>>,
}

impl FakeTransport {
    fn new(script: impl Fn(&str) -> Outcome + Send + Sync + 'static) -> FakeTransport {
        FakeTransport {
            script: Box::new(script),
            delay: Duration::ZERO,
            hang: None,
            counts: Arc::default(),
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.counts.lock().unwrap().calls.clone()
    }
}

impl Transport for FakeTransport {
    fn deliver_domain<'a>(
        &'a self,
        domain: &'a str,
        sender: &'a str,
        recipients: &'a [String],
        message: &'a [u8],
    ) -> BoxFuture<'a, Vec<RecipientResult>> {
        Box::pin(async move {
            {
                let mut c = self.counts.lock().unwrap();
                c.calls.push(Call {
                    domain: domain.into(),
                    sender: sender.into(),
                    recipients: recipients.to_vec(),
                    message: message.to_vec(),
                });
                let now = {
                    let n = c.in_flight.entry(domain.into()).or_default();
                    *n += 1;
                    *n
                };
                let max = c.max_in_flight.entry(domain.into()).or_default();
                *max = (*max).max(now);
                c.total += 1;
                c.max_total = c.max_total.max(c.total);
            }
            if self.hang.as_deref() == Some(domain) {
                std::future::pending::<()>().await;
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let results: Vec<RecipientResult> = recipients
                .iter()
                .map(|r| RecipientResult {
                    address: r.clone(),
                    outcome: (self.script)(r),
                })
                .collect();
            let mut c = self.counts.lock().unwrap();
            *c.in_flight.get_mut(domain).unwrap() -= 1;
            c.total -= 1;
            for r in &results {
                if matches!(r.outcome, Outcome::Delivered(_)) {
                    *c.delivered.entry(r.address.clone()).or_default() += 1;
                }
            }
            results
        })
    }
}

/// Hosts the domain `local.test`; remembers what it delivered.
#[derive(Default)]
struct FakeLocal {
    delivered: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl FakeLocal {
    fn delivered(&self) -> Vec<(String, String, Vec<u8>)> {
        self.delivered.lock().unwrap().clone()
    }
}

impl LocalDelivery for FakeLocal {
    fn deliver_local<'a>(
        &'a self,
        _id: &'a QueueId,
        sender: &'a str,
        recipient: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Option<Outcome>> {
        Box::pin(async move {
            if !recipient.to_ascii_lowercase().ends_with("@local.test") {
                return None;
            }
            self.delivered.lock().unwrap().push((
                sender.into(),
                recipient.into(),
                message.to_vec(),
            ));
            Some(Outcome::Delivered("250 2.0.0 delivered to mailbox".into()))
        })
    }
}

fn settings(concurrency: usize, per_domain: usize) -> OutboundSettings {
    OutboundSettings {
        port: 25,
        concurrency,
        per_domain,
        timeout: Duration::from_secs(60),
        extra_ca: None,
        mta_sts_port: 443,
        relay: None,
    }
}

fn open(dir: &Path, backoff: Backoff) -> Arc<SpoolQueue> {
    Arc::new(SpoolQueue::open(dir, SpoolOptions { backoff }).unwrap())
}

fn manager(
    queue: &Arc<SpoolQueue>,
    transport: &Arc<FakeTransport>,
    local: &Arc<FakeLocal>,
    settings: OutboundSettings,
    backoff: Backoff,
) -> Manager {
    Manager::new(
        queue.clone(),
        transport.clone(),
        local.clone(),
        "mx.example.org".into(),
        settings,
        backoff,
    )
}

fn enqueue(queue: &SpoolQueue, sender: &str, rcpts: &[&str], now: DateTime<Utc>) -> QueueId {
    let envelope = Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        dkim: None,
    };
    queue.enqueue(&envelope, BODY, now).unwrap()
}

fn list(queue: &SpoolQueue, now: DateTime<Utc>) -> Vec<Queued> {
    queue.list(now).unwrap()
}

/// One delivery pass without the loop: claims what is due and processes it to the end.
async fn pass(inner: &Arc<Inner>) -> usize {
    let (_cancel, cancelled) = watch::channel(false);
    let claimed = inner.claim(inner.concurrency).await.unwrap();
    let n = claimed.len();
    join_all(
        claimed
            .into_iter()
            .map(|c| process::deliver_entry(inner.clone(), c, cancelled.clone())),
    )
    .await;
    n
}

/// A manager for pass-by-pass tests: fixed clock, and its shared state.
fn stepped(
    queue: &Arc<SpoolQueue>,
    transport: &Arc<FakeTransport>,
    local: &Arc<FakeLocal>,
    backoff: Backoff,
    clock: &TestClock,
) -> Arc<Inner> {
    let m = manager(queue, transport, local, settings(20, 4), backoff).with_clock(clock.clock());
    Arc::new(m.inner)
}

/// Short timings for loop tests.
fn quick() -> ManagerOptions {
    ManagerOptions {
        poll: Duration::from_millis(50),
        shutdown_grace: Duration::from_millis(300),
        error_pause: Duration::from_millis(100),
        ..ManagerOptions::default()
    }
}

/// Waits until `done` holds, failing the test after 20 seconds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delivered(text: &str) -> Outcome {
    Outcome::Delivered(text.into())
}
