//! The outbound queue of `mailctl serve` end to end, between two real instances on loopback: a receiver that
//! is down keeps the mail queued and retried until it comes up, `kill -9` of the sender with mail queued
//! loses nothing and sends nothing twice, and `mailctl queue list|show|hold|release|flush|stats|delete
//! --bounce` act on the queue of the running server. The retry schedule is shortened to seconds (first retry
//! 1 s, longest 2 s); the queue manager polls every 5 s. See `worlds/outbound_world.rs`.

use crate::worlds::outbound_world;

use std::collections::BTreeMap;
use std::time::Duration;

use kit::serve::mail::message;
use outbound_world::{ALICE, BOB, World, bounces, ids, queue_list, submit, wait_for, wait_tried};

/// The id of the submission's `250` is the queue entry's: `mailctl queue list` shows it, `queue show ID` finds
/// it, and the transaction's log line names it.
#[test]
fn the_id_in_the_250_reply_is_the_one_mailctl_queue_shows() {
    let mut w = World::new(9);
    w.a.start();
    let id = submit(&w.a, &[BOB], &message(ALICE, BOB, "one id", "oneid@a.test"));
    let entry = wait_tried(&w.a, 1);
    assert_eq!(entry["id"], id, "{entry}");
    let shown =
        w.a.server
            .run(&["queue", "show", &id, "--json"])
            .ok()
            .json();
    assert_eq!(shown["id"], id, "{shown}");
    let log = w.a.server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("transaction") && l.contains(&format!("id={id}"))),
        "no transaction line names {id}:\n{log}"
    );
}

