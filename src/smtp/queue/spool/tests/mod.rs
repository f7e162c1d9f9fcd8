//! Spool tests: round trips, concurrent claimers, crash recovery, admin operations.

mod admin;
mod concurrency;
mod crash;
mod roundtrip;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{SpoolOptions, SpoolQueue};
use crate::smtp::queue::{
    Admin, Delivery, Envelope, Intake, Outcome, Queue, QueueId, RecipientResult,
};

/// A lease long enough never to run out during a test unless the test moves the clock.
const LEASE: Duration = Duration::from_secs(600);

/// A fixed clock: 2027-01-15T08:00:00Z plus `secs`.
fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn open(dir: &Path) -> SpoolQueue {
    SpoolQueue::open(dir, SpoolOptions::default()).unwrap()
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        dkim: None,
    }
}

fn enqueue(spool: &SpoolQueue, rcpts: &[&str]) -> QueueId {
    spool
        .enqueue(&envelope(rcpts), b"Subject: hi\r\n\r\nbody\r\n", t(0))
        .unwrap()
}

fn delivered(address: &str) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome: Outcome::Delivered("250 2.0.0 ok".into()),
    }
}

fn deferred(address: &str) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome: Outcome::Deferred("451 4.3.0 try later".into()),
    }
}

fn failed(address: &str) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome: Outcome::Failed("550 5.1.1 unknown user".into()),
    }
}

/// The files in one spool subdirectory, sorted.
fn files(root: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Asserts the spool holds nothing but the owner files.
fn assert_empty(root: &Path) {
    for sub in ["tmp", "msg", "lease", "corrupt"] {
        assert_eq!(
            files(root, sub),
            Vec::<String>::new(),
            "{sub}/ should be empty"
        );
    }
}
