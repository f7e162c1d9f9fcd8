//! `mailctl queue` operations from one node while another ("serve") delivers, big bodies, damaged rows.

use mailctl::smtp::queue::{Completion, QueueError, Status};

use super::*;

kit::on_both_backends!(
    list_and_show_report_what_the_admin_needs,
    hold_keeps_an_entry_from_delivery_until_released,
    flush_makes_deferred_entries_due_now,
    delete_refuses_while_another_node_delivers,
    stats_count_the_queue,
    large_messages_come_back_byte_for_byte,
    a_damaged_record_is_held_not_retried_forever,
);

fn list_and_show_report_what_the_admin_needs(db: &TestDb) {
    let serve = node(db);
    let admin = node(db);
    let first = enqueue(&*serve, &["a@r.test", "b@r.test"]);
    let second = serve
        .enqueue(&envelope(&["c@r.test"]), b"x", t(10))
        .unwrap();
    let claim = serve.claim_due(t(20), LEASE, 1).unwrap().remove(0);
    assert_eq!(claim.id(), &first, "most overdue first");
    serve
        .record(&claim, &[deferred("a@r.test")], t(20))
        .unwrap();

    let listed = admin.list(t(30)).unwrap();
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
    let lease = q.lease.as_ref().unwrap();
    assert_eq!(lease.pid, std::process::id());
    assert_eq!(lease.holder, serve.holder());
    assert!(
        serve
            .holder()
            .contains(&format!("/{}/", std::process::id()))
    );
    assert!(listed[1].lease.is_none());
    assert_eq!(admin.show(&first, t(30)).unwrap().entry, q.entry);
    assert!(
        admin.show(&first, t(700)).unwrap().lease.is_none(),
        "expired leases are not shown"
    );

    let missing = QueueId::generate(t(0));
    assert!(matches!(
        admin.show(&missing, t(0)),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(admin.hold(&missing), Err(QueueError::NotFound(_))));
    assert!(matches!(admin.body(&missing), Err(QueueError::NotFound(_))));
    assert!(matches!(
        admin.delete(&missing, t(0)),
        Err(QueueError::NotFound(_))
    ));
}

fn hold_keeps_an_entry_from_delivery_until_released(db: &TestDb) {
    let admin = node(db);
    let serve = node(db);
    let id = enqueue(&*serve, &["x@r.test"]);
    assert!(admin.hold(&id).unwrap().hold);
    assert_eq!(
        db.query("SELECT hold FROM mailctl_queue")[0][0].as_deref(),
        Some("1")
    );
    assert!(serve.claim_due(t(1), LEASE, 10).unwrap().is_empty());
    assert_eq!(admin.stats(t(1)).unwrap().held, 1);
    assert!(!admin.release_held(&id).unwrap().hold);
    assert_eq!(serve.claim_due(t(1), LEASE, 10).unwrap().len(), 1);
}

fn flush_makes_deferred_entries_due_now(db: &TestDb) {
    let admin = node(db);
    let serve = node(db);
    let one = enqueue(&*serve, &["x@r.test"]);
    enqueue(&*serve, &["y@r.test"]);
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
    assert!(matches!(
        admin.flush(Some(&QueueId::generate(t(0))), t(62)),
        Err(QueueError::NotFound(_))
    ));
}

fn delete_refuses_while_another_node_delivers(db: &TestDb) {
    let admin = node(db);
    let serve = node(db);
    let id = enqueue(&*serve, &["x@r.test", "y@r.test"]);
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
    assert_empty(db);
    assert!(matches!(
        admin.delete(&id, t(4)),
        Err(QueueError::NotFound(_))
    ));

    // An expired lease of a vanished node does not block the admin.
    let id = enqueue(&*serve, &["z@r.test"]);
    serve.claim_due(t(0), LEASE, 1).unwrap();
    assert!(admin.delete(&id, t(700)).is_ok());
}

fn stats_count_the_queue(db: &TestDb) {
    let queue = node(db);
    enqueue(&*queue, &["x@r.test"]);
    queue
        .enqueue(&envelope(&["y@r.test"]), b"xy", t(100))
        .unwrap();
    let stats = queue.stats(t(200)).unwrap();
    assert_eq!((stats.entries, stats.new, stats.deferred), (2, 2, 0));
    assert_eq!(stats.bytes, 23);
    assert_eq!(stats.oldest_age_secs, Some(200));
    assert_eq!(stats.recipients_pending, 2);
    queue.claim_due(t(200), LEASE, 1).unwrap();
    assert_eq!(queue.stats(t(201)).unwrap().active, 1);
}

fn large_messages_come_back_byte_for_byte(db: &TestDb) {
    // Larger than MariaDB's default max_allowed_packet (16 MiB) would be slow here; 3 MiB spans several
    // body chunks, which is what matters.
    let message: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let queue = node(db);
    let id = queue
        .enqueue(&envelope(&["x@r.test"]), &message, t(0))
        .unwrap();
    assert!(
        queue.body(&id).unwrap() == message,
        "body changed on its way through the database"
    );
    assert_eq!(
        queue.show(&id, t(0)).unwrap().entry.size,
        message.len() as u64
    );
    let chunks = db.query("SELECT COUNT(*) FROM mailctl_queue_bodies");
    assert!(chunks[0][0].as_deref().unwrap().parse::<u32>().unwrap() > 1);
}

fn a_damaged_record_is_held_not_retried_forever(db: &TestDb) {
    let queue = node(db);
    let damaged = enqueue(&*queue, &["x@r.test"]);
    let fine = queue.enqueue(&envelope(&["y@r.test"]), b"m", t(1)).unwrap();
    db.query(&format!(
        "UPDATE mailctl_queue SET record = '{{not json' WHERE id = '{damaged}'"
    ));
    let claims = queue.claim_due(t(2), LEASE, 10).unwrap();
    let ids: Vec<_> = claims.iter().map(|c| c.id().clone()).collect();
    assert_eq!(
        ids,
        [fine],
        "the damaged entry is skipped, the rest delivered"
    );
    assert_eq!(
        db.query(&format!(
            "SELECT hold FROM mailctl_queue WHERE id = '{damaged}'"
        ))[0][0]
            .as_deref(),
        Some("1")
    );
    let err = queue.show(&damaged, t(2)).unwrap_err();
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err}");
    assert_eq!(
        queue.list(t(2)).unwrap().len(),
        1,
        "listing skips what it cannot read"
    );
}
