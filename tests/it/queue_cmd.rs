//! `mailctl queue` through the real binary, against a spool that the test fills with the library's `SpoolQueue`
//! (the same code `serve` uses), configured as `[server.queue] spool_dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use kit::TestDb;
use mailctl::smtp::queue::{
    Admin, Backoff, Delivery, Envelope, Intake, Outcome, QueueId, RecipientResult, SpoolOptions,
    SpoolQueue, Status,
};

const MESSAGE: &str = "From: Alice <alice@example.org>\r\nTo: x@remote.test\r\nSubject: quarterly numbers\r\n\
                       Message-ID: <q1@example.org>\r\n\r\nThe body text stays private.\r\n";

/// A test database whose config points `[server.queue] spool_dir` at a fresh directory.
fn setup() -> (TestDb, PathBuf) {
    let db = TestDb::sqlite();
    let spool = db.path("spool");
    std::fs::write(
        db.path("mailctl.toml"),
        format!(
            "[server]\nhostname = \"mx.example.org\"\n\n[server.queue]\nspool_dir = \"{}\"\n",
            spool.display()
        ),
    )
    .unwrap();
    (db, spool)
}

fn open(spool: &Path) -> SpoolQueue {
    SpoolQueue::open(
        spool,
        SpoolOptions {
            backoff: Backoff::default(),
        },
    )
    .unwrap()
}

fn enqueue(spool: &SpoolQueue, sender: &str, rcpts: &[&str]) -> QueueId {
    let envelope = Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        dkim: Some("d=example.org s=mail a=ed25519-sha256".into()),
    };
    spool
        .enqueue(&envelope, MESSAGE.as_bytes(), Utc::now())
        .unwrap()
}

/// Runs one delivery round on the spool, as `serve` would, with `outcome` for each address.
fn deliver(spool: &SpoolQueue, results: &[(&str, Outcome)]) {
    let now = Utc::now();
    for claimed in spool.claim_due(now, Duration::from_secs(60), 10).unwrap() {
        let mine: Vec<RecipientResult> = results
            .iter()
            .filter(|(a, _)| claimed.entry.recipients.iter().any(|r| r.address == *a))
            .map(|(a, o)| RecipientResult {
                address: a.to_string(),
                outcome: o.clone(),
            })
            .collect();
        spool.record(&claimed, &mine, now).unwrap();
        spool.complete(&claimed).unwrap();
    }
}

fn deferred(text: &str) -> Outcome {
    Outcome::Deferred(text.into())
}

