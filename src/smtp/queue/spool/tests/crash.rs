//! Crash recovery: a "crash" at a step makes it fail and skips every cleanup after it, then the spool is
//! dropped the way `kill -9` leaves it (flock gone, owner file still there) and reopened. States that no crash
//! of this code produces (but a damaged disk might) are built by hand.

use std::fs;

use super::super::files::Step;
use super::*;
use crate::smtp::queue::{QueueError, Status};

/// Runs `action` on a spool that crashes at `step`, then reopens the spool.
fn crash_during(dir: &Path, step: Step, action: impl FnOnce(&SpoolQueue)) -> SpoolQueue {
    let spool = open(dir);
    spool.faults().fail_at(Some(step), true);
    action(&spool);
    assert!(
        spool.faults().crashed(),
        "the crash at {step:?} was not reached"
    );
    drop(spool);
    open(dir)
}

#[test]
fn an_enqueue_killed_before_its_commit_leaves_nothing() {
    for step in [
        Step::WriteBody,
        Step::SyncBody,
        Step::WriteMeta,
        Step::SyncMeta,
        Step::LinkBody,
        Step::RenameMeta,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spool = crash_during(dir.path(), step, |s| {
            s.enqueue(&envelope(&["x@r.test"]), b"message", t(0))
                .unwrap_err();
        });
        assert!(spool.list(t(0)).unwrap().is_empty(), "{step:?}");
        assert_empty(dir.path());
    }
}

#[test]
fn an_enqueue_killed_after_its_rename_keeps_the_whole_entry() {
    let dir = tempfile::tempdir().unwrap();
    let spool = crash_during(dir.path(), Step::SyncDir, |s| {
        s.enqueue(&envelope(&["x@r.test"]), b"message", t(0))
            .unwrap_err();
    });
    // Never acknowledged, yet complete and deliverable: the worst outcome is one duplicate, never a loss.
    let listed = spool.list(t(0)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(spool.body(&listed[0].entry.id).unwrap(), b"message");
    assert!(files(dir.path(), "tmp").is_empty());
}

#[test]
fn a_failed_enqueue_cleans_up_at_once() {
    for step in [
        Step::WriteBody,
        Step::SyncBody,
        Step::WriteMeta,
        Step::SyncMeta,
        Step::LinkBody,
        Step::RenameMeta,
        Step::SyncDir,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        spool.faults().fail_at(Some(step), false);
        let err = spool
            .enqueue(&envelope(&["x@r.test"]), b"m", t(0))
            .unwrap_err();
        assert!(err.temporary(), "{step:?}: {err}");
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        assert_empty(dir.path());
    }
}

/// An entry for two recipients, the first delivered and recorded; returns the entry's claim.
fn half_delivered(spool: &SpoolQueue) -> crate::smtp::queue::Claimed {
    enqueue(spool, &["done@r.test", "later@r.test"]);
    let claim = spool.claim_due(t(1), LEASE, 1).unwrap().remove(0);
    spool
        .record(&claim, &[delivered("done@r.test")], t(2))
        .unwrap();
    claim
}

#[test]
fn a_record_killed_at_any_step_never_makes_a_delivered_recipient_pending() {
    for step in [
        Step::WriteMeta,
        Step::SyncMeta,
        Step::RenameMeta,
        Step::SyncDir,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spool = crash_during(dir.path(), step, |s| {
            s.faults().fail_at(None, false);
            let claim = half_delivered(s);
            s.faults().fail_at(Some(step), true);
            s.record(&claim, &[deferred("later@r.test")], t(3))
                .unwrap_err();
        });
        let entry = &spool.list(t(3)).unwrap()[0].entry;
        let [done, later] = &entry.recipients[..] else {
            panic!()
        };
        assert_eq!(done.status, Status::Delivered, "{step:?}");
        let recorded = step == Step::SyncDir;
        assert_eq!(
            later.attempts,
            u32::from(recorded),
            "{step:?}: old or new record, nothing else"
        );
        assert!(files(dir.path(), "tmp").is_empty(), "{step:?}");
        // The dead owner's lease does not block, and only the undelivered recipient is offered.
        let retry_at = if recorded { t(303) } else { t(3) };
        let claim = spool.claim_due(retry_at, LEASE, 1).unwrap().remove(0);
        let due: Vec<_> = claim
            .entry
            .due_recipients(retry_at)
            .into_iter()
            .map(|r| r.address.clone())
            .collect();
        assert_eq!(due, ["later@r.test"], "{step:?}");
    }
}

#[test]
fn a_removal_killed_at_any_step_finishes_on_recovery() {
    for step in [Step::RemoveMeta, Step::SyncDir, Step::RemoveBody] {
        let dir = tempfile::tempdir().unwrap();
        let spool = crash_during(dir.path(), step, |s| {
            s.faults().fail_at(None, false);
            enqueue(s, &["x@r.test"]);
            let claim = s.claim_due(t(1), LEASE, 1).unwrap().remove(0);
            s.record(&claim, &[delivered("x@r.test")], t(2)).unwrap();
            s.faults().fail_at(Some(step), true);
            s.complete(&claim).unwrap_err();
        });
        // Either the finished record survived (the next scan removes it) or only leftovers did (the sweep
        // on open removed them).
        assert!(
            spool.claim_due(t(3), LEASE, 10).unwrap().is_empty(),
            "{step:?}"
        );
        assert_empty(dir.path());
    }
}

#[test]
fn a_claim_killed_while_writing_its_lease_leaves_the_entry_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = crash_during(dir.path(), Step::WriteLease, |s| {
        s.faults().fail_at(None, false);
        enqueue(s, &["x@r.test"]);
        s.faults().fail_at(Some(Step::WriteLease), true);
        assert!(s.claim_due(t(1), LEASE, 1).is_err());
    });
    assert_eq!(spool.claim_due(t(1), LEASE, 1).unwrap().len(), 1);
}

