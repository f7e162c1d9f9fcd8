use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use super::super::durable::{Step, fault};
use super::super::name::size_from_name;
use super::super::{DeliverError, MaildirStore};
use super::{Item, item, mode, names, scratch};

const MESSAGE: &[u8] =
    b"From: a@example.org\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";

#[test]
fn delivery_creates_the_maildir_structure_with_private_modes() {
    let s = scratch();
    let delivered = s
        .store
        .deliver("example.com/alice/", None, MESSAGE)
        .unwrap();
    let root = s.base.join("example.com/alice");
    for dir in [
        s.base.join("example.com"),
        root.clone(),
        root.join("cur"),
        root.join("new"),
        root.join("tmp"),
    ] {
        assert!(dir.is_dir(), "{}", dir.display());
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&delivered.path), 0o600);
    assert!(
        !root.join("maildirfolder").exists(),
        "the INBOX root is not a Maildir++ subfolder"
    );
}

#[test]
fn delivered_message_lands_in_new_with_exact_bytes_and_its_size_in_the_name() {
    let s = scratch();
    let delivered = s
        .store
        .deliver("example.com/alice/", None, MESSAGE)
        .unwrap();
    let new = fs::canonicalize(s.base.join("example.com/alice/new")).unwrap();
    assert_eq!(delivered.path.parent().unwrap(), new);
    assert_eq!(fs::read(&delivered.path).unwrap(), MESSAGE);
    assert_eq!(delivered.size, MESSAGE.len() as u64);
    let name = delivered.path.file_name().unwrap().to_str().unwrap();
    assert_eq!(size_from_name(name), Some(MESSAGE.len() as u64));
    assert!(
        name.ends_with(&format!(".mx.example.test,S={}", MESSAGE.len())),
        "{name}"
    );
    assert_eq!(names(&new), [name]);
}

#[test]
fn binary_and_empty_messages_are_stored_byte_for_byte() {
    let s = scratch();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let delivered = s.store.deliver("example.com/bob", None, &binary).unwrap();
    assert_eq!(fs::read(&delivered.path).unwrap(), binary);
    let empty = s.store.deliver("example.com/bob", None, b"").unwrap();
    assert_eq!(empty.size, 0);
    assert!(empty.path.to_str().unwrap().ends_with(",S=0"));
    assert_eq!(fs::read(&empty.path).unwrap(), b"");
}

#[test]
fn nothing_is_left_in_tmp_after_successful_deliveries() {
    let s = scratch();
    for _ in 0..5 {
        s.store
            .deliver("example.com/alice/", None, MESSAGE)
            .unwrap();
        s.store
            .deliver("example.com/alice/", Some("Junk"), MESSAGE)
            .unwrap();
    }
    assert!(names(&s.base.join("example.com/alice/tmp")).is_empty());
    assert!(names(&s.base.join("example.com/alice/.Junk/tmp")).is_empty());
    assert_eq!(names(&s.base.join("example.com/alice/new")).len(), 5);
}

#[test]
fn hostname_slash_and_colon_are_escaped_in_file_names() {
    let s = scratch();
    let store = MaildirStore::new(&s.base, "mx/1:2");
    let delivered = store.deliver("example.com/alice", None, MESSAGE).unwrap();
    let name = delivered.path.file_name().unwrap().to_str().unwrap();
    assert!(name.contains(".mx\\0571\\0722,S="), "{name}");
}

#[test]
fn names_are_unique_across_10000_deliveries_in_one_process() {
    let s = scratch();
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let items: Vec<Item> = (0..1000)
            .map(|_| item("example.com/alice", None, MESSAGE))
            .collect();
        for result in s.store.deliver_many(&items) {
            assert!(seen.insert(result.unwrap().path));
        }
    }
    assert_eq!(seen.len(), 10_000);
    assert_eq!(names(&s.base.join("example.com/alice/new")).len(), 10_000);
}

#[test]
fn names_are_unique_across_threads_sharing_one_store() {
    let s = scratch();
    let store = Arc::new(s.store.clone());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..250)
                    .map(|_| {
                        store
                            .deliver("example.com/alice/", None, MESSAGE)
                            .unwrap()
                            .path
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let paths: HashSet<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(paths.len(), 2000);
    assert_eq!(names(&s.base.join("example.com/alice/new")).len(), 2000);
    assert!(names(&s.base.join("example.com/alice/tmp")).is_empty());
}

#[test]
fn junk_delivery_goes_to_the_dot_junk_folder_with_its_marker() {
    let s = scratch();
    let delivered = s
        .store
        .deliver("example.com/alice/", Some("Junk"), MESSAGE)
        .unwrap();
    let root = s.base.join("example.com/alice");
    let junk = root.join(".Junk");
    assert_eq!(
        delivered.path.parent().unwrap(),
        fs::canonicalize(junk.join("new")).unwrap()
    );
    assert_eq!(fs::read(&delivered.path).unwrap(), MESSAGE);
    assert!(junk.join("maildirfolder").is_file());
    for dir in [
        &junk,
        &junk.join("cur"),
        &junk.join("new"),
        &junk.join("tmp"),
        &root.join("new"),
    ] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert!(names(&root.join("new")).is_empty(), "nothing in the INBOX");
}

#[test]
fn inbox_folder_means_the_maildir_root_and_dotted_names_nest() {
    let s = scratch();
    let inbox = s
        .store
        .deliver("example.com/alice", Some("INBOX"), MESSAGE)
        .unwrap();
    assert!(
        inbox
            .path
            .parent()
            .unwrap()
            .ends_with("example.com/alice/new")
    );
    let archive = s
        .store
        .deliver("example.com/alice", Some("Archive.2024"), MESSAGE)
        .unwrap();
    assert!(
        archive
            .path
            .parent()
            .unwrap()
            .ends_with("alice/.Archive.2024/new")
    );
}

#[test]
fn a_missing_mail_base_is_a_temporary_error_naming_it() {
    let s = scratch();
    let store = MaildirStore::new(s.base.join("missing"), "mx");
    let err = store
        .deliver("example.com/alice", None, MESSAGE)
        .unwrap_err();
    assert!(err.temporary());
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!s.base.join("missing").exists());
}

#[test]
fn a_failure_at_any_durable_step_leaves_no_file_behind_and_is_temporary() {
    for step in [Step::Write, Step::SyncFile, Step::Rename, Step::SyncDir] {
        let s = scratch();
        let first = s.store.deliver("example.com/alice", None, MESSAGE).unwrap();
        fault::fail_at(Some(step));
        let result = s.store.deliver("example.com/alice", None, MESSAGE);
        fault::fail_at(None);
        let err = result.unwrap_err();
        assert!(matches!(err, DeliverError::Io { .. }), "{step:?}: {err}");
        assert!(err.temporary(), "{step:?}");
        let text = err.to_string();
        assert!(
            text.contains("example.com/alice") && !text.contains('\n'),
            "{step:?}: {text}"
        );
        let root = s.base.join("example.com/alice");
        assert!(names(&root.join("tmp")).is_empty(), "{step:?}");
        let first_name = first.path.file_name().unwrap().to_str().unwrap();
        assert_eq!(names(&root.join("new")), [first_name], "{step:?}");
    }
}

#[test]
fn the_store_works_again_after_a_failed_delivery() {
    let s = scratch();
    fault::fail_at(Some(Step::SyncFile));
    assert!(s.store.deliver("example.com/alice", None, MESSAGE).is_err());
    fault::fail_at(None);
    let delivered = s.store.deliver("example.com/alice", None, MESSAGE).unwrap();
    assert_eq!(fs::read(delivered.path).unwrap(), MESSAGE);
}
