use std::fs;
use std::os::unix::fs::symlink;

use super::super::DeliverError;
use super::{scratch, tree};

#[test]
fn usage_of_a_maildir_never_created_is_zero_and_creates_nothing() {
    let s = scratch();
    assert_eq!(s.store.usage("example.com/nobody/").unwrap(), 0);
    assert!(tree(&s.base).is_empty());
}

#[test]
fn usage_sums_size_fields_over_the_inbox_and_every_folder() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, &[b'a'; 100])
        .unwrap();
    s.store
        .deliver("example.com/alice", Some("Junk"), &[b'j'; 30])
        .unwrap();
    let root = s.base.join("example.com/alice");
    // Messages Dovecot has seen sit in cur/ with flags; one written by another agent has no S= at all.
    fs::write(root.join("cur/1.M1P1.other,S=1000,W=1020:2,S"), b"short").unwrap();
    fs::write(root.join(".Junk/cur/2.M1P1.other:2,"), [0u8; 7]).unwrap();
    fs::write(root.join("new/.hidden,S=999999"), b"").unwrap();
    assert_eq!(
        s.store.usage("example.com/alice/").unwrap(),
        100 + 30 + 1000 + 7
    );
}

#[test]
fn usage_ignores_folders_that_are_symlinks() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, &[b'a'; 10])
        .unwrap();
    fs::create_dir_all(s.outside.join("cur")).unwrap();
    fs::write(s.outside.join("cur/x,S=5000"), b"").unwrap();
    symlink(&s.outside, s.base.join("example.com/alice/.Evil")).unwrap();
    assert_eq!(s.store.usage("example.com/alice").unwrap(), 10);
}

#[test]
fn usage_comes_from_maildirsize_when_dovecot_keeps_one() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, &[b'a'; 100])
        .unwrap();
    let file = s.base.join("example.com/alice/maildirsize");
    fs::write(&file, "1073741824S,10000C\n5000 3\n-1000 -1\n250 1\n").unwrap();
    assert_eq!(s.store.usage("example.com/alice").unwrap(), 4250);
}

#[test]
fn a_malformed_maildirsize_falls_back_to_the_file_names() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, &[b'a'; 100])
        .unwrap();
    fs::write(
        s.base.join("example.com/alice/maildirsize"),
        "1000S\ngarbage\n",
    )
    .unwrap();
    assert_eq!(s.store.usage("example.com/alice").unwrap(), 100);
}

#[test]
fn delivery_appends_to_an_existing_maildirsize_and_never_creates_one() {
    let s = scratch();
    s.store
        .deliver("example.com/alice", None, &[b'a'; 100])
        .unwrap();
    let file = s.base.join("example.com/alice/maildirsize");
    assert!(!file.exists());
    fs::write(&file, "0S\n100 1\n").unwrap();
    s.store
        .deliver("example.com/alice", Some("Junk"), &[b'j'; 40])
        .unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "0S\n100 1\n40 1\n");
    assert_eq!(s.store.usage("example.com/alice").unwrap(), 140);
}

#[test]
fn usage_refuses_hostile_paths_like_delivery_does() {
    let s = scratch();
    let err = s.store.usage("../outside").unwrap_err();
    assert!(matches!(err, DeliverError::BadPath { .. }));
    symlink(&s.outside, s.base.join("example.com")).unwrap();
    let err = s.store.usage("example.com/alice").unwrap_err();
    assert!(matches!(err, DeliverError::Escapes { .. }), "{err}");
}
