//! The database storage of the outbound queue (`[server.queue] backend = "database"`): the same
//! life of an entry as the spool, admin operations from another node, several nodes claiming at once, and
//! the scale-out scenario (2,000 messages, two nodes, one stops dead halfway, every message delivered exactly
//! once).
//!
//! Each "node" is its own `DatabaseQueue` with its own tokio runtime and connection pool, as a separate
//! `serve` process would have. The scenarios run on SQLite and on MariaDB (`MAILCTL_TEST_MYSQL_URL`); the
//! scale-out scenario is MariaDB only, the backend the configuration allows.

mod admin;
mod roundtrip;
mod scale;

use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kit::TestDb;
pub use mailctl::smtp::queue::{Admin, Delivery, Intake};
use mailctl::smtp::queue::{
    DatabaseOptions, DatabaseQueue, Envelope, Outcome, Queue, QueueId, RecipientResult,
};
use mailctl::store::Store;

/// A lease long enough never to run out during a test unless the test moves the clock.
const LEASE: Duration = Duration::from_secs(600);

/// One node: a queue handle with its own runtime and pool. Dropping it is what a `kill -9` does to the
/// queue: connections close, leases stay in the table until they expire.
pub struct Node {
    queue: DatabaseQueue,
    _runtime: tokio::runtime::Runtime,
}

impl Deref for Node {
    type Target = DatabaseQueue;

    fn deref(&self) -> &DatabaseQueue {
        &self.queue
    }
}

/// Opens a node on the test database (migrating it on first use).
pub fn node(db: &TestDb) -> Node {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (store, _) = runtime.block_on(Store::open(&db.url)).unwrap();
    let queue =
        DatabaseQueue::open(store, runtime.handle().clone(), DatabaseOptions::default()).unwrap();
    Node {
        queue,
        _runtime: runtime,
    }
}

/// A fixed clock: 2027-01-15T08:00:00Z plus `secs`.
pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

pub fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        dkim: None,
    }
}

/// Queues a 21-byte message at t(0).
pub fn enqueue(queue: &dyn Queue, rcpts: &[&str]) -> QueueId {
    queue
        .enqueue(&envelope(rcpts), b"Subject: hi\r\n\r\nbody\r\n", t(0))
        .unwrap()
}

pub fn delivered(address: &str) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome: Outcome::Delivered("250 2.0.0 ok".into()),
    }
}

pub fn deferred(address: &str) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome: Outcome::Deferred("451 4.3.0 try later".into()),
    }
}

pub fn failed(address: &str) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome: Outcome::Failed("550 5.1.1 unknown user".into()),
    }
}

/// Rows in the queue tables (entries, body chunks): both zero once everything is delivered.
pub fn rows(db: &TestDb) -> (String, String) {
    let count = |table: &str| {
        db.query(&format!("SELECT COUNT(*) FROM {table}"))[0][0]
            .clone()
            .unwrap()
    };
    (count("mailctl_queue"), count("mailctl_queue_bodies"))
}

/// Asserts the queue tables are empty.
#[track_caller]
pub fn assert_empty(db: &TestDb) {
    assert_eq!(
        rows(db),
        ("0".to_string(), "0".to_string()),
        "queue tables not empty"
    );
}
