//! Vacation auto-replies: `mailctl vacation set|show|off` in postfixadmin's tables, and `serve` answering the
//! senders of mail delivered to a mailbox that is away (RFC 3834): once per sender per vacation, never to
//! automatic mail (lists, auto-replies, null senders, robots), the reply marked `Auto-Submitted`, referring to
//! the message, sent with a null envelope sender through the queue.

use std::time::{Duration, Instant};

use kit::TestDb;
use kit::serve::mail::{example, message};
use kit::serve::{ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const BOB: &str = "bob@example.test";
const CAROL: &str = "carol@example.test";

fn send(server: &TestServer, sender: &str, message: &[u8]) {
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.far.test");
    c.send_mail(sender, &[BOB], message).expect(250, "2.0.0");
    c.command("QUIT");
}

/// Waits until `mailbox` has `n` messages (at most 15 s); the messages.
fn wait_for(server: &TestServer, mailbox: &str, n: usize) -> Vec<Vec<u8>> {
    let start = Instant::now();
    loop {
        let inbox = server.inbox(mailbox);
        if inbox.len() >= n || start.elapsed() > Duration::from_secs(15) {
            return inbox;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn away_mailboxes_answer_each_sender_once_and_never_robots(db: &TestDb) {
    example(db);
    db.run(&["dkim", "generate", "example.test", "--selector", "s1"])
        .ok();
    let text = db.path("away.txt");
    std::fs::write(&text, "I am away until Monday.\nBob\n").expect("body file");
    let set = db
        .run(&[
            "--json",
            "vacation",
            "set",
            BOB,
            "--subject",
            "Away until Monday",
            "--body-file",
            &text.to_string_lossy(),
        ])
        .ok()
        .json();
    assert_eq!(set["active"], true, "{set}");
    let shown = db.run(&["vacation", "show", BOB]).ok().stdout;
    assert!(
        shown.contains("Away until Monday") && shown.contains("I am away until Monday."),
        "{shown}"
    );
    let server = TestServer::start(db, ServeOptions::default());

    // Carol writes to bob: bob gets it, carol gets the reply (through the queue, to her Maildir).
    let first = message(CAROL, BOB, "lunch?", "lunch1@example.test");
    send(&server, CAROL, &first);
    let replies = wait_for(&server, CAROL, 1);
    assert_eq!(replies.len(), 1, "one reply:\n{}", server.log());
    let reply = String::from_utf8_lossy(&replies[0]).into_owned();
    for field in [
        "From: <bob@example.test>",
        "To: <carol@example.test>",
        "Subject: Away until Monday",
        "Auto-Submitted: auto-replied",
        "In-Reply-To: <lunch1@example.test>",
    ] {
        assert!(
            reply.split("\r\n").any(|l| l == field),
            "{field:?} in:\n{reply}"
        );
    }
    assert!(
        reply.contains("DKIM-Signature:") && reply.contains("d=example.test"),
        "signed with the mailbox's domain key:\n{reply}"
    );
    assert!(
        reply.ends_with("\r\n\r\nI am away until Monday.\r\nBob\r\n"),
        "{reply}"
    );
    assert_eq!(server.inbox(BOB).len(), 1);

    // Once per vacation: a second message from carol is delivered, not answered.
    send(
        &server,
        CAROL,
        &message(CAROL, BOB, "lunch!", "lunch2@example.test"),
    );
    // Automatic mail is never answered: a list, an auto-reply, a robot, a null sender.
    let dave = "dave@example.test";
    let mut list = b"List-Id: <team.example.test>\r\n".to_vec();
    list.extend_from_slice(&message(dave, BOB, "list", "list@example.test"));
    send(&server, dave, &list);
    let mut auto = b"Auto-Submitted: auto-replied\r\n".to_vec();
    auto.extend_from_slice(&message(dave, BOB, "auto", "auto@example.test"));
    send(&server, dave, &auto);
    send(
        &server,
        "noreply@example.test",
        &message("noreply@example.test", BOB, "robot", "robot@example.test"),
    );
    send(
        &server,
        "",
        &message(dave, BOB, "bounce", "bounce@example.test"),
    );
    // Nor mail that does not name bob in To or Cc (a Bcc).
    send(
        &server,
        dave,
        &message(dave, "team@example.test", "bcc", "bcc@example.test"),
    );
    // Nor a Bcc alongside a recipient the message does name: To: alice, bob only in the envelope.
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.far.test");
    c.send_mail(
        dave,
        &["alice@example.test", BOB],
        &message(dave, "alice@example.test", "bcc2", "bcc2@example.test"),
    )
    .expect(250, "2.0.0");
    c.command("QUIT");
    assert_eq!(
        wait_for(&server, BOB, 8).len(),
        8,
        "every message delivered"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.inbox(CAROL).len(), 1, "still one reply to carol");
    assert!(
        server.inbox(dave).is_empty(),
        "no reply to dave's automatic mail"
    );

    // Off: nobody is answered any more (after the away list is read again).
    db.run(&["vacation", "off", BOB]).ok();
    let shown = db.run(&["--json", "vacation", "show", BOB]).ok().json();
    assert_eq!(shown["active"], false);
}

kit::on_both_backends!(away_mailboxes_answer_each_sender_once_and_never_robots);

#[test]
fn bad_vacation_input_is_refused_with_one_line() {
    let db = TestDb::sqlite();
    example(&db);
    let text = db.path("away.txt");
    std::fs::write(&text, "Away.\n").expect("body file");
    let body = text.to_string_lossy().into_owned();
    // `vacation set ADDRESS --subject SUBJECT --body-file FILE EXTRA...`
    let set_as = |address: &str, subject: &str, file: &str, extra: &[&str]| {
        let mut args = vec![
            "vacation",
            "set",
            address,
            "--subject",
            subject,
            "--body-file",
            file,
        ];
        args.extend_from_slice(extra);
        db.run(&args)
    };
    let set = |extra: &[&str]| set_as(BOB, "Away", &body, extra);
    set(&["--from", "2026-13-01"]).fails(2, "--from '2026-13-01' is not a date like 2026-12-24");
    set(&["--from", "2026-12-24", "--until", "2026-12-01"])
        .fails(2, "--until 2026-12-01 is before --from 2026-12-24");
    set(&["--interval=-1"]).fails(2, "--interval must be 0 to 365 days");
    set_as("nobody@example.test", "Away", &body, &[]).fails(1, "nobody@example.test");
    set_as(BOB, "a\nb", &body, &[]).fails(2, "control characters");
    std::fs::write(&text, "  \n").expect("body file");
    set(&[]).fails(2, "the reply text (--body-file) is empty");
    set_as(BOB, "Away", "/nonexistent/away.txt", &[]).fails(1, "/nonexistent/away.txt");
    db.run(&["vacation", "show", BOB])
        .fails(1, "bob@example.test has no vacation set");
    db.run(&["vacation", "off", BOB])
        .fails(1, "bob@example.test has no vacation set");
}
