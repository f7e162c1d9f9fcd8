use std::fs;

use super::super::DeliverError;
use super::super::durable::{Step, fault};
use super::{Item, item, names, scratch};

#[test]
fn deliver_many_returns_results_in_order_and_a_bad_item_fails_alone() {
    let s = scratch();
    let items: [Item; 5] = [
        item("example.com/alice", None, b"one"),
        item("../outside", None, b"two"),
        item("example.com/bob", Some("Junk"), b"three"),
        item("example.com/bob", Some("../x"), b"four"),
        item("example.com/alice", None, b"five"),
    ];
    let results = s.store.deliver_many(&items);
    assert_eq!(results.len(), 5);
    for (result, Item { message, .. }) in results.iter().zip(items) {
        if let Ok(delivered) = result {
            assert_eq!(fs::read(&delivered.path).unwrap(), message);
            assert_eq!(delivered.size, message.len() as u64);
        }
    }
    assert!(matches!(results[1], Err(DeliverError::BadPath { .. })));
    assert!(matches!(results[3], Err(DeliverError::BadFolder { .. })));
    assert!(results[0].is_ok() && results[2].is_ok() && results[4].is_ok());
    assert_eq!(names(&s.base.join("example.com/alice/new")).len(), 2);
    assert_eq!(names(&s.base.join("example.com/bob/.Junk/new")).len(), 1);
    assert!(names(&s.outside).is_empty());
}

#[test]
fn deliver_many_syncs_each_distinct_new_directory_once() {
    let s = scratch();
    // Create the Maildirs first, so only the group's own directory syncs are counted.
    for (rel, folder) in [
        ("example.com/alice", None),
        ("example.com/bob", None),
        ("example.com/bob", Some("Junk")),
    ] {
        s.store.deliver(rel, folder, b"warm-up").unwrap();
    }
    let mut items: Vec<Item> = Vec::new();
    for _ in 0..10 {
        items.push(item("example.com/alice", None, b"a"));
        items.push(item("example.com/bob", None, b"b"));
        items.push(item("example.com/bob", Some("Junk"), b"j"));
    }
    let before = fault::dir_syncs();
    let results = s.store.deliver_many(&items);
    assert_eq!(fault::dir_syncs() - before, 3);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(names(&s.base.join("example.com/alice/new")).len(), 11);
    assert!(names(&s.base.join("example.com/alice/tmp")).is_empty());
    assert!(names(&s.base.join("example.com/bob/.Junk/tmp")).is_empty());
}

#[test]
fn deliver_many_with_no_items_does_nothing() {
    let s = scratch();
    assert!(s.store.deliver_many(&[]).is_empty());
}

#[test]
fn a_failed_group_sync_fails_every_item_it_covered_and_leaves_no_files() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, b"earlier")
        .unwrap();
    let items = vec![item("example.com/alice", None, b"x"); 4];
    fault::fail_at(Some(Step::SyncDir));
    let results = s.store.deliver_many(&items);
    fault::fail_at(None);
    assert_eq!(results.len(), 4);
    for result in results {
        let err = result.unwrap_err();
        assert!(
            err.temporary() && err.to_string().contains("sync directory"),
            "{err}"
        );
    }
    let root = s.base.join("example.com/alice");
    assert_eq!(
        names(&root.join("new")).len(),
        1,
        "only the earlier message"
    );
    assert!(names(&root.join("tmp")).is_empty());
}

#[test]
fn failed_writes_in_a_group_leave_nothing_in_tmp() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, b"earlier")
        .unwrap();
    let items = vec![item("example.com/alice", None, b"x"); 3];
    for step in [Step::Write, Step::SyncFile, Step::Rename] {
        fault::fail_at(Some(step));
        let results = s.store.deliver_many(&items);
        fault::fail_at(None);
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(DeliverError::temporary)),
            "{step:?}"
        );
    }
    let root = s.base.join("example.com/alice");
    assert!(names(&root.join("tmp")).is_empty());
    assert_eq!(names(&root.join("new")).len(), 1);
}
