//! `server.user`: started as root, `serve` binds its ports (a privileged one among them) and reads a TLS key only
//! root can read, then runs as that user for good (every thread, every id, no supplementary group) and still
//! authenticates, delivers into Maildirs and queues, as that user. A user that does not exist, or a start as a
//! user that cannot switch, is a one-line configuration error before any port is bound.
//!
//! The tests that start as root fail when not run as root (CI runs as root): a test that cannot run never
//! passes.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kit::TestDb;
use kit::run_with_timeout;
use kit::serve::mail::{PASSWORD, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

/// Fails the test unless it runs as root: these tests are about dropping root, and one that cannot run must
/// not pass (CI runs as root).
#[track_caller]
fn require_root() {
    assert!(
        kit::os::is_root(),
        "this test needs root (it starts `serve` as root to see it drop root); run the tests as root"
    );
}

/// uid and gid of `name` from /etc/passwd.
fn ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("no user {name} in /etc/passwd"));
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            chown_tree(&entry.expect("entry").path(), uid, gid);
        }
    }
}

/// A port below 1024 free on 127.0.0.1, tried in a random order from 600..1000.
fn free_privileged_port() -> Option<u16> {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    (0..400u64)
        .map(|i| 600 + ((seed + i * 7) % 400) as u16)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// The `Uid:`, `Gid:` and `Groups:` values of a `/proc/.../status` file.
fn credentials(status_file: &Path) -> (String, String, String) {
    let status = std::fs::read_to_string(status_file).expect("status");
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn serve_binds_as_root_then_runs_as_server_user_and_still_delivers() {
    require_root();
    let (uid, gid) = ids("nobody");
    let db = TestDb::sqlite();
    example(&db);
    let port = free_privileged_port().expect("no free port in 600..1000 on 127.0.0.1");
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = toml::Value::String(spool.path().to_string_lossy().into_owned());
    let options = ServeOptions {
        listen: vec![("smtp".into(), format!("127.0.0.1:{port}"))],
        ..ServeOptions::default()
    }
    .server_key("user", "\"nobody\"")
    .server_key("queue.spool_dir", spool_dir);
    let mut server = TestServer::configure(&db, options);

    // What the dropped daemon writes belongs to nobody: the Maildir root, the spool, the database and its
    // directory (SQLite adds -wal/-shm files beside it). Its own directory only needs to be passable.
    chown_tree(&server.vmail_root, uid, gid);
    chown_tree(spool.path(), uid, gid);
    chown_tree(db.dir.path(), uid, gid);
    let server_dir = server.config.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&server_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    // A key that only root can read is refused before anything is bound: SIGHUP re-reads it as nobody, so
    // a renewed certificate could never be loaded.
    let key = server.path("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let refused = server
        .run(&["serve"])
        .fails(2, "server.tls.key")
        .fails(2, "SIGHUP could not reload a renewed certificate");
    assert!(refused.stderr.contains("key.pem"), "{}", refused.stderr);
    assert_eq!(refused.stdout, "", "nothing was bound or reported");
    // Root's key, readable by nobody's group (as the refusal says to do): read before the drop, re-readable.
    std::os::unix::fs::chown(&key, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    server.launch();
    assert_eq!(server.smtp().port(), port, "the privileged port is bound");

    let pid = server.pid().unwrap();
    let nobody = (
        format!("{uid} {uid} {uid} {uid}"),
        format!("{gid} {gid} {gid} {gid}"),
        String::new(),
    );
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| t.unwrap().path().join("status"))
        .collect();
    assert!(tasks.len() >= 3, "the runtime's threads exist: {tasks:?}");
    assert_eq!(
        credentials(Path::new(&format!("/proc/{pid}/status"))),
        nobody
    );
    for task in &tasks {
        assert_eq!(credentials(task), nobody, "{}", task.display());
    }

    // The privileged port takes mail; the Maildir is written as nobody.
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.elsewhere.test");
    let letter = message(
        "x@elsewhere.test",
        "bob@example.test",
        "inbound",
        "p1@elsewhere.test",
    );
    c.send_mail("x@elsewhere.test", &["bob@example.test"], &letter)
        .expect(250, "");
    c.command("QUIT");
    // Submission: STARTTLS with root's key, AUTH against the database, a local and a queued recipient.
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain("alice@example.test", PASSWORD).expect(235, "");
    let letter = message(
        "alice@example.test",
        "bob@example.test",
        "submitted",
        "p2@example.test",
    );
    c.send_mail(
        "alice@example.test",
        &["bob@example.test", "friend@elsewhere.test"],
        &letter,
    )
    .expect(250, "");
    c.command("QUIT");

    let inbox = server.maildir("bob@example.test");
    assert_eq!(server.inbox("bob@example.test").len(), 2);
    for entry in std::fs::read_dir(&inbox).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    }
    let queued: Vec<_> = std::fs::read_dir(spool.path().join("msg"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .collect();
    assert!(!queued.is_empty(), "the remote copy is queued");
    assert!(queued.iter().all(|m| m.uid() == uid));

    let log = server.log();
    assert!(log.contains("root dropped"), "{log}");
    assert!(!log.contains("serve runs as root"), "{log}");
    let status = server.terminate();
    assert!(status.success(), "{status}\n{}", server.log());
}

#[test]
fn an_unknown_user_or_group_is_a_one_line_error_before_anything_is_bound() {
    let db = TestDb::sqlite();
    // A port already taken: reaching the binding would be a different error (exit 1, "cannot listen").
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("smtp={}", taken.local_addr().unwrap());
    for (keys, needle) in [
        (
            &[("user", "\"no-such-user-mailctl\"")][..],
            "server.user: no such user 'no-such-user-mailctl'",
        ),
        (
            &[
                ("user", "\"nobody\""),
                ("group", "\"no-such-group-mailctl\""),
            ][..],
            "server.group: no such group 'no-such-group-mailctl'",
        ),
        (
            &[("group", "\"nogroup\"")][..],
            "server.group is set but server.user is not",
        ),
        (&[("user", "\"root\"")][..], "server.user: 'root' is root"),
    ] {
        let mut options = ServeOptions::default();
        for (k, v) in keys {
            options = options.server_key(k, v);
        }
        let server = TestServer::configure(&db, options);
        let run = server.run(&["serve", "--listen", &listen]).fails(2, needle);
        assert_eq!(run.stdout, "", "nothing was bound or reported");
        server.run(&["serve", "--check-config"]).fails(2, needle);
    }
}

#[test]
fn a_start_as_another_unprivileged_user_cannot_switch_and_says_so() {
    require_root();
    let (uid, gid) = ids("nobody");
    let db = TestDb::sqlite();
    let server = TestServer::configure(
        &db,
        ServeOptions {
            tls: false,
            ..ServeOptions::default()
        }
        .server_key("user", "\"daemon\""),
    );
    // nobody must be able to read the config to get as far as the user check.
    std::fs::set_permissions(&server.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = server.config.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailctl"));
    cmd.args(["--config", server.config.to_str().unwrap()])
        .args(["serve", "--listen", "smtp=127.0.0.1:0"])
        .env_clear()
        .env("NO_COLOR", "1")
        .uid(uid)
        .gid(gid);
    let run = run_with_timeout(cmd, Duration::from_secs(60));
    let (duid, dgid) = ids("daemon");
    run.fails(
        2,
        &format!(
            "server.user: serve runs as uid {uid} gid {gid}, which cannot switch to daemon:daemon \
             ({duid}:{dgid})"
        ),
    );
}

#[test]
fn the_systemd_unit_runs_as_server_user_and_refuses_a_different_user_flag() {
    let db = TestDb::sqlite();
    std::fs::write(
        db.path("mailctl.toml"),
        "[server]\nuser = \"mailsvc\"\ngroup = \"mailgrp\"\n",
    )
    .unwrap();
    let unit = db.run(&["config", "systemd"]).ok().stdout;
    let value = |key: &str| {
        let prefix = format!("{key}=");
        let found: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        assert_eq!(found.len(), 1, "{key}= in:\n{unit}");
        found[0].to_string()
    };
    assert_eq!(value("User"), "mailsvc");
    assert_eq!(value("Group"), "mailgrp");
    assert!(unit.contains("install -d -o mailsvc -g mailgrp"), "{unit}");
    db.run(&["config", "systemd", "--user", "mailsvc"]).ok();
    db.run(&["config", "systemd", "--user", "other"])
        .fails(2, "--user other differs from server.user = \"mailsvc\"");
}
