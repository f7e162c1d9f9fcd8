//! `mailctl queue` operations against a spool that a "serve" (another opened spool) is delivering from.

use super::*;
use crate::smtp::queue::{Completion, QueueError, Status};

#[test]
fn list_and_show_report_what_the_admin_needs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let first = enqueue(&spool, &["a@r.test", "b@r.test"]);
    let second = spool
        .enqueue(&envelope(&["c@r.test"]), b"x", t(10))
        .unwrap();
    let claim = spool.claim_due(t(20), LEASE, 1).unwrap().remove(0);
    spool
        .record(&claim, &[deferred("a@r.test")], t(20))
        .unwrap();

    let listed = spool.list(t(30)).unwrap();
    let ids: Vec<_> = listed.iter().map(|q| q.entry.id.clone()).collect();
    assert_eq!(ids, [first.clone(), second], "oldest first");
    let q = &listed[0];
    assert_eq!(q.entry.sender, "alice@example.org");
    assert_eq!(q.entry.size, 21);
    assert_eq!(q.entry.age(t(30)).num_seconds(), 30);
    assert_eq!(q.entry.attempts(), 1);
    assert_eq!(q.entry.last_error(), Some("451 4.3.0 try later"));
    assert_eq!(
        q.entry.next_attempt(),
        Some(t(0)),
        "b was never tried, so it is due now"
    );
    assert_eq!(q.lease.as_ref().map(|l| l.pid), Some(std::process::id()));
    assert!(listed[1].lease.is_none());
    assert_eq!(spool.show(&first, t(30)).unwrap().entry, q.entry);

    let missing = QueueId::generate(t(0));
    assert!(matches!(
        spool.show(&missing, t(0)),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(spool.hold(&missing), Err(QueueError::NotFound(_))));
    assert!(
        files(dir.path(), "lease").len() == 1,
        "failed lookups leave no lock files"
    );
    assert!("../etc".parse::<QueueId>().is_err());
}

#[test]
fn hold_keeps_an_entry_from_delivery_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let admin = open(dir.path());
    let serve = open(dir.path());
    let id = enqueue(&serve, &["x@r.test"]);
    assert!(admin.hold(&id).unwrap().hold);
    assert!(serve.claim_due(t(1), LEASE, 10).unwrap().is_empty());
    assert_eq!(admin.stats(t(1)).unwrap().held, 1);
    assert!(!admin.release_held(&id).unwrap().hold);
    assert_eq!(serve.claim_due(t(1), LEASE, 10).unwrap().len(), 1);
}

#[test]
fn flush_makes_deferred_entries_due_now() {
    let dir = tempfile::tempdir().unwrap();
    let admin = open(dir.path());
    let serve = open(dir.path());
    let one = enqueue(&serve, &["x@r.test"]);
    enqueue(&serve, &["y@r.test"]);
    for claim in serve.claim_due(t(0), LEASE, 10).unwrap() {
        let address = claim.entry.recipients[0].address.clone();
        serve.record(&claim, &[deferred(&address)], t(0)).unwrap();
        serve.release(&claim).unwrap();
    }
    assert!(serve.claim_due(t(60), LEASE, 10).unwrap().is_empty());
    assert_eq!(admin.flush(Some(&one), t(60)).unwrap(), 1);
    let claimed = serve.claim_due(t(60), LEASE, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id(), &one);
    assert_eq!(
        admin.flush(None, t(61)).unwrap(),
        1,
        "the other one; the first is due already"
    );
    assert_eq!(serve.claim_due(t(61), LEASE, 10).unwrap().len(), 1);
}

#[test]
fn delete_refuses_while_another_process_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let admin = open(dir.path());
    let serve = open(dir.path());
    let id = enqueue(&serve, &["x@r.test", "y@r.test"]);
    let claim = serve.claim_due(t(0), LEASE, 1).unwrap().remove(0);
    let err = admin.delete(&id, t(1)).unwrap_err();
    assert!(matches!(err, QueueError::Busy { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("queue entry {id} is being delivered by process"))
    );
    assert!(err.temporary());

    serve
        .record(&claim, &[delivered("x@r.test")], t(2))
        .unwrap();
    assert!(matches!(
        serve.complete(&claim).unwrap(),
        Completion::Kept(_)
    ));
    let entry = admin.delete(&id, t(3)).unwrap();
    let states: Vec<_> = entry.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        states,
        [Status::Delivered, Status::Pending],
        "the caller bounces what is pending"
    );
    assert_empty(dir.path());
    assert!(matches!(
        admin.delete(&id, t(4)),
        Err(QueueError::NotFound(_))
    ));
    let err: crate::error::Error = QueueError::NotFound(id.clone()).into();
    assert_eq!(err.to_string(), format!("queue entry {id} does not exist"));
}

#[test]
fn stats_count_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    enqueue(&spool, &["x@r.test"]);
    spool
        .enqueue(&envelope(&["y@r.test"]), b"xy", t(100))
        .unwrap();
    let stats = spool.stats(t(200)).unwrap();
    assert_eq!((stats.entries, stats.new, stats.deferred), (2, 2, 0));
    assert_eq!(stats.bytes, 23);
    assert_eq!(stats.oldest_age_secs, Some(200));
    assert_eq!(spool.stats(t(0)).unwrap().recipients_pending, 2);
}

#[test]
fn a_deferred_entry_skipped_by_earlier_scans_is_claimed_when_its_time_comes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = open(dir.path());
    let id = enqueue(&serve, &["x@r.test"]);
    let claim = serve.claim_due(t(0), LEASE, 10).unwrap().remove(0);
    serve.record(&claim, &[deferred("x@r.test")], t(0)).unwrap();
    serve.release(&claim).unwrap();
    let next = serve.show(&id, t(0)).unwrap().entry.next_attempt().unwrap();
    let secs = (next - t(0)).num_seconds();
    assert!(secs > 60, "{secs}");
    // Scans before its time skip it (the second from memory), the one at its time claims it.
    assert!(serve.claim_due(t(1), LEASE, 10).unwrap().is_empty());
    assert!(serve.claim_due(t(secs - 1), LEASE, 10).unwrap().is_empty());
    let claimed = serve.claim_due(t(secs), LEASE, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id(), &id);
}
