//! Database queue internals on SQLite: when a row is due, and the blocking bridge from every kind of
//! thread. The behaviour itself is tested on SQLite and MariaDB in `tests/it/queue_database/`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::row::due_at;
use super::{DatabaseOptions, DatabaseQueue};
use crate::smtp::queue::{Admin, Delivery, Intake};
use crate::smtp::queue::{Backoff, Entry, Envelope, Notice, Outcome, QueueId, RecipientResult};
use crate::store::Store;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn envelope(sender: &str) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: vec!["x@r.test".into(), "y@r.test".into()],
        dkim: None,
    }
}

fn result(address: &str, outcome: Outcome) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome,
    }
}

#[test]
fn rows_are_due_for_retries_warnings_dsns_and_removal() {
    let b = Backoff::default();
    let four_hours = 4 * 3600;
    let mut e = Entry::new(QueueId::generate(t(0)), &envelope("a@example.org"), 1, t(0)).unwrap();
    assert_eq!(due_at(&e, &b), t(0), "new: at once");

    for _ in 0..7 {
        e.apply(
            &[result("x@r.test", Outcome::Deferred("451".into()))],
            t(0),
            &b,
        );
    }
    e.apply(
        &[result("y@r.test", Outcome::Delivered("250".into()))],
        t(0),
        &b,
    );
    assert_eq!(e.next_attempt(), Some(t(four_hours)));
    e.apply(
        &[result("x@r.test", Outcome::Deferred("451".into()))],
        t(10),
        &b,
    );
    assert_eq!(e.next_attempt(), Some(t(10 + four_hours)));
    assert_eq!(
        due_at(&e, &b),
        t(four_hours),
        "the delay warning comes before the retry"
    );
    e.note(&Notice::DelayWarning);
    assert_eq!(due_at(&e, &b), t(10 + four_hours), "warned: the retry");

    let mut bounce = Entry::new(QueueId::generate(t(0)), &envelope(""), 1, t(0)).unwrap();
    for _ in 0..8 {
        bounce.apply(
            &[result("x@r.test", Outcome::Deferred("451".into()))],
            t(0),
            &b,
        );
    }
    bounce.apply(
        &[result("y@r.test", Outcome::Delivered("250".into()))],
        t(0),
        &b,
    );
    assert_eq!(
        due_at(&bounce, &b),
        t(four_hours),
        "no warning for <>: the retry"
    );

    e.apply(
        &[result("x@r.test", Outcome::Failed("550".into()))],
        t(20),
        &b,
    );
    assert_eq!(due_at(&e, &b), t(0), "a DSN is owed: at once");
    e.note(&Notice::Failures(vec!["x@r.test".into()]));
    assert!(e.is_finished());
    assert_eq!(due_at(&e, &b), t(0), "finished: removal at once");
}

/// A queue on a fresh SQLite file, opened on `runtime`.
fn open(runtime: &tokio::runtime::Runtime, dir: &tempfile::TempDir) -> Arc<DatabaseQueue> {
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let (store, _) = runtime.block_on(Store::open(&url)).unwrap();
    let queue = DatabaseQueue::open(store, runtime.handle().clone(), DatabaseOptions::default());
    Arc::new(queue.unwrap())
}

#[test]
fn blocking_calls_work_from_spawn_blocking_plain_threads_and_misplaced_async_code() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&runtime, &dir);
    let q = Arc::clone(&queue);
    let from_blocking = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || q.enqueue(&envelope("a@b.test"), b"m", t(0)))
            .await
            .unwrap()
    });
    assert!(from_blocking.is_ok());
    let q = Arc::clone(&queue);
    let from_thread = std::thread::spawn(move || q.list(t(0)).unwrap().len());
    assert_eq!(from_thread.join().unwrap(), 1);
    // Misuse: straight from async code on a worker, and inside the runtime's own block_on. Slower for the
    // runtime, but neither a panic nor a deadlock.
    let q = Arc::clone(&queue);
    let on_worker = runtime.block_on(async move {
        tokio::spawn(async move { q.claim_due(t(1), std::time::Duration::from_secs(60), 5) })
            .await
            .unwrap()
    });
    assert_eq!(on_worker.unwrap().len(), 1);
    let q = Arc::clone(&queue);
    let in_block_on = runtime.block_on(async move { q.stats(t(2)) });
    assert_eq!(in_block_on.unwrap().active, 1);
}

#[test]
fn blocking_calls_work_from_spawn_blocking_on_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let listed = runtime.block_on(async move {
        let (store, _) = Store::open(&url).await.unwrap();
        let handle = tokio::runtime::Handle::current();
        // The runtime's only thread waits in block_on (driving I/O and timers) while the queue works.
        tokio::task::spawn_blocking(move || {
            let q = DatabaseQueue::open(store, handle, DatabaseOptions::default()).unwrap();
            q.enqueue(&envelope("a@b.test"), b"m", t(0)).unwrap();
            q.list(t(0)).unwrap().len()
        })
        .await
        .unwrap()
    });
    assert_eq!(listed, 1);
}