#[test]
fn list_show_and_stats_as_tables_and_json() {
    let (db, dir) = setup();
    let spool = open(&dir);
    let first = enqueue(
        &spool,
        "alice@example.org",
        &["x@remote.test", "y@remote.test", "z@remote.test"],
    );
    let long_error = format!(
        "mx1.remote.test[127.0.0.2]: 451 4.7.1 greylisted, come back later {}",
        "x".repeat(80)
    );
    deliver(&spool, &[("x@remote.test", deferred(&long_error))]);
    let bounce = enqueue(&spool, "", &["bob@remote.test"]);

    let json = db.run(&["--json", "queue", "list"]).ok().json();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let a = &rows[0];
    assert_eq!(a["id"], first.as_str());
    assert_eq!(a["sender"], "alice@example.org");
    assert_eq!(a["recipients"].as_array().unwrap().len(), 3);
    assert_eq!(a["attempts"], 1);
    assert_eq!(a["state"], "deferred");
    assert_eq!(
        a["last_error"],
        long_error.as_str(),
        "JSON has the full error"
    );
    assert_eq!(a["size"], MESSAGE.len());
    assert!(a["next_attempt"].as_str().unwrap().ends_with('Z'));
    let b = &rows[1];
    assert_eq!(b["sender"], "");
    assert_eq!(b["state"], "new");
    assert!(b["last_error"].is_null());

    let table = db.run(&["queue", "list"]).ok().stdout;
    for needle in [
        "ID",
        "NEXT ATTEMPT",
        first.as_str(),
        bounce.as_str(),
        "<>",
        "x@remote.test, y@remote.test (+1 more)",
        "deferred",
        "new",
        "451 4.7.1 greylis...",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from:\n{table}");
    }
    assert!(!table.contains(&long_error), "the table truncates errors");

    let show = db.run(&["queue", "show", first.as_str()]).ok().stdout;
    for needle in [
        "alice@example.org",
        "signed: d=example.org s=mail",
        "Subject: quarterly numbers",
        "z@remote.test",
        "pending",
        long_error.as_str(),
    ] {
        assert!(show.contains(needle), "{needle:?} missing from:\n{show}");
    }
    assert!(!show.contains("stays private"), "show prints headers only");
    let whole = db
        .run(&["queue", "show", first.as_str(), "--body"])
        .ok()
        .stdout;
    assert!(whole.contains("The body text stays private."));

    let shown = db
        .run(&["--json", "queue", "show", first.as_str()])
        .ok()
        .json();
    assert_eq!(shown["dkim"], "d=example.org s=mail a=ed25519-sha256");
    assert_eq!(shown["recipients"][0]["address"], "x@remote.test");
    assert_eq!(shown["recipients"][0]["status"], "pending");
    assert_eq!(shown["recipients"][0]["attempts"], 1);
    assert!(shown["lease"].is_null());
    assert!(
        shown["headers"]
            .as_str()
            .unwrap()
            .contains("Subject: quarterly numbers")
    );
    assert!(shown.get("message").is_none());

    let stats = db.run(&["--json", "queue", "stats"]).ok().json();
    assert_eq!(stats["entries"], 2);
    assert_eq!(stats["deferred"], 1);
    assert_eq!(stats["new"], 1);
    assert_eq!(stats["recipients_pending"], 4);
    assert_eq!(stats["bytes"], 2 * MESSAGE.len());
    let table = db.run(&["queue", "stats"]).ok().stdout;
    assert!(table.contains("recipients pending") && table.contains('4'));
}

#[test]
fn flush_makes_deferred_messages_due_now() {
    let (db, dir) = setup();
    let spool = open(&dir);
    let one = enqueue(&spool, "alice@example.org", &["x@remote.test"]);
    let two = enqueue(&spool, "alice@example.org", &["y@remote.test"]);
    deliver(
        &spool,
        &[
            ("x@remote.test", deferred("421 try later")),
            ("y@remote.test", deferred("421 try later")),
        ],
    );
    let later = |id: &QueueId| {
        spool
            .show(id, Utc::now())
            .unwrap()
            .entry
            .next_attempt()
            .unwrap()
    };
    assert!(later(&one) > Utc::now());

    let out = db.run(&["queue", "flush", one.as_str()]).ok();
    assert!(out.stdout.contains("due now"), "{}", out.stdout);
    assert!(later(&one) <= Utc::now());
    assert!(later(&two) > Utc::now(), "only the named entry");

    let flushed = db.run(&["--json", "queue", "flush"]).ok().json();
    assert_eq!(flushed["flushed"], 1);
    assert!(later(&two) <= Utc::now());
    assert_eq!(
        db.run(&["--json", "queue", "flush"]).ok().json()["flushed"],
        0
    );
}

#[test]
fn hold_and_release() {
    let (db, dir) = setup();
    let spool = open(&dir);
    let id = enqueue(&spool, "alice@example.org", &["x@remote.test"]);
    db.run(&["queue", "hold", id.as_str()]).ok();
    assert!(spool.show(&id, Utc::now()).unwrap().entry.hold);
    let rows = db.run(&["--json", "queue", "list"]).ok().json();
    assert_eq!(rows[0]["state"], "held");
    assert!(
        spool
            .claim_due(Utc::now(), Duration::from_secs(60), 10)
            .unwrap()
            .is_empty(),
        "a held entry is not delivered"
    );
    let released = db
        .run(&["--json", "queue", "release", id.as_str()])
        .ok()
        .json();
    assert_eq!(released["held"], false);
    assert!(!spool.show(&id, Utc::now()).unwrap().entry.hold);
    let again = db.run(&["queue", "release", id.as_str()]).ok();
    assert!(again.stdout.contains("was not held"), "{}", again.stdout);
}

