//! Enqueue, claim, record, note, complete: the life of an entry.

use super::*;
use crate::smtp::queue::{Completion, Notice, QueueError, Status};

#[test]
fn enqueue_writes_body_and_record_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(&spool, &["bob@remote.test"]);
    assert_eq!(
        files(dir.path(), "msg"),
        [format!("{id}.eml"), format!("{id}.json")]
    );
    assert!(files(dir.path(), "tmp").is_empty());
    assert_eq!(spool.body(&id).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("msg/{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(json["id"], id.as_str());
    assert_eq!(json["sender"], "alice@example.org");
    assert_eq!(json["size"], 21);
    assert_eq!(json["recipients"][0]["address"], "bob@remote.test");
    assert_eq!(json["recipients"][0]["attempts"], 0);
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&format!("msg/{id}.eml")), 0o600);
    assert_eq!(mode("msg"), 0o700);
}

#[test]
fn a_delivery_round_trip_removes_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    // Through the trait object, as serve and the CLI will hold it.
    let spool: std::sync::Arc<dyn Queue> = std::sync::Arc::new(open(dir.path()));
    let spool = spool.as_ref();
    let enqueue = |s: &dyn Queue, rcpts: &[&str]| s.enqueue(&envelope(rcpts), b"m", t(0)).unwrap();
    let id = enqueue(spool, &["a@r.test", "b@r.test"]);

    let claims = spool.claim_due(t(1), LEASE, 10).unwrap();
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.id(), &id);
    assert_eq!(claim.lease.expires, t(601));
    assert!(
        spool.claim_due(t(2), LEASE, 10).unwrap().is_empty(),
        "leased entries are not claimed twice"
    );

    let rec = spool
        .record(claim, &[delivered("a@r.test"), deferred("b@r.test")], t(2))
        .unwrap();
    assert_eq!(
        (rec.pending, rec.failed.len(), rec.delay_warning_due),
        (1, 0, false)
    );
    assert!(matches!(
        spool.complete(claim).unwrap(),
        Completion::Kept(_)
    ));
    assert!(
        spool.claim_due(t(3), LEASE, 10).unwrap().is_empty(),
        "b is not due for 5 minutes"
    );

    let claims = spool.claim_due(t(302), LEASE, 10).unwrap();
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
    spool
        .record(&claims[0], &[delivered("b@r.test")], t(303))
        .unwrap();
    let Completion::Removed(entry) = spool.complete(&claims[0]).unwrap() else {
        panic!("finished entry kept")
    };
    assert!(
        entry
            .recipients
            .iter()
            .all(|r| r.status == Status::Delivered)
    );
    assert_empty(dir.path());
    assert!(matches!(spool.body(&id), Err(QueueError::NotFound(_))));
}

#[test]
fn failures_stay_queued_until_their_dsn_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    enqueue(&spool, &["gone@r.test"]);
    let claim = spool.claim_due(t(1), LEASE, 1).unwrap().remove(0);
    let rec = spool
        .record(&claim, &[failed("gone@r.test")], t(1))
        .unwrap();
    assert_eq!(rec.failed, ["gone@r.test"]);
    assert_eq!(
        rec.entry.recipients[0].last_error.as_deref(),
        Some("550 5.1.1 unknown user")
    );
    // The deliverer "crashed" before queueing the DSN: the entry is due again for its notice.
    assert!(matches!(
        spool.complete(&claim).unwrap(),
        Completion::Kept(_)
    ));
    let claim = spool.claim_due(t(2), LEASE, 1).unwrap().remove(0);
    assert!(claim.entry.due_recipients(t(2)).is_empty());
    assert_eq!(claim.entry.unnotified_failures().len(), 1);
    spool
        .note(&claim, &Notice::Failures(rec.failed.clone()))
        .unwrap();
    assert!(matches!(
        spool.complete(&claim).unwrap(),
        Completion::Removed(_)
    ));
    assert_empty(dir.path());
}

#[test]
fn delay_warnings_are_due_after_four_hours_and_noted_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    enqueue(&spool, &["slow@r.test"]);
    let four_hours = 4 * 3600;
    let claim = spool.claim_due(t(four_hours), LEASE, 1).unwrap().remove(0);
    let rec = spool
        .record(&claim, &[deferred("slow@r.test")], t(four_hours))
        .unwrap();
    assert!(rec.delay_warning_due);
    let entry = spool.note(&claim, &Notice::DelayWarning).unwrap();
    assert!(entry.delay_warning_sent);
    spool.release(&claim).unwrap();
    assert!(
        spool
            .claim_due(t(four_hours + 1), LEASE, 1)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn renew_extends_only_the_holders_lease() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    enqueue(&a, &["x@r.test"]);
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
}

#[test]
fn results_for_a_removed_entry_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(&spool, &["x@r.test"]);
    let claim = spool.claim_due(t(0), LEASE, 1).unwrap().remove(0);
    spool
        .record(&claim, &[delivered("x@r.test")], t(1))
        .unwrap();
    spool.complete(&claim).unwrap();
    let err = spool
        .record(&claim, &[delivered("x@r.test")], t(2))
        .unwrap_err();
    assert_eq!(err.to_string(), format!("queue entry {id} does not exist"));
    spool.release(&claim).unwrap();
    assert_empty(dir.path());
}
