//! The running loop: limits, waking, two managers on one spool, shutdown.

use super::*;
use crate::smtp::queue::Status;
use crate::smtp::shutdown::{self, Trigger};

/// Starts `manager.run` and returns the shutdown switch and the task.
fn start(manager: Manager) -> (Trigger, tokio::task::JoinHandle<()>) {
    let (stop, shutdown) = shutdown::channel();
    (stop, tokio::spawn(manager.run(shutdown)))
}

async fn stop(stop: Trigger, task: tokio::task::JoinHandle<()>) {
    stop.fire();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_domain_limit_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let mut fake = FakeTransport::new(|_| delivered("250 ok"));
    fake.delay = Duration::from_millis(40);
    let transport = Arc::new(fake);
    let local = Arc::new(FakeLocal::default());
    let now = Utc::now();
    for i in 0..24 {
        let domain = if i % 3 == 0 {
            "other.test"
        } else {
            "busy.test"
        };
        enqueue(
            &queue,
            "alice@example.org",
            &[&format!("u{i}@{domain}")],
            now,
        );
    }
    let m = manager(&queue, &transport, &local, settings(8, 2), backoff).with_options(quick());
    let (switch, task) = start(m);
    wait_until("all delivered", || list(&queue, Utc::now()).is_empty()).await;
    stop(switch, task).await;

    let c = transport.counts.lock().unwrap();
    assert_eq!(c.delivered.len(), 24);
    assert!(c.delivered.values().all(|&n| n == 1));
    assert_eq!(c.max_in_flight["busy.test"], 2, "{:?}", c.max_in_flight);
    assert!(c.max_in_flight["other.test"] <= 2);
    assert!(c.max_total <= 8);
    assert!(
        c.max_total >= 3,
        "domains ran side by side: {}",
        c.max_total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_delivers_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(|_| delivered("250 ok")));
    let local = Arc::new(FakeLocal::default());
    let options = ManagerOptions {
        poll: Duration::from_secs(3600),
        ..quick()
    };
    let m = manager(&queue, &transport, &local, settings(4, 2), backoff).with_options(options);
    let waker = m.waker();
    let (switch, task) = start(m);
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue(&queue, "alice@example.org", &["x@remote.test"], Utc::now());
    waker.wake();
    wait_until("delivered after wake", || {
        list(&queue, Utc::now()).is_empty()
    })
    .await;
    stop(switch, task).await;
    assert_eq!(transport.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_on_one_spool_deliver_each_recipient_once() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let mut loops = Vec::new();
    let mut queues = Vec::new();
    for _ in 0..2 {
        let queue = open(dir.path(), backoff);
        let mut fake = FakeTransport::new(|_| delivered("250 ok"));
        fake.delay = Duration::from_millis(3);
        fake.counts = counts.clone();
        let transport = Arc::new(fake);
        let local = Arc::new(FakeLocal::default());
        let m = manager(&queue, &transport, &local, settings(6, 3), backoff).with_options(quick());
        queues.push(queue);
        loops.push(m);
    }
    let now = Utc::now();
    for i in 0..60 {
        enqueue(
            &queues[i % 2],
            "alice@example.org",
            &[&format!("a{i}@one.test"), &format!("b{i}@two.test")],
            now,
        );
    }
    let running: Vec<_> = loops.into_iter().map(start).collect();
    wait_until("all delivered", || list(&queues[0], Utc::now()).is_empty()).await;
    for (switch, task) in running {
        stop(switch, task).await;
    }
    let c = counts.lock().unwrap();
    assert_eq!(c.delivered.len(), 120);
    let twice: Vec<_> = c.delivered.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_records_what_finished_and_releases_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let mut fake = FakeTransport::new(|_| delivered("250 ok"));
    fake.hang = Some("slow.test".into());
    let transport = Arc::new(fake);
    let local = Arc::new(FakeLocal::default());
    let id = enqueue(
        &queue,
        "alice@example.org",
        &["a@fast.test", "b@slow.test"],
        Utc::now(),
    );
    let m = manager(&queue, &transport, &local, settings(4, 2), backoff).with_options(quick());
    let (switch, task) = start(m);
    wait_until("both domains tried", || transport.calls().len() == 2).await;
    let started = std::time::Instant::now();
    stop(switch, task).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the grace period"
    );

    let q = queue.show(&id, Utc::now()).unwrap();
    assert!(q.lease.is_none(), "claim released: {:?}", q.lease);
    let status = |a: &str| {
        let r = q.entry.recipients.iter().find(|r| r.address == a).unwrap();
        (r.status, r.attempts)
    };
    assert_eq!(status("a@fast.test"), (Status::Delivered, 1));
    assert_eq!(
        status("b@slow.test"),
        (Status::Pending, 0),
        "cut off, not counted"
    );
    // Another process takes it at once, without waiting for the lease.
    let other = open(dir.path(), backoff);
    let claimed = other
        .claim_due(Utc::now(), Duration::from_secs(60), 10)
        .unwrap();
    assert_eq!(claimed.len(), 1);
}