#[test]
fn delete_removes_the_entry_and_refuses_a_busy_one() {
    let (db, dir) = setup();
    let spool = open(&dir);
    let gone = enqueue(&spool, "alice@example.org", &["x@remote.test"]);
    let busy = enqueue(&spool, "alice@example.org", &["y@remote.test"]);
    db.run(&["queue", "delete", gone.as_str()]).ok();
    assert!(spool.show(&gone, Utc::now()).is_err());
    assert!(
        spool.list(Utc::now()).unwrap().len() == 1,
        "no bounce without --bounce"
    );

    // A delivery in progress (this test process holds the lease, as a running serve would).
    let claims = spool
        .claim_due(Utc::now(), Duration::from_secs(60), 10)
        .unwrap();
    assert_eq!(claims.len(), 1);
    db.run(&["queue", "delete", busy.as_str()])
        .fails(1, "being delivered by process");
    let rows = db.run(&["--json", "queue", "list"]).ok().json();
    assert_eq!(rows[0]["state"], "active");
    spool.release(&claims[0]).unwrap();
    db.run(&["queue", "delete", busy.as_str()]).ok();
    let empty = db.run(&["--json", "queue", "list"]).ok();
    assert_eq!(empty.json(), serde_json::json!([]));
    assert!(empty.stderr.contains("queue is empty"));
}

#[test]
fn delete_bounce_tells_the_sender_about_undelivered_recipients() {
    let (db, dir) = setup();
    let spool = open(&dir);
    let id = enqueue(
        &spool,
        "alice@example.org",
        &["x@remote.test", "y@remote.test"],
    );
    deliver(
        &spool,
        &[
            ("x@remote.test", Outcome::Delivered("250 ok".into())),
            ("y@remote.test", deferred("451 4.4.1 no answer")),
        ],
    );
    let out = db
        .run(&["--json", "queue", "delete", id.as_str(), "--bounce"])
        .ok()
        .json();
    assert_eq!(out["deleted"], true);
    assert_eq!(out["bounce"]["to"], "alice@example.org");
    assert_eq!(
        out["bounce"]["recipients"],
        serde_json::json!(["y@remote.test"])
    );

    let left = spool.list(Utc::now()).unwrap();
    assert_eq!(left.len(), 1, "the original is gone, the bounce is queued");
    let dsn = &left[0].entry;
    assert_eq!(dsn.id.as_str(), out["bounce"]["id"].as_str().unwrap());
    assert_eq!(dsn.sender, "", "bounces go out with the null sender");
    assert_eq!(dsn.recipients.len(), 1);
    assert_eq!(dsn.recipients[0].address, "alice@example.org");
    assert_eq!(dsn.recipients[0].status, Status::Pending);
    let body = String::from_utf8(spool.body(&dsn.id).unwrap()).unwrap();
    assert!(body.contains("multipart/report"), "{body}");
    assert!(
        body.contains("Final-Recipient: rfc822; y@remote.test"),
        "{body}"
    );
    assert!(
        !body.contains("Final-Recipient: rfc822; x@remote.test"),
        "{body}"
    );
    assert!(
        body.contains("X-mailctl; deleted by the administrator"),
        "{body}"
    );
    assert!(body.contains("MAILER-DAEMON@mx.example.org"), "{body}");
    assert!(
        !body.contains("stays private"),
        "a DSN returns headers only"
    );

    // Deleting the bounce itself with --bounce sends nothing back to <>.
    let again = db
        .run(&["queue", "delete", dsn.id.as_str(), "--bounce"])
        .ok();
    assert!(again.stderr.contains("no bounce sent"), "{}", again.stderr);
    assert!(spool.list(Utc::now()).unwrap().is_empty());
}

#[test]
fn bad_and_unknown_ids() {
    let (db, dir) = setup();
    let spool = open(&dir);
    enqueue(&spool, "alice@example.org", &["x@remote.test"]);
    for args in [
        vec!["queue", "show", "../../etc/passwd"],
        vec!["queue", "delete", "XYZ"],
        vec!["queue", "flush", "123"],
        vec!["queue", "hold", "0123456789ABCDEF01234567"],
    ] {
        db.run(&args).fails(2, "invalid queue id");
    }
    let unknown = "0123456789abcdef01234567";
    for cmd in ["show", "delete", "hold", "release", "flush"] {
        db.run(&["queue", cmd, unknown])
            .fails(1, &format!("queue entry {unknown} does not exist"));
    }
    assert_eq!(spool.list(Utc::now()).unwrap().len(), 1);
}

