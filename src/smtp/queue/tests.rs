//! The backend-independent rules: records, results, schedule decisions, notices, stats.

use chrono::{DateTime, Utc};

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn entry(sender: &str, rcpts: &[&str]) -> Entry {
    let envelope = Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        dkim: Some("d=example.org s=mail".into()),
    };
    Entry::new(QueueId::generate(t(0)), &envelope, 100, t(0)).unwrap()
}

fn result(address: &str, outcome: Outcome) -> RecipientResult {
    RecipientResult {
        address: address.into(),
        outcome,
    }
}

#[test]
fn new_entries_dedupe_and_validate_addresses() {
    let e = entry(
        "a@example.org",
        &["x@remote.test", "x@remote.test", "y@remote.test"],
    );
    assert_eq!(e.recipients.len(), 2);
    assert!(
        e.recipients
            .iter()
            .all(|r| r.status == Status::Pending && r.next_attempt == t(0))
    );
    let bad = |sender: &str, rcpts: Vec<String>| {
        let envelope = Envelope {
            sender: sender.into(),
            recipients: rcpts,
            dkim: None,
        };
        Entry::new(QueueId::generate(t(0)), &envelope, 1, t(0))
    };
    assert!(matches!(bad("a@b", vec![]), Err(QueueError::Invalid(_))));
    assert!(matches!(
        bad("a@b", vec![String::new()]),
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        bad("a\r\n@b", vec!["x@y".into()]),
        Err(QueueError::Invalid(_))
    ));
    assert!(
        bad("", vec!["x@y".into()]).is_ok(),
        "the null sender may queue (bounces)"
    );
}

#[test]
fn records_are_json_with_rfc3339_utc_times() {
    let e = entry("a@example.org", &["x@remote.test"]);
    let json: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(json["created"], "2027-01-15T08:00:00.000000Z");
    assert_eq!(json["recipients"][0]["status"], "pending");
    assert_eq!(json["recipients"][0]["last_error"], serde_json::Value::Null);
    assert_eq!(json["hold"], false);
    assert_eq!(json["dkim"], "d=example.org s=mail");
    let back: Entry = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn results_move_recipients_forward_only() {
    let b = Backoff::default();
    let mut e = entry(
        "a@example.org",
        &["ok@r.test", "later@r.test", "bad@r.test"],
    );
    let failed = e.apply(
        &[
            result("ok@r.test", Outcome::Delivered("250 ok".into())),
            result(
                "later@r.test",
                Outcome::Deferred("451 4.7.1 greylisted\r\ntry later".into()),
            ),
            result(
                "bad@r.test",
                Outcome::Failed("550 5.1.1 no such user".into()),
            ),
            result("stranger@r.test", Outcome::Delivered("250".into())),
        ],
        t(10),
        &b,
    );
    assert_eq!(failed, ["bad@r.test"]);
    let [ok, later, bad] = &e.recipients[..] else {
        panic!()
    };
    assert_eq!((ok.status, ok.attempts), (Status::Delivered, 1));
    assert_eq!(later.status, Status::Pending);
    assert_eq!(later.next_attempt, t(310));
    assert_eq!(
        later.last_error.as_deref(),
        Some("451 4.7.1 greylisted  try later")
    );
    assert_eq!((bad.status, bad.notified), (Status::Failed, false));
    assert_eq!(
        e.last_error(),
        Some("550 5.1.1 no such user"),
        "ties: the last recipient"
    );
    assert_eq!(e.attempts(), 1);

    // A late "failure" for a delivered recipient (another deliverer's stale report) changes nothing.
    let snapshot = e.clone();
    let again = e.apply(
        &[result("ok@r.test", Outcome::Failed("550".into()))],
        t(20),
        &b,
    );
    assert!(again.is_empty());
    assert_eq!(e, snapshot);

    assert!(e.due_recipients(t(11)).is_empty());
    assert!(
        e.is_due(t(11), &b),
        "no recipient is due before the retry, but the DSN is owed"
    );
    assert_eq!(e.unnotified_failures().len(), 1);
    e.note(&Notice::Failures(vec!["bad@r.test".into()]));
    assert!(e.unnotified_failures().is_empty());
    assert!(!e.is_due(t(11), &b));
    assert!(e.is_due(t(310), &b));
    assert_eq!(e.due_recipients(t(310)).len(), 1);
    assert!(!e.is_finished());
}

#[test]
fn deferrals_expire_after_the_queue_lifetime() {
    let b = Backoff::default();
    let mut e = entry("a@example.org", &["x@r.test"]);
    let five_days = 5 * 24 * 3600;
    assert!(
        e.apply(
            &[result("x@r.test", Outcome::Deferred("421".into()))],
            t(five_days - 10),
            &b
        )
        .is_empty()
    );
    assert_eq!(e.recipients[0].next_attempt, t(five_days));
    let failed = e.apply(
        &[result("x@r.test", Outcome::Deferred("421".into()))],
        t(five_days),
        &b,
    );
    assert_eq!(failed, ["x@r.test"]);
    assert_eq!(e.recipients[0].status, Status::Expired);
}

#[test]
fn the_null_sender_gets_no_dsn_and_no_delay_warning() {
    let b = Backoff::default();
    let mut e = entry("", &["x@r.test", "y@r.test"]);
    let failed = e.apply(
        &[result("x@r.test", Outcome::Failed("550".into()))],
        t(1),
        &b,
    );
    assert!(failed.is_empty());
    assert!(e.recipients[0].notified);
    assert!(!e.delay_warning_due(t(5 * 3600), &b));
    e.apply(
        &[result("y@r.test", Outcome::Delivered("250".into()))],
        t(2),
        &b,
    );
    assert!(e.is_finished());
    assert!(e.is_due(t(2), &b), "finished entries are due for removal");
}

#[test]
fn delay_warning_is_due_once_after_four_hours() {
    let b = Backoff::default();
    let mut e = entry("a@example.org", &["x@r.test"]);
    assert!(!e.delay_warning_due(t(4 * 3600 - 1), &b));
    assert!(e.delay_warning_due(t(4 * 3600), &b));
    assert!(e.is_due(t(4 * 3600), &b));
    e.note(&Notice::DelayWarning);
    assert!(!e.delay_warning_due(t(4 * 3600), &b));
    e.hold = true;
    assert!(!e.is_due(t(0), &b), "held entries are never due");
}

#[test]
fn stats_count_states() {
    let b = Backoff::default();
    let fresh = entry("a@example.org", &["x@r.test"]);
    let mut tried = entry("a@example.org", &["x@r.test", "y@r.test"]);
    tried.created = t(-600);
    tried.apply(
        &[
            result("x@r.test", Outcome::Deferred("421".into())),
            result("y@r.test", Outcome::Delivered("250".into())),
        ],
        t(1),
        &b,
    );
    tried.hold = true;
    let lease = Lease {
        holder: "h".into(),
        claim: 1,
        pid: 7,
        expires: t(100),
    };
    let queued = [
        Queued {
            entry: fresh,
            lease: Some(lease),
        },
        Queued {
            entry: tried,
            lease: None,
        },
    ];
    let stats = Stats::count(&queued, t(10));
    assert_eq!((stats.entries, stats.held, stats.active), (2, 1, 1));
    assert_eq!((stats.new, stats.deferred), (1, 1));
    assert_eq!(
        (stats.recipients_pending, stats.recipients_delivered),
        (2, 1)
    );
    assert_eq!(stats.bytes, 200);
    assert_eq!(stats.oldest_age_secs, Some(610));
}
