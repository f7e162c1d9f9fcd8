//! Enqueue, claim, record, note, complete: the life of an entry, and leases between two nodes.

use std::time::Duration;

use mailctl::smtp::queue::{Backoff, Completion, Notice, Queue, QueueError, Status};

use super::*;

kit::on_both_backends!(
    a_delivery_round_trip_removes_the_entry,
    failures_stay_queued_until_their_dsn_is_noted,
    delay_warnings_are_due_after_four_hours_and_noted_once,
    renew_extends_only_the_holders_lease,
    an_expired_lease_is_taken_over_and_the_old_holder_backs_off,
    results_for_a_removed_entry_are_not_found,
    invalid_envelopes_store_nothing,
);

fn a_delivery_round_trip_removes_the_entry(db: &TestDb) {
    // Through the trait object, as serve and the CLI hold it.
    let node = node(db);
    let queue: &dyn Queue = &*node;
    let id = enqueue(queue, &["a@r.test", "b@r.test"]);
    assert_eq!(queue.body(&id).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
    let stored = db.query("SELECT id, sender, size, hold FROM mailctl_queue");
    assert_eq!(
        stored[0],
        [
            Some(id.to_string()),
            Some("alice@example.org".into()),
            Some("21".into()),
            Some("0".into())
        ]
    );

    let claims = queue.claim_due(t(1), LEASE, 10).unwrap();
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.id(), &id);
    assert_eq!(claim.lease.expires, t(601));
    assert_eq!(claim.lease.pid, std::process::id());
    assert!(
        queue.claim_due(t(2), LEASE, 10).unwrap().is_empty(),
        "leased entries are not claimed twice"
    );

    let rec = queue
        .record(claim, &[delivered("a@r.test"), deferred("b@r.test")], t(2))
        .unwrap();
    assert_eq!(
        (rec.pending, rec.failed.len(), rec.delay_warning_due),
        (1, 0, false)
    );
    assert!(matches!(
        queue.complete(claim).unwrap(),
        Completion::Kept(_)
    ));
    assert!(
        queue.claim_due(t(3), LEASE, 10).unwrap().is_empty(),
        "b is not due for 5 minutes"
    );

    let claims = queue.claim_due(t(302), LEASE, 10).unwrap();
    let due: Vec<&str> = claims[0]
        .entry
        .due_recipients(t(302))
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(
        due,
        ["b@r.test"],
        "a delivered recipient is never tried again"
    );
    queue
        .record(&claims[0], &[delivered("b@r.test")], t(303))
        .unwrap();
    let Completion::Removed(entry) = queue.complete(&claims[0]).unwrap() else {
        panic!("finished entry kept")
    };
    assert!(
        entry
            .recipients
            .iter()
            .all(|r| r.status == Status::Delivered)
    );
    assert_empty(db);
    assert!(matches!(queue.body(&id), Err(QueueError::NotFound(_))));
}

fn failures_stay_queued_until_their_dsn_is_noted(db: &TestDb) {
    let queue = node(db);
    enqueue(&*queue, &["gone@r.test"]);
    let claim = queue.claim_due(t(1), LEASE, 1).unwrap().remove(0);
    let rec = queue
        .record(&claim, &[failed("gone@r.test")], t(1))
        .unwrap();
    assert_eq!(rec.failed, ["gone@r.test"]);
    assert_eq!(
        rec.entry.recipients[0].last_error.as_deref(),
        Some("550 5.1.1 unknown user")
    );
    // The deliverer "crashed" before queueing the DSN: the entry is due again for its notice.
    assert!(matches!(
        queue.complete(&claim).unwrap(),
        Completion::Kept(_)
    ));
    let claim = queue.claim_due(t(2), LEASE, 1).unwrap().remove(0);
    assert!(claim.entry.due_recipients(t(2)).is_empty());
    assert_eq!(claim.entry.unnotified_failures().len(), 1);
    queue
        .note(&claim, &Notice::Failures(rec.failed.clone()))
        .unwrap();
    assert!(matches!(
        queue.complete(&claim).unwrap(),
        Completion::Removed(_)
    ));
    assert_empty(db);
}

fn delay_warnings_are_due_after_four_hours_and_noted_once(db: &TestDb) {
    let queue = node(db);
    enqueue(&*queue, &["slow@r.test"]);
    let four_hours = 4 * 3600;
    let claim = queue.claim_due(t(1), LEASE, 1).unwrap().remove(0);
    // Seven temporary failures push the retry past the four-hour mark (5m doubling, capped at 4h).
    let mut rec = None;
    for _ in 0..7 {
        rec = Some(
            queue
                .record(&claim, &[deferred("slow@r.test")], t(1))
                .unwrap(),
        );
    }
    let rec = rec.unwrap();
    assert_eq!(rec.entry.next_attempt(), Some(t(1 + four_hours)));
    assert!(!rec.delay_warning_due);
    queue.release(&claim).unwrap();
    assert!(
        queue
            .claim_due(t(four_hours - 1), LEASE, 1)
            .unwrap()
            .is_empty()
    );

    // The warning falls due before the retry: the entry is claimed for it alone.
    let claim = queue.claim_due(t(four_hours), LEASE, 1).unwrap().remove(0);
    assert!(claim.entry.due_recipients(t(four_hours)).is_empty());
    assert!(
        claim
            .entry
            .delay_warning_due(t(four_hours), &Backoff::default())
    );
    let entry = queue.note(&claim, &Notice::DelayWarning).unwrap();
    assert!(entry.delay_warning_sent);
    queue.release(&claim).unwrap();
    assert!(
        queue.claim_due(t(four_hours), LEASE, 1).unwrap().is_empty(),
        "the warning is noted once"
    );
    assert_eq!(
        queue.claim_due(t(four_hours + 1), LEASE, 1).unwrap().len(),
        1,
        "then the retry"
    );
}