#[test]
fn while_the_receiver_is_down_mail_stays_queued_is_retried_and_delivered_once_it_is_up() {
    let mut w = World::new(2);
    w.a.start();
    submit(&w.a, &[BOB], &message(ALICE, BOB, "later", "later@a.test"));
    let entry = wait_tried(&w.a, 1);
    assert_eq!(entry["sender"], ALICE);
    assert_eq!(entry["recipients"], serde_json::json!([BOB]));
    assert_eq!(entry["state"], "deferred", "{entry}");
    let error = entry["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(&format!("mx.b.test[{}]: ", w.ip(3))) && error.contains("refused"),
        "{entry}"
    );
    wait_tried(&w.a, 2);
    assert!(w.b.server.inbox(BOB).is_empty());

    w.b.start();
    wait_for(&w.a, "bob has the message on B", 15, || {
        !w.b.server.inbox(BOB).is_empty()
    });
    wait_for(&w.a, "A's queue is empty", 10, || {
        queue_list(&w.a).is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ids(&w.b, BOB), BTreeMap::from([("later@a.test".into(), 1)]));
    assert!(
        bounces(&w.a, ALICE).is_empty(),
        "no DSN for a delivered message"
    );
}

#[test]
fn kill_9_with_mail_queued_loses_nothing_and_delivers_everything_exactly_once() {
    let _heavy = kit::exclusive();
    let mut w = World::new(4);
    w.a.start();
    let mut expected = BTreeMap::new();
    for i in 0..6 {
        let id = format!("crash{i}@a.test");
        submit(&w.a, &[BOB], &message(ALICE, BOB, &id, &id));
        expected.insert(id, 1);
    }
    // One message for two domains: each recipient is settled on its own.
    let both = ["bob@b.test", "bob@e.test"];
    submit(&w.a, &both, &message(ALICE, BOB, "both", "both@a.test"));
    expected.insert("both@a.test".into(), 1);
    // Mid-queue: the last messages may still be in their first attempt.
    w.a.kill9();

    w.a.start();
    assert_eq!(
        queue_list(&w.a).len(),
        7,
        "every accepted message is still queued"
    );
    w.b.start();
    wait_for(
        &w.a,
        "everything is delivered and the queue is empty",
        20,
        || queue_list(&w.a).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ids(&w.b, BOB), expected);
    assert_eq!(
        ids(&w.b, "bob@e.test"),
        BTreeMap::from([("both@a.test".into(), 1)])
    );
    assert!(bounces(&w.a, ALICE).is_empty());
}

#[test]
fn queue_commands_list_show_hold_release_flush_stats_and_delete_with_bounce_on_a_running_server() {
    let mut w = World::new(7);
    w.a.start();
    let run = |args: &[&str]| w.a.server.run(args).ok();
    submit(
        &w.a,
        &[BOB],
        &message(ALICE, BOB, "held back", "held@a.test"),
    );
    let entry = wait_tried(&w.a, 1);
    let id = entry["id"].as_str().expect("id").to_string();
    assert_eq!(entry["held"], false);
    assert!(entry["size"].as_u64().unwrap_or(0) > 0, "{entry}");

    let table = run(&["queue", "list"]).stdout;
    for expected in [id.as_str(), ALICE, BOB, "deferred"] {
        assert!(
            table.contains(expected),
            "{expected:?} missing in:\n{table}"
        );
    }
    let show = run(&["queue", "show", &id]).stdout;
    for expected in [
        id.as_str(),
        ALICE,
        BOB,
        "Subject: held back",
        "Message-ID: <held@a.test>",
    ] {
        assert!(show.contains(expected), "{expected:?} missing in:\n{show}");
    }
    let show = run(&["queue", "show", &id, "--json"]).json();
    assert_eq!(show["recipients"][0]["address"], BOB, "{show}");
    assert_eq!(show["recipients"][0]["status"], "pending", "{show}");
    assert!(
        show["dkim"].as_str().is_some_and(|d| d.contains("a.test")),
        "the queued copy is signed: {show}"
    );

    run(&["queue", "hold", &id]);
    let entry = &queue_list(&w.a)[0];
    assert_eq!(
        (entry["held"].clone(), entry["state"].clone()),
        (true.into(), "held".into())
    );
    assert_eq!(run(&["queue", "stats", "--json"]).json()["held"], 1);
    // A held message is not delivered, even when flushed and its destination is back.
    w.b.start();
    run(&["queue", "flush", &id]);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        w.b.server.inbox(BOB).is_empty(),
        "a held message was delivered"
    );
    assert_eq!(queue_list(&w.a).len(), 1);

    run(&["queue", "release", &id]);
    run(&["queue", "flush"]);
    wait_for(&w.a, "the released message is delivered", 15, || {
        !w.b.server.inbox(BOB).is_empty()
    });
    wait_for(&w.a, "A's queue is empty", 10, || {
        queue_list(&w.a).is_empty()
    });
    assert_eq!(ids(&w.b, BOB), BTreeMap::from([("held@a.test".into(), 1)]));

    // dead.test's only MX has nothing listening: the message is deferred until deleted with a bounce.
    let dead = "bob@dead.test";
    submit(
        &w.a,
        &[dead],
        &message(ALICE, dead, "doomed", "doomed@a.test"),
    );
    let entry = wait_tried(&w.a, 1);
    let doomed = entry["id"].as_str().expect("id").to_string();
    let stats = run(&["queue", "stats", "--json"]).json();
    assert_eq!(
        (stats["entries"].clone(), stats["deferred"].clone()),
        (1.into(), 1.into()),
        "{stats}"
    );
    let deleted = run(&["queue", "delete", &doomed, "--bounce", "--json"]).json();
    assert_eq!(deleted["deleted"], true, "{deleted}");
    assert_eq!(deleted["bounce"]["to"], ALICE, "{deleted}");
    wait_for(&w.a, "alice has the bounce", 15, || {
        !bounces(&w.a, ALICE).is_empty()
    });
    let dsn = &bounces(&w.a, ALICE)[0];
    for expected in [
        "Final-Recipient: rfc822; bob@dead.test",
        "Action: failed",
        "Message-ID: <doomed@a.test>",
    ] {
        assert!(dsn.contains(expected), "{expected:?} missing in:\n{dsn}");
    }
    wait_for(&w.a, "A's queue is empty", 10, || {
        queue_list(&w.a).is_empty()
    });
    w.a.server
        .run(&["queue", "show", &doomed])
        .fails(1, &doomed);
    assert_eq!(bounces(&w.a, ALICE).len(), 1);
}
