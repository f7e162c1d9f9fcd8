//! Benchmark: the spool's claim scan with a backlog of deferred mail. N entries are queued and deferred (their
//! next attempt minutes away), then `claim_due` runs as the delivery loop runs it on every wake-up: the first scan
//! reads every record, later ones skip the entries they already found not due (one `stat` each) until their time
//! or until their record changes. Prints milliseconds per scan, first and later; fails if a scan claims anything
//! (nothing is due), so a fast scan never hides a wrong one.
//!
//! Run: `cargo bench --bench queue_scan -- [N]` (N defaults to 5000).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mailctl::smtp::queue::{
    Delivery, Envelope, Intake, Outcome, RecipientResult, SpoolOptions, SpoolQueue,
};

const LEASE: Duration = Duration::from_secs(600);

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = SpoolQueue::open(dir.path(), SpoolOptions::default()).expect("spool");
    let started = Instant::now();
    for i in 0..n {
        let envelope = Envelope {
            sender: "alice@example.org".into(),
            recipients: vec![format!("user{i}@far.test"), format!("other{i}@far.test")],
            dkim: None,
        };
        spool
            .enqueue(&envelope, b"Subject: hi\r\n\r\nbody\r\n", t(0))
            .expect("enqueue");
    }
    let mut deferred = 0;
    while deferred < n {
        let claims = spool.claim_due(t(1), LEASE, 500).expect("claim");
        assert!(!claims.is_empty(), "every entry is due at first");
        for claim in claims {
            let results: Vec<RecipientResult> = claim
                .entry
                .recipients
                .iter()
                .map(|r| RecipientResult {
                    address: r.address.clone(),
                    outcome: Outcome::Deferred("451 4.3.0 try later".into()),
                })
                .collect();
            spool.record(&claim, &results, t(1)).expect("record");
            spool.release(&claim).expect("release");
            deferred += 1;
        }
    }
    println!(
        "queue_scan: {n} deferred entries in a spool (set up in {:.1} s); claim scans with nothing due:",
        started.elapsed().as_secs_f64()
    );
    // A freshly opened spool (a restarted serve) has seen nothing yet: its first scan reads every record.
    drop(spool);
    let spool = SpoolQueue::open(dir.path(), SpoolOptions::default()).expect("spool");
    let scan = |at: i64| {
        let start = Instant::now();
        let claimed = spool.claim_due(t(at), LEASE, 20).expect("claim");
        assert!(claimed.is_empty(), "nothing is due at {at}");
        start.elapsed().as_secs_f64() * 1000.0
    };
    let first = scan(10);
    let later: Vec<f64> = (0..20).map(|i| scan(11 + i)).collect();
    let mean = later.iter().sum::<f64>() / later.len() as f64;
    println!(
        "  first scan (reads every record): {first:.1} ms; the next 20: {mean:.1} ms each on average ({:.0}x faster)",
        first / mean.max(0.001)
    );
}