fn renew_extends_only_the_holders_lease(db: &TestDb) {
    let a = node(db);
    let b = node(db);
    enqueue(&*a, &["x@r.test"]);
    let claim = a
        .claim_due(t(0), Duration::from_secs(60), 1)
        .unwrap()
        .remove(0);
    let renewed = a.renew(&claim, t(50), Duration::from_secs(60)).unwrap();
    assert_eq!(renewed.lease.expires, t(110));
    assert!(
        b.claim_due(t(100), LEASE, 1).unwrap().is_empty(),
        "renewed lease still live"
    );
    let taken = b.claim_due(t(111), LEASE, 1).unwrap();
    assert_eq!(taken.len(), 1);
    let err = a.renew(&renewed, t(112), LEASE).unwrap_err();
    assert!(matches!(err, QueueError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("is being delivered by process"),
        "{err}"
    );
    assert!(err.temporary());
}

fn an_expired_lease_is_taken_over_and_the_old_holder_backs_off(db: &TestDb) {
    let a = node(db);
    let b = node(db);
    enqueue(&*a, &["x@r.test", "y@r.test"]);
    let lease = Duration::from_secs(60);
    let stale = a.claim_due(t(0), lease, 1).unwrap().remove(0);
    assert!(
        b.claim_due(t(59), lease, 1).unwrap().is_empty(),
        "live lease"
    );
    let fresh = b.claim_due(t(60), lease, 1).unwrap().remove(0);
    assert_eq!(fresh.id(), stale.id());
    assert_ne!(fresh.lease.holder, stale.lease.holder);

    // The slow old holder reports what it did: recorded (facts are kept), but it neither renews, releases
    // nor removes what is now b's.
    a.record(&stale, &[delivered("x@r.test")], t(62)).unwrap();
    assert!(matches!(
        a.renew(&stale, t(62), lease),
        Err(QueueError::Busy { .. })
    ));
    a.release(&stale).unwrap();
    assert!(matches!(a.complete(&stale).unwrap(), Completion::Kept(_)));
    let shown = a.show(stale.id(), t(62)).unwrap();
    assert_eq!(shown.lease.unwrap().holder, fresh.lease.holder);

    // b's own results merge with a's; a's delivery is not applied twice, and b's stale view of x (pending
    // when it claimed) cannot undo it.
    let rec = b
        .record(
            &fresh,
            &[deferred("x@r.test"), delivered("y@r.test")],
            t(63),
        )
        .unwrap();
    let x = &rec.entry.recipients[0];
    assert_eq!((x.status, x.attempts), (Status::Delivered, 1));
    assert!(matches!(
        b.complete(&fresh).unwrap(),
        Completion::Removed(_)
    ));
    assert_empty(db);
}

fn results_for_a_removed_entry_are_not_found(db: &TestDb) {
    let queue = node(db);
    let id = enqueue(&*queue, &["x@r.test"]);
    let claim = queue.claim_due(t(0), LEASE, 1).unwrap().remove(0);
    queue
        .record(&claim, &[delivered("x@r.test")], t(1))
        .unwrap();
    queue.complete(&claim).unwrap();
    let err = queue
        .record(&claim, &[delivered("x@r.test")], t(2))
        .unwrap_err();
    assert_eq!(err.to_string(), format!("queue entry {id} does not exist"));
    assert!(matches!(
        queue.complete(&claim),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        queue.renew(&claim, t(2), LEASE),
        Err(QueueError::NotFound(_))
    ));
    queue.release(&claim).unwrap();
    assert_empty(db);
}

fn invalid_envelopes_store_nothing(db: &TestDb) {
    let queue = node(db);
    let bad = Envelope {
        sender: "a\r\n@b".into(),
        recipients: vec!["x@r.test".into()],
        dkim: None,
    };
    assert!(matches!(
        queue.enqueue(&bad, b"m", t(0)),
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        queue.enqueue(&envelope(&[]), b"m", t(0)),
        Err(QueueError::Invalid(_))
    ));
    assert_empty(db);
    // The null sender may queue (bounces), and an empty message is still a message.
    let bounce = Envelope {
        sender: String::new(),
        ..envelope(&["x@r.test"])
    };
    let id = queue.enqueue(&bounce, b"", t(0)).unwrap();
    assert_eq!(queue.body(&id).unwrap(), b"");
}
