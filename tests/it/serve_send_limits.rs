//! Sending limits of logged-in users (`mailctl limits`) enforced by `serve` on submission: messages per hour
//! at MAIL, recipients and new recipients per day at RCPT, each `450 4.7.1`, counted in the database across
//! connections; and the breaker: at ten times the hourly limit attempted in one hour SMTP is turned off for the
//! mailbox, its queued mail held and the postmaster told once.

use std::net::Ipv4Addr;

use crate::worlds::outbound_world::{World, submit, wait_for};
use kit::TestDb;
use kit::daemon::free_port;
use kit::dns::TestDns;
use kit::serve::mail::{PASSWORD, cli, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const CAROL: &str = "carol@example.test";
const DAVE: &str = "dave@example.test";

/// A client on the submission listener, logged in as `user`.
fn login(server: &TestServer, user: &str) -> SmtpClient {
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain(user, PASSWORD).expect(235, "2.7.0");
    c
}

fn usage(db: &TestDb, address: &str) -> serde_json::Value {
    db.run(&["--json", "limits", "usage", address]).ok().json()
}

/// `limits usage` once `done` holds (serve writes its counts within a second), for up to 5 s.
fn usage_when(
    db: &TestDb,
    address: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let u = usage(db, address);
        if done(&u) || std::time::Instant::now() > deadline {
            return u;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn each_limit_refuses_with_450_and_counts_across_connections(db: &TestDb) {
    example(db);
    cli(db, "limits set default --messages-per-hour 3");
    cli(db, "limits set example.test --recipients-per-day 4");
    cli(
        db,
        "limits set carol@example.test --new-recipients-per-day 2 --recipients-per-day 10",
    );
    let shown = db.run(&["--json", "limits", "show"]).ok().json();
    assert_eq!(shown.as_array().unwrap().len(), 3, "{shown}");
    let server = TestServer::start(db, ServeOptions::default());

    // alice: 3 messages per hour (default), 4 recipients per day (her domain).
    let msg = message(ALICE, BOB, "limits", "l1@example.test");
    login(&server, ALICE)
        .send_mail(ALICE, &[BOB], &msg)
        .expect(250, "2.0.0");
    login(&server, ALICE)
        .send_mail(ALICE, &[BOB, CAROL], &msg)
        .expect(250, "2.0.0");
    let mut c = login(&server, ALICE);
    c.command(&format!("MAIL FROM:<{ALICE}>")).expect(250, "");
    c.command(&format!("RCPT TO:<{DAVE}>")).expect(250, "");
    c.command(&format!("RCPT TO:<{BOB}>")).expect(
        450,
        "4.7.1 Sending limit reached: 4 recipients per day; try again later",
    );
    c.command("DATA").expect(354, "");
    c.send(&kit::smtp_client::data_bytes(&msg));
    c.read_reply().expect(250, "2.0.0");
    c.command(&format!("MAIL FROM:<{ALICE}>")).expect(
        450,
        "4.7.1 Sending limit reached: 3 messages per hour; try again later",
    );
    let u = usage_when(db, ALICE, |u| u["refused_this_hour"] == 1);
    assert_eq!(u["messages_this_hour"]["used"], 3, "{u}");
    assert_eq!(u["messages_this_hour"]["limit"]["from"], "default", "{u}");
    assert_eq!(u["refused_this_hour"], 1, "{u}");
    assert_eq!(u["recipients_today"]["used"], 4, "{u}");
    assert_eq!(
        u["recipients_today"]["limit"]["from"], "example.test",
        "{u}"
    );
    assert_eq!(u["smtp_active"], true, "{u}");

    // carol: 2 new recipients per day; writing again to someone she wrote to costs nothing new.
    login(&server, CAROL)
        .send_mail(CAROL, &[ALICE], &msg)
        .expect(250, "2.0.0");
    login(&server, CAROL)
        .send_mail(CAROL, &[ALICE, BOB], &msg)
        .expect(250, "2.0.0");
    let mut c = login(&server, CAROL);
    c.command(&format!("MAIL FROM:<{CAROL}>")).expect(250, "");
    c.command(&format!("RCPT TO:<{ALICE}>")).expect(250, "");
    c.command(&format!("RCPT TO:<{DAVE}>")).expect(
        450,
        "4.7.1 Sending limit reached: 2 new recipients per day; try again later",
    );
    let u = usage_when(db, CAROL, |u| u["new_recipients_today"]["used"] == 2);
    assert_eq!(u["new_recipients_today"]["used"], 2, "{u}");
    assert_eq!(
        u["new_recipients_today"]["limit"]["from"],
        "carol@example.test"
    );

    // Removing the limit lets the message through at once; a mailbox without limits is not counted.
    cli(db, "limits delete carol@example.test");
    c.command(&format!("RCPT TO:<{DAVE}>")).expect(450, "4.7.1");
    c.command("RSET").expect(250, "");
    let mut c = login(&server, CAROL);
    c.command(&format!("MAIL FROM:<{CAROL}>")).expect(250, "");
    c.command(&format!("RCPT TO:<{DAVE}>")).expect(250, "");
}

kit::on_both_backends!(each_limit_refuses_with_450_and_counts_across_connections);

#[test]
fn bad_limits_are_refused_naming_what_is_wrong() {
    let db = TestDb::sqlite();
    example(&db);
    db.run(&["limits", "set", "nowhere.test", "--messages-per-hour", "5"])
        .fails(1, "nowhere.test");
    db.run(&["limits", "set", "default", "--messages-per-hour", "-1"])
        .fails(2, "'-1' is not a number of 0 or more, or none");
    db.run(&["limits", "set", "default"])
        .fails(2, "give at least one of --messages-per-hour");
    db.run(&[
        "limits",
        "set",
        "not an address@",
        "--messages-per-hour",
        "1",
    ])
    .fails(2, "not an address@");
    db.run(&["limits", "delete", "example.test"])
        .fails(1, "example.test");
    let shown = db.run(&["--json", "limits", "show"]).ok().json();
    assert_eq!(shown, serde_json::json!([]), "nothing was written");

    // A mailbox's limits go with it; `none` for the last kind removes the row.
    cli(&db, "limits set alice@example.test --messages-per-hour 5");
    cli(&db, "limits set bob@example.test --messages-per-hour 5");
    cli(&db, "limits set bob@example.test --messages-per-hour none");
    cli(&db, "mailbox delete alice@example.test");
    let shown = db.run(&["--json", "limits", "show"]).ok().json();
    assert_eq!(shown, serde_json::json!([]), "{shown}");
}

#[test]
fn the_breaker_turns_smtp_off_holds_the_queue_and_tells_the_postmaster_once() {
    let db = TestDb::sqlite();
    example(&db);
    cli(&db, "alias add postmaster@example.test dave@example.test");
    cli(&db, "limits set alice@example.test --messages-per-hour 2");
    // far.test's MX listens nowhere: alice's mail to it stays queued, deferred.
    let mx = Ipv4Addr::new(127, 0, 43, 9);
    let dns = TestDns::start(&[(
        "far.test.",
        &format!("far.test. IN MX 10 mx.far.test.\nmx.far.test. IN A {mx}\n"),
    )]);
    let port = free_port(&[mx]);
    let options = ServeOptions::default()
        .dns(&dns)
        .server_key("metrics", "\"127.0.0.1:0\"")
        .server_key("outbound.port", port)
        .server_key("outbound.timeout", 2);
    let server = TestServer::start(&db, options);
    let mut c = login(&server, ALICE);
    for i in 0..2 {
        let msg = message(ALICE, "x@far.test", "queued", &format!("q{i}@example.test"));
        c.send_mail(ALICE, &["x@far.test"], &msg)
            .expect(250, "2.0.0");
    }
    // 18 refused attempts make 20 in the hour: ten times the limit.
    for _ in 0..18 {
        c.command(&format!("MAIL FROM:<{ALICE}>"))
            .expect(450, "4.7.1");
    }
    let mailbox = db.run(&["--json", "mailbox", "show", ALICE]).ok().json();
    assert_eq!(mailbox["smtp_active"], false, "{mailbox}");
    c.command(&format!("MAIL FROM:<{ALICE}>")).expect(
        550,
        "5.7.1 Sending is turned off for alice@example.test; ask the postmaster",
    );
    c.command("MAIL FROM:<>")
        .expect(550, "5.7.1 Sending is turned off");
    // A new login is refused now.
    let mut again = SmtpClient::connect(server.submission());
    again.ehlo("laptop.example.test");
    again.starttls(server.root(), HOSTNAME);
    again.ehlo("laptop.example.test");
    again.auth_plain(ALICE, PASSWORD).expect(535, "5.7.8");

    let queued = server.run(&["queue", "list", "--json"]).ok().json();
    let queued = queued.as_array().unwrap();
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert!(queued.iter().all(|q| q["state"] == "held"), "{queued:?}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.inbox(DAVE).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let notices = server.inbox(DAVE);
    assert_eq!(notices.len(), 1, "the postmaster is told once");
    let notice = String::from_utf8_lossy(&notices[0]);
    assert!(
        notice.contains("Subject: Sending turned off for alice@example.test"),
        "{notice}"
    );
    assert!(notice.contains("mailctl mailbox update alice@example.test --smtp true"));
    assert!(
        server.log().contains(
            "breaker: alice@example.test tried to send 20 messages within one hour, against a limit of 2 per \
             hour: SMTP turned off"
        ),
        "{}",
        server.log()
    );
    let body = kit::http::get(server.addr("metrics"), "/metrics").body;
    assert!(
        body.contains("mailctl_smtp_breaker_trips_total 1"),
        "{body}"
    );
    assert!(
        body.contains("mailctl_smtp_messages_rejected_total{reason=\"send_limit\"} 18"),
        "{body}"
    );

    // The admin turns SMTP back on: alice logs in again (and is still over her hourly limit).
    cli(&db, "mailbox update alice@example.test --smtp true");
    let mut c = login(&server, ALICE);
    c.command(&format!("MAIL FROM:<{ALICE}>"))
        .expect(450, "4.7.1");
}

#[test]
fn recipients_refused_as_unknown_by_other_servers_trip_the_breaker() {
    // A (a.test, alice) delivers to B (b.test, which knows only bob and refuses the rest with 550 5.1.1).
    let mut w = World::new(44);
    cli(w.a_db(), "limits set a.test --unknown-recipients-per-day 2");
    cli(w.a_db(), "alias add postmaster@a.test alice@a.test");
    w.b.start();
    w.a.start();
    let alice = "alice@a.test";
    let msg = message(alice, "nobody1@b.test", "a bought list", "list@a.test");
    submit(&w.a, &["nobody1@b.test", "nobody2@b.test"], &msg);
    let smtp_active = |w: &World| {
        w.a_db()
            .run(&["--json", "mailbox", "show", alice])
            .ok()
            .json()["smtp_active"]
            .clone()
    };
    wait_for(&w.a, "the breaker turned alice's SMTP off", 20, || {
        smtp_active(&w) == false
    });
    let notice = |w: &World| {
        w.a.server
            .inbox(alice)
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .find(|m| m.contains("Subject: Sending turned off for alice@a.test"))
    };
    wait_for(&w.a, "the postmaster (alice) got the notice", 15, || {
        notice(&w).is_some()
    });
    let text = notice(&w).unwrap();
    assert!(
        text.contains(
            "alice@a.test had 2 recipients refused as unknown by other servers today, against a limit of 2 per day"
        ),
        "{text}"
    );
    let u = usage(w.a_db(), alice);
    assert_eq!(u["unknown_recipients_today"]["used"], 2, "{u}");
    assert_eq!(
        u["unknown_recipients_today"]["limit"]["from"], "a.test",
        "{u}"
    );
}
