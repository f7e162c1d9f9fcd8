//! The queue failing for a while (a database that went away): results delivered meanwhile are recorded once
//! it is back, so nothing is delivered twice.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::smtp::queue::{Claimed, Completion, Entry, Notice, QueueError, Recorded};

/// A spool whose `record` fails with a temporary error the first `failures` times. The manager only needs
/// [`Delivery`] (and its [`Intake`] for DSNs), so that is all it fakes.
struct FlakyRecord {
    spool: Arc<SpoolQueue>,
    failures: AtomicU32,
    tries: AtomicU32,
}

impl Intake for FlakyRecord {
    fn enqueue(
        &self,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<QueueId, QueueError> {
        self.spool.enqueue(envelope, message, now)
    }
    fn enqueue_as(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        self.spool.enqueue_as(id, envelope, message, now)
    }
    fn withdraw(&self, id: &QueueId, now: DateTime<Utc>) -> Result<Entry, QueueError> {
        self.spool.withdraw(id, now)
    }
    fn body(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.spool.body(id)
    }
}

impl Delivery for FlakyRecord {
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        self.spool.claim_due(now, lease, max)
    }
    fn renew(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, QueueError> {
        self.spool.renew(claimed, now, lease)
    }
    fn record(
        &self,
        claimed: &Claimed,
        results: &[RecipientResult],
        now: DateTime<Utc>,
    ) -> Result<Recorded, QueueError> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(QueueError::Io {
                action: "write to",
                path: "database queue".into(),
                source: std::io::Error::other("connection refused"),
            });
        }
        self.spool.record(claimed, results, now)
    }
    fn note(&self, claimed: &Claimed, notice: &Notice) -> Result<Entry, QueueError> {
        self.spool.note(claimed, notice)
    }
    fn release(&self, claimed: &Claimed) -> Result<(), QueueError> {
        self.spool.release(claimed)
    }
    fn complete(&self, claimed: &Claimed) -> Result<Completion, QueueError> {
        self.spool.complete(claimed)
    }
}

/// Five failed records in a row (a queue away for about five seconds, longer than the three tries there
/// used to be): the result is recorded on the sixth try, the entry removed, and the recipient delivered once.
#[tokio::test]
async fn a_record_failing_for_seconds_is_retried_until_it_works_and_nothing_is_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let spool = open(dir.path(), backoff);
    let queue = Arc::new(FlakyRecord {
        spool: spool.clone(),
        failures: AtomicU32::new(5),
        tries: AtomicU32::new(0),
    });
    let transport = Arc::new(FakeTransport::new(|_| delivered("250 2.0.0 queued as 1")));
    let clock = TestClock::at(t(0));
    let m = Manager::new(
        queue.clone(),
        transport.clone(),
        Arc::new(FakeLocal::default()),
        "mx.example.org".into(),
        settings(20, 4),
        backoff,
    )
    .with_clock(clock.clock());
    let inner = Arc::new(m.inner);
    enqueue(&spool, "alice@example.org", &["bob@remote.test"], t(0));

    assert_eq!(pass(&inner).await, 1);
    assert_eq!(queue.tries.load(Ordering::SeqCst), 6);
    assert!(list(&spool, t(0)).is_empty(), "recorded and removed");
    assert_eq!(pass(&inner).await, 0, "nothing left to deliver again");
    assert_eq!(
        transport.counts.lock().unwrap().delivered["bob@remote.test"],
        1
    );
}

/// At shutdown the retries stop: the claim is released and the entry stays queued (delivered again later,
/// the price of a queue that never came back).
#[tokio::test]
async fn shutdown_ends_record_retries() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let spool = open(dir.path(), backoff);
    let queue = Arc::new(FlakyRecord {
        spool: spool.clone(),
        failures: AtomicU32::new(u32::MAX),
        tries: AtomicU32::new(0),
    });
    let transport = Arc::new(FakeTransport::new(|_| delivered("250 2.0.0 queued as 1")));
    let m = Manager::new(
        queue.clone(),
        transport.clone(),
        Arc::new(FakeLocal::default()),
        "mx.example.org".into(),
        settings(20, 4),
        backoff,
    )
    .with_options(quick());
    enqueue(
        &spool,
        "alice@example.org",
        &["bob@remote.test"],
        Utc::now(),
    );
    let (stop, shutdown) = crate::smtp::shutdown::channel();
    let running = tokio::spawn(m.run(shutdown));
    wait_until("a record was tried", || {
        queue.tries.load(Ordering::SeqCst) > 0
    })
    .await;
    let started = std::time::Instant::now();
    stop.fire();
    running.await.unwrap();
    // quick(): 300 ms of grace, then the cut-off deliveries get up to 5 s; the retry pause is 1 s and a record
    // gets at most RECORD_TRIES (3) tries in all once shutdown began: about 2 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let queued = list(&spool, Utc::now());
    assert_eq!(queued.len(), 1);
    assert!(
        queued[0].lease.is_none(),
        "claim released: {:?}",
        queued[0].lease
    );
}
