use std::fs;
use std::os::unix::fs::symlink;

use super::super::DeliverError;
use super::{names, scratch, tree};

const MESSAGE: &[u8] = b"Subject: x\r\n\r\nbody\r\n";

#[test]
fn maildir_values_that_climb_out_or_are_absolute_are_refused_and_create_nothing() {
    let s = scratch();
    let absolute = format!("{}/evil", s.outside.display());
    for rel in [
        "../outside/evil",
        "example.com/../../outside",
        "/tmp/evil",
        absolute.as_str(),
        "",
        "a\0b",
        "a/./b",
    ] {
        let err = s.store.deliver(rel, None, MESSAGE).unwrap_err();
        assert!(
            matches!(err, DeliverError::BadPath { .. }),
            "{rel:?}: {err}"
        );
        assert!(!err.temporary(), "{rel:?}");
    }
    assert!(tree(&s.base).is_empty());
    assert!(tree(&s.outside).is_empty());
}

#[test]
fn hostile_folder_names_are_refused_before_anything_is_created() {
    let s = scratch();
    for folder in ["../../outside", ".Junk", "a/b", "Junk\r\nX-Evil: 1", ""] {
        let err = s
            .store
            .deliver("example.com/alice", Some(folder), MESSAGE)
            .unwrap_err();
        assert!(
            matches!(err, DeliverError::BadFolder { .. }),
            "{folder:?}: {err}"
        );
        assert!(!err.temporary());
        assert!(!err.to_string().contains('\n'));
    }
    assert!(tree(&s.base).is_empty());
}

#[test]
fn a_symlinked_domain_directory_pointing_outside_the_base_is_refused() {
    let s = scratch();
    symlink(&s.outside, s.base.join("example.com")).unwrap();
    let err = s
        .store
        .deliver("example.com/alice/", None, MESSAGE)
        .unwrap_err();
    assert!(matches!(err, DeliverError::Escapes { .. }), "{err}");
    assert!(!err.temporary());
    assert!(err.to_string().contains("example.com"), "{err}");
    assert!(
        tree(&s.outside).is_empty(),
        "nothing may be created through the link"
    );
}

#[test]
fn symlinked_new_or_folder_directories_pointing_outside_are_refused() {
    let s = scratch();
    let root = s.base.join("example.com/alice");
    fs::create_dir_all(&root).unwrap();
    symlink(&s.outside, root.join("new")).unwrap();
    let err = s
        .store
        .deliver("example.com/alice", None, MESSAGE)
        .unwrap_err();
    assert!(matches!(err, DeliverError::Escapes { .. }), "{err}");
    fs::remove_file(root.join("new")).unwrap();

    symlink(&s.outside, root.join(".Junk")).unwrap();
    let err = s
        .store
        .deliver("example.com/alice", Some("Junk"), MESSAGE)
        .unwrap_err();
    assert!(matches!(err, DeliverError::Escapes { .. }), "{err}");
    assert!(tree(&s.outside).is_empty());
    assert!(names(&root.join("tmp")).is_empty());
}

#[test]
fn a_symlink_to_the_base_itself_is_refused() {
    let s = scratch();
    symlink(&s.base, s.base.join("example.com")).unwrap();
    let err = s.store.deliver("example.com", None, MESSAGE).unwrap_err();
    assert!(matches!(err, DeliverError::Escapes { .. }), "{err}");
}

#[test]
fn a_symlink_that_stays_inside_the_base_is_followed() {
    let s = scratch();
    fs::create_dir(s.base.join("example.com")).unwrap();
    symlink("example.com", s.base.join("example.net")).unwrap();
    let delivered = s.store.deliver("example.net/alice", None, MESSAGE).unwrap();
    let real_new = fs::canonicalize(s.base.join("example.com/alice/new")).unwrap();
    assert_eq!(delivered.path.parent().unwrap(), real_new);
}

#[test]
fn a_dangling_symlink_is_a_temporary_error_and_nothing_is_created_at_its_target() {
    let s = scratch();
    symlink(s.outside.join("gone"), s.base.join("example.com")).unwrap();
    let err = s
        .store
        .deliver("example.com/alice", None, MESSAGE)
        .unwrap_err();
    assert!(err.temporary(), "{err}");
    assert!(!s.outside.join("gone").exists());
}

#[test]
fn a_file_where_a_directory_belongs_is_a_temporary_error_naming_it() {
    let s = scratch();
    fs::write(s.base.join("example.com"), b"oops").unwrap();
    let err = s
        .store
        .deliver("example.com/alice", None, MESSAGE)
        .unwrap_err();
    assert!(matches!(err, DeliverError::NotADirectory { .. }), "{err}");
    assert!(err.temporary());
    assert!(
        err.to_string().contains("example.com is not a directory"),
        "{err}"
    );
}

#[test]
fn a_planted_symlink_as_folder_marker_is_left_alone_and_not_followed() {
    let s = scratch();
    let junk = s.base.join("example.com/alice/.Junk");
    fs::create_dir_all(&junk).unwrap();
    symlink(s.outside.join("marker"), junk.join("maildirfolder")).unwrap();
    s.store
        .deliver("example.com/alice", Some("Junk"), MESSAGE)
        .unwrap();
    assert!(!s.outside.join("marker").exists());
    assert!(
        fs::symlink_metadata(junk.join("maildirfolder"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
