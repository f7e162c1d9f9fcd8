//! Several claimers on one spool (threads of one process, and separately opened spools standing in for
//! separate `serve` processes), lease takeover, and group commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use super::*;
use crate::smtp::queue::Completion;

#[test]
fn concurrent_claimers_never_get_the_same_entry() {
    let dir = tempfile::tempdir().unwrap();
    let spools = [Arc::new(open(dir.path())), Arc::new(open(dir.path()))];
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(enqueue(&spools[n % 2], &["x@r.test"]));
    }
    let seen: Arc<Mutex<HashMap<QueueId, usize>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..6 {
        let spool = Arc::clone(&spools[w % 2]);
        let seen = Arc::clone(&seen);
        workers.push(thread::spawn(move || {
            loop {
                let claims = spool.claim_due(t(1), LEASE, 1 + w % 3).unwrap();
                if claims.is_empty() && spool.list(t(1)).unwrap().is_empty() {
                    break;
                }
                for claim in claims {
                    *seen.lock().unwrap().entry(claim.id().clone()).or_default() += 1;
                    spool
                        .record(&claim, &[delivered("x@r.test")], t(2))
                        .unwrap();
                    assert!(matches!(
                        spool.complete(&claim).unwrap(),
                        Completion::Removed(_)
                    ));
                }
            }
        }));
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), ids.len(), "every entry delivered");
    assert!(
        seen.values().all(|&n| n == 1),
        "an entry was claimed twice: {seen:?}"
    );
    assert_empty(dir.path());
}

#[test]
fn an_expired_lease_is_taken_over_and_the_old_holder_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    enqueue(&a, &["x@r.test", "y@r.test"]);
    let lease = Duration::from_secs(60);
    let stale = a.claim_due(t(0), lease, 1).unwrap().remove(0);
    assert!(
        b.claim_due(t(59), lease, 1).unwrap().is_empty(),
        "live lease of a live owner"
    );
    let fresh = b.claim_due(t(61), lease, 1).unwrap().remove(0);
    assert_eq!(fresh.id(), stale.id());
    assert_ne!(fresh.lease.holder, stale.lease.holder);

    // The slow old holder reports what it did: recorded (facts are kept), but it neither releases nor
    // removes what is now b's.
    a.record(&stale, &[delivered("x@r.test")], t(62)).unwrap();
    a.release(&stale).unwrap();
    assert!(matches!(a.complete(&stale).unwrap(), Completion::Kept(_)));
    assert_eq!(
        a.show(stale.id(), t(62)).unwrap().lease.unwrap().holder,
        fresh.lease.holder
    );

    let rec = b
        .record(
            &fresh,
            &[delivered("x@r.test"), delivered("y@r.test")],
            t(63),
        )
        .unwrap();
    let x = &rec.entry.recipients[0];
    assert_eq!(
        x.attempts, 1,
        "the stale report for x was not applied twice"
    );
    assert!(matches!(
        b.complete(&fresh).unwrap(),
        Completion::Removed(_)
    ));
}

#[test]
fn a_dead_owners_lease_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let a = open(dir.path());
    let id = enqueue(&a, &["x@r.test"]);
    a.claim_due(t(0), LEASE, 1).unwrap();
    assert!(b.claim_due(t(1), LEASE, 1).unwrap().is_empty());
    a.faults().kill();
    drop(a); // like kill -9: the flock goes, the owner file stays
    let claims = b.claim_due(t(1), LEASE, 1).unwrap();
    assert_eq!(
        claims.len(),
        1,
        "lease of a dead process must not wait for its expiry"
    );
    assert_eq!(claims[0].id(), &id);
    assert_eq!(
        files(dir.path(), "owner"),
        std::slice::from_ref(&b.storage().owner.token),
        "dead owner file removed"
    );
}

#[test]
fn concurrent_enqueues_share_directory_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(dir.path()));
    spool.faults().set_sync_delay(Duration::from_millis(50));
    let before = spool.dir_sync_rounds();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let spool = Arc::clone(&spool);
            thread::spawn(move || {
                (0..5)
                    .filter(|_| !enqueue(&spool, &["x@r.test"]).as_str().is_empty())
                    .count()
            })
        })
        .collect();
    let enqueued: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(enqueued, 40, "every enqueue returned an id");
    let rounds = spool.dir_sync_rounds() - before;
    eprintln!("group commit: {rounds} directory fsyncs for {enqueued} enqueues");
    assert_eq!(spool.list(t(0)).unwrap().len(), enqueued);
    assert!(
        rounds < enqueued / 2,
        "{rounds} fsyncs for {enqueued} enqueues: not grouped"
    );
}

#[test]
fn a_failed_group_fsync_fails_every_enqueue_of_its_round() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(dir.path()));
    spool.faults().set_sync_delay(Duration::from_millis(10));
    spool
        .faults()
        .fail_at(Some(super::super::files::Step::SyncDir), false);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let spool = Arc::clone(&spool);
            thread::spawn(move || spool.enqueue(&envelope(&["x@r.test"]), b"m", t(0)).is_err())
        })
        .collect();
    assert!(threads.into_iter().all(|t| t.join().unwrap()));
    assert_empty(dir.path());
}