#[test]
fn open_removes_leftovers_of_dead_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let live = open(dir.path());
    let root = dir.path();
    let live_id = QueueId::generate(t(0));
    let dead_id = QueueId::generate(t(0));
    let tok = &live.storage().owner.token;
    // A live owner mid-enqueue (body linked, record not yet renamed), and a dead owner's half-written files.
    fs::write(root.join(format!("tmp/{tok}.{live_id}.json")), "{").unwrap();
    fs::write(root.join(format!("msg/{live_id}.eml")), "m").unwrap();
    fs::write(
        root.join(format!("tmp/0000000000000dead.{dead_id}.eml")),
        "half",
    )
    .unwrap();
    fs::write(
        root.join(format!("tmp/0000000000000dead.{dead_id}.json")),
        "",
    )
    .unwrap();
    fs::write(root.join("tmp/0000000000000dead.owner"), "").unwrap();
    fs::write(root.join(format!("msg/{dead_id}.eml")), "m").unwrap();
    fs::write(root.join(format!("lease/{dead_id}")), "").unwrap();
    fs::write(root.join("lease/not-an-id"), "").unwrap();

    let other = open(root);
    assert_eq!(
        files(root, "tmp"),
        [format!("{tok}.{live_id}.json")],
        "only the live owner's file stays"
    );
    assert_eq!(files(root, "msg"), [format!("{live_id}.eml")]);
    assert!(files(root, "lease").is_empty());
    let swept = other.sweep().unwrap();
    assert_eq!(
        swept,
        super::super::Swept::default(),
        "a second sweep finds nothing"
    );
}

#[test]
fn damaged_records_are_moved_aside_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = open(root);
    let good = enqueue(&spool, &["x@r.test"]);
    let garbled = enqueue(&spool, &["y@r.test"]);
    let bodiless = enqueue(&spool, &["z@r.test"]);
    fs::write(root.join(format!("msg/{garbled}.json")), "{not json").unwrap();
    fs::remove_file(root.join(format!("msg/{bodiless}.eml"))).unwrap();
    // A running spool skips the garbled record in listings and moves it aside when it meets it in a scan.
    assert_eq!(spool.list(t(0)).unwrap().len(), 2);
    assert!(matches!(
        spool.show(&garbled, t(0)),
        Err(QueueError::Corrupt { .. })
    ));
    drop(spool);

    let spool = open(root);
    let mut expected = [
        format!("{garbled}.eml"),
        format!("{garbled}.json"),
        format!("{bodiless}.json"),
    ];
    expected.sort();
    assert_eq!(files(root, "corrupt"), expected);
    let listed: Vec<_> = spool
        .list(t(0))
        .unwrap()
        .into_iter()
        .map(|q| q.entry.id)
        .collect();
    assert_eq!(listed, [good]);
}
