//! `bench smtp --starttls` and `--auth USER:PASS` against a real `mailctl serve` (its submission listener with
//! a throw-away CA's certificate, which the bench accepts without being told about it), and against the sink,
//! which offers no STARTTLS.

use super::bench;
use super::sink::{Behaviour, Sink};
use kit::TestDb;
use kit::serve::mail::{PASSWORD, example};
use kit::serve::{ServeOptions, TestServer};

#[test]
fn auth_plain_after_starttls_submits_through_the_submission_listener() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, ServeOptions::default());
    let addr = server.submission().to_string();
    let login = format!("alice@example.test:{PASSWORD}");
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--auth",
            &login,
            "--to",
            "bob@example.test",
            "--sessions",
            "3",
            "--messages",
            "12",
            "--size",
            "2048",
            "--pipelining",
            "--json",
        ],
    )
    .ok();
    let j = run.json();
    assert_eq!(j["accepted"], 12, "{}", run.stdout);
    assert_eq!(j["errors"], 0);
    assert_eq!(j["security"], "starttls+auth");
    assert_eq!(j["pipelined"], true);
    let inbox = server.inbox("bob@example.test");
    assert_eq!(inbox.len(), 12);
    let first = String::from_utf8_lossy(&inbox[0]);
    assert!(first.contains("auth=pass"), "{first}");
    assert!(
        first.contains("From: mailctl bench <alice@example.test>"),
        "the --auth user is the sender"
    );
    assert!(first.contains("TLSv1."), "submitted over TLS: {first}");
}

#[test]
fn starttls_alone_works_on_the_mx_listener() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, ServeOptions::default());
    let addr = server.smtp().to_string();
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--starttls",
            "--to",
            "carol@example.test",
            "--sessions",
            "2",
            "--messages",
            "4",
            "--json",
        ],
    )
    .ok();
    assert_eq!(run.json()["security"], "starttls");
    let inbox = server.inbox("carol@example.test");
    assert_eq!(inbox.len(), 4);
    assert!(String::from_utf8_lossy(&inbox[0]).contains("TLSv1."));
}

#[test]
fn a_wrong_password_stops_the_run_at_once() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, ServeOptions::default());
    let addr = server.submission().to_string();
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--auth",
            "alice@example.test:wrong password",
            "--to",
            "bob@example.test",
            "--sessions",
            "2",
            "--messages",
            "50",
            "--json",
        ],
    );
    let j = run.json();
    let run = run.fails(1, "AUTH PLAIN as alice@example.test answered 535");
    assert_eq!(j["accepted"], 0, "{}", run.stdout);
    assert!(
        j["errors"].as_u64().unwrap() <= 2,
        "one failed login per session at most"
    );
    assert!(server.inbox("bob@example.test").is_empty());
}

#[test]
fn auth_needs_starttls_and_a_colon() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour::default());
    let addr = sink.addr.to_string();
    let args = |auth: &'static str| {
        vec![
            "smtp",
            "--auth",
            auth,
            "--to",
            "alice@example.test",
            "--messages",
            "3",
        ]
    };
    let mut a = args("bob@example.test:pw");
    a.insert(1, &addr);
    bench(&db, &a).fails(1, "the server does not offer STARTTLS");
    assert!(sink.received().is_empty());
    let mut a = args("bob@example.test");
    a.insert(1, &addr);
    bench(&db, &a).fails(2, "--auth must be USER:PASS");
    let mut a = args("alice:pw");
    a.insert(1, &addr);
    bench(&db, &a).fails(2, "--from (by default the --auth user)");
}