#[test]
fn a_missing_spool_is_an_empty_queue_and_is_not_created() {
    let (db, dir) = setup();
    let list = db.run(&["--json", "queue", "list"]).ok();
    assert_eq!(list.json(), serde_json::json!([]));
    assert!(
        list.stderr
            .contains(&format!("no queue at {}", dir.display())),
        "{}",
        list.stderr
    );
    let table = db.run(&["queue", "list"]).ok();
    assert!(table.stdout.contains("ID"));
    let stats = db.run(&["--json", "queue", "stats"]).ok().json();
    assert_eq!(stats["entries"], 0);
    db.run(&["queue", "show", "0123456789abcdef01234567"])
        .fails(1, "no queue at");
    assert!(!dir.exists(), "read-only commands create no spool");

    std::fs::write(&dir, "not a directory").unwrap();
    db.run(&["queue", "list"]).fails(1, "is not a directory");
}

/// The same commands against `backend = "database"` on MariaDB, with the entries put there by another
/// "node" (a `DatabaseQueue` with its own runtime, as a `serve` elsewhere would be).
#[test]
fn database_backend_on_mariadb() {
    use mailctl::smtp::queue::{DatabaseOptions, DatabaseQueue};
    let db = TestDb::mariadb();
    std::fs::write(
        db.path("mailctl.toml"),
        "[server]\nhostname = \"mx.example.org\"\n\n[server.queue]\nbackend = \"database\"\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (store, _) = runtime
        .block_on(mailctl::store::Store::open(&db.url))
        .unwrap();
    let node =
        DatabaseQueue::open(store, runtime.handle().clone(), DatabaseOptions::default()).unwrap();
    let envelope = |rcpt: &str| Envelope {
        sender: "alice@example.org".into(),
        recipients: vec![rcpt.into()],
        dkim: None,
    };
    let first = node
        .enqueue(&envelope("x@remote.test"), MESSAGE.as_bytes(), Utc::now())
        .unwrap();
    let second = node
        .enqueue(&envelope("y@remote.test"), MESSAGE.as_bytes(), Utc::now())
        .unwrap();

    let rows = db.run(&["--json", "queue", "list"]).ok().json();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["id"], first.as_str());
    let show = db.run(&["queue", "show", first.as_str()]).ok().stdout;
    assert!(show.contains("Subject: quarterly numbers"), "{show}");
    db.run(&["queue", "hold", second.as_str()]).ok();
    assert!(node.show(&second, Utc::now()).unwrap().entry.hold);
    db.run(&["queue", "release", second.as_str()]).ok();
    assert_eq!(
        db.run(&["--json", "queue", "stats"]).ok().json()["entries"],
        2
    );

    // `second` is being delivered by the other node: delete is refused until its lease is gone.
    let claims = node
        .claim_due(Utc::now(), Duration::from_secs(600), 10)
        .unwrap();
    assert_eq!(claims.len(), 2);
    db.run(&["queue", "delete", second.as_str()])
        .fails(1, "being delivered");
    for c in &claims {
        node.release(c).unwrap();
    }
    let out = db
        .run(&["--json", "queue", "delete", first.as_str(), "--bounce"])
        .ok()
        .json();
    let bounce = QueueId::parse(out["bounce"]["id"].as_str().unwrap()).unwrap();
    let dsn = node.show(&bounce, Utc::now()).unwrap().entry;
    assert_eq!(dsn.sender, "");
    assert_eq!(dsn.recipients[0].address, "alice@example.org");
    let body = String::from_utf8(node.body(&bounce).unwrap()).unwrap();
    assert!(
        body.contains("Final-Recipient: rfc822; x@remote.test"),
        "{body}"
    );
    db.run(&["queue", "show", first.as_str()])
        .fails(1, "does not exist");
}
