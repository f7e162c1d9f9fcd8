//! Forwarding through `mailctl serve`, end to end between two real instances on loopback (the world of
//! `worlds/outbound_world.rs`): A hosts a.test, whose aliases forward to addresses on B; mail reaches A's MX
//! listener from outside senders whose domains B hosts too, so bounces can come home.
//!
//! - A forwarded copy leaves with an SRS sender of a.test (B's SPF check passes for it), a DKIM signature of
//!   a.test and an ARC set carrying A's findings (verified here with mail-auth against the test DNS; dkimpy
//!   verifies them in `interop`).
//! - A bounce to that SRS address goes back to the original sender; a forged one is refused at RCPT.
//! - A sender that neither SPF nor DKIM authenticated gets a silent SRS address: its bounces are refused, and
//!   a DSN A itself makes for the copy is dropped, not sent to a possibly forged sender.
//! - Mail failing DMARC, or judged spam by A's checks, is never forwarded (local recipients still get it).
//! - `[server.forwarding.domains."a.test"] srs = false` keeps the original sender.
//!
//! Senders: `bob@e.test` passes SPF (`ip4:127.0.0.0/8`, DMARC `p=none`): authenticated; `bob@c.test` has no SPF
//! and no DMARC: not authenticated; `bob@s.test` fails SPF under DMARC `p=reject`; `bob@p.test` fails SPF
//! without DMARC.

use crate::worlds::outbound_world::{ALICE, BOB, World, bounces, queue_list, submit, wait_for};

use kit::serve::mail::{Delivered, cli, message};
use kit::smtp_client::SmtpClient;
use mail_auth::{AuthenticatedMessage, DkimResult};

/// The zone records of the senders.
const SENDERS: &str = r#"
e.test.        IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.e.test. IN TXT "v=DMARC1; p=none"
s.test.        IN TXT "v=spf1 -all"
_dmarc.s.test. IN TXT "v=DMARC1; p=reject"
p.test.        IN TXT "v=spf1 -all"
"#;

/// A's forwarding alias to bob@b.test.
const FWD: &str = "fwd@a.test";

/// The world of test `n` with the senders' records and `fwd@a.test -> bob@b.test`; nothing started.
fn world(n: u8) -> World {
    let w = World::with_zone(n, SENDERS);
    cli(w.a_db(), &format!("alias add {FWD} {BOB}"));
    w
}

/// Sends `msg` from `from` to `rcpts` on A's MX listener, as an outside server would; returns the final reply.
fn mx_send(w: &World, from: &str, rcpts: &[&str], msg: &[u8]) -> kit::serve::reply::Reply {
    let mut c = SmtpClient::connect(w.a.addr("smtp"));
    c.ehlo("mta.far.test");
    let reply = c.send_mail(from, rcpts, msg);
    let _ = c.try_command("QUIT");
    reply
}

/// The one message with `message_id` in bob@b.test's inbox, once it is there.
fn arrived(w: &World, message_id: &str) -> Delivered {
    wait_for(&w.a, &format!("{message_id} reaches bob on B"), 15, || {
        find(w, BOB, message_id).is_some()
    });
    find(w, BOB, message_id).expect("arrived")
}

/// The message with `message_id` in `mailbox`'s INBOX or Junk on B. B checks DMARC with action `mark`: a
/// forwarded copy of unsigned mail fails the original domain's DMARC there (forwarding broke SPF alignment,
/// and B does not evaluate ARC), so it lands in Junk, as it would at a receiver that ignores ARC.
fn find(w: &World, mailbox: &str, message_id: &str) -> Option<Delivered> {
    files(w, mailbox)
        .iter()
        .find(|f| String::from_utf8_lossy(f).contains(&format!("<{message_id}>")))
        .map(|f| Delivered::parse(f))
}

/// Every message of `mailbox` on B, INBOX and Junk.
fn files(w: &World, mailbox: &str) -> Vec<Vec<u8>> {
    let mut all = w.b.server.inbox(mailbox);
    if let Ok(entries) = std::fs::read_dir(w.b.server.junk(mailbox)) {
        for e in entries.flatten() {
            all.push(std::fs::read(e.path()).expect("read"));
        }
    }
    all
}

/// `smtp.mailfrom` of B's Authentication-Results: the envelope sender B saw.
fn mail_from(d: &Delivered) -> String {
    let results = &d.fields("Authentication-Results")[0];
    let value = results
        .split("smtp.mailfrom=")
        .nth(1)
        .unwrap_or_else(|| panic!("no smtp.mailfrom in {results}"));
    value
        .split([' ', ';', '\r', '\n'])
        .next()
        .unwrap_or("")
        .trim_matches('"')
        .to_string()
}

/// mail-auth's verdict on the ARC chain of `file`, resolving through the world's DNS.
fn arc_result(w: &World, file: &[u8]) -> DkimResult {
    let resolver = mailctl::dns::Resolver::new(Some(&w.dns().nameserver())).expect("resolver");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let message = AuthenticatedMessage::parse(file).expect("parses");
    let output = runtime.block_on(resolver.authenticator().verify_arc(&message));
    output.result().clone()
}

#[test]
fn forwarded_mail_gets_an_srs_sender_a_signature_and_an_arc_set_and_its_bounces_come_home() {
    let mut w = world(16);
    w.b.start();
    w.a.start();
    let sender = "bob@e.test";
    let msg = message(sender, FWD, "forwarded", "fwd1@e.test");
    mx_send(&w, sender, &[FWD], &msg).expect(250, "2.0.0");
    let d = arrived(&w, "fwd1@e.test");
    let srs = mail_from(&d);
    assert!(
        srs.starts_with("SRS0=") && srs.ends_with("=e.test=bob@a.test"),
        "{srs}"
    );
    let results = &d.fields("Authentication-Results")[0];
    for expected in ["spf=pass", "dkim=pass header.d=a.test"] {
        assert!(
            results.contains(expected),
            "{expected} missing in {results}"
        );
    }
    let rest = String::from_utf8_lossy(&d.rest);
    for expected in [
        "ARC-Seal: i=1; a=rsa-sha256;",
        "cv=none",
        "ARC-Message-Signature: i=1; a=rsa-sha256;",
        "ARC-Authentication-Results: i=1; mx.example.test;",
        "spf=pass",
        "DKIM-Signature: v=1; a=rsa-sha256; s=sel; d=a.test;",
    ] {
        assert!(rest.contains(expected), "{expected:?} missing in:\n{rest}");
    }
    assert_eq!(
        arc_result(&w, &files(&w, BOB)[0]),
        DkimResult::Pass,
        "the ARC chain verifies"
    );

    // A bounce to the SRS address goes back to bob@e.test (on B).
    let bounce = message("MAILER-DAEMON@b.test", &srs, "bounced", "bounce1@b.test");
    mx_send(&w, "", &[&srs], &bounce).expect(250, "2.0.0");
    wait_for(&w.a, "the bounce reaches bob@e.test", 15, || {
        find(&w, "bob@e.test", "bounce1@b.test").is_some()
    });

    // A logged-in user writing to the SRS address reaches the original sender too.
    let reply = message(ALICE, &srs, "reply", "reply1@a.test");
    submit(&w.a, &[&srs], &reply);
    wait_for(&w.a, "alice's reply reaches bob@e.test", 15, || {
        find(&w, "bob@e.test", "reply1@a.test").is_some()
    });

    // Forged and malformed SRS addresses of a.test are refused at RCPT.
    let mut c = SmtpClient::connect(w.a.addr("smtp"));
    c.ehlo("mta.far.test");
    c.command("MAIL FROM:<>").expect(250, "");
    let forged = srs.replacen("=e.test=bob", "=e.test=carol", 1);
    c.command(&format!("RCPT TO:<{forged}>"))
        .expect(550, "5.1.1");
    c.command("RCPT TO:<SRS0=x@a.test>").expect(550, "5.1.1");
    let _ = c.try_command("QUIT");
    assert_eq!(
        w.a.server.run(&["srs", "reverse", &srs]).ok().stdout.trim(),
        sender
    );
}

#[test]
fn unauthenticated_senders_are_forwarded_but_bounces_never_go_back_to_them() {
    let mut w = world(17);
    // nobody@b.test does not exist on B: A's queue gets a 550 for the forwarded copy.
    cli(w.a_db(), "alias add lost@a.test nobody@b.test");
    w.b.start();
    w.a.start();
    let sender = "bob@c.test";
    mx_send(
        &w,
        sender,
        &[FWD],
        &message(sender, FWD, "unauthenticated", "u1@c.test"),
    )
    .expect(250, "2.0.0");
    let d = arrived(&w, "u1@c.test");
    let srs = mail_from(&d);
    assert!(
        srs.starts_with("SRS0=") && srs.ends_with("@a.test"),
        "{srs}"
    );
    // A bounce to it is refused: bob@c.test may never have sent the message.
    let mut c = SmtpClient::connect(w.a.addr("smtp"));
    c.ehlo("mta.far.test");
    c.command("MAIL FROM:<>").expect(250, "");
    c.command(&format!("RCPT TO:<{srs}>")).expect(550, "5.1.1");
    let _ = c.try_command("QUIT");
    w.a.server
        .run(&["srs", "reverse", &srs])
        .fails(1, "not authenticated");

    // A's own DSN for a refused forwarded copy: to bob@e.test (authenticated) it is delivered, to bob@c.test
    // it is dropped.
    for (sender, id) in [
        ("bob@e.test", "dsn-e@e.test"),
        ("bob@c.test", "dsn-c@c.test"),
    ] {
        mx_send(
            &w,
            sender,
            &["lost@a.test"],
            &message(sender, "lost@a.test", "lost", id),
        )
        .expect(250, "2.0.0");
    }
    wait_for(&w.a, "A's queue is empty", 20, || {
        queue_list(&w.a).is_empty()
    });
    wait_for(&w.a, "bob@e.test has the DSN", 15, || {
        !bounces(&w.b, "bob@e.test").is_empty()
    });
    assert!(bounces(&w.b, "bob@e.test")[0].contains("Message-ID: <dsn-e@e.test>"));
    assert!(
        bounces(&w.b, "bob@c.test").is_empty(),
        "no DSN to an unauthenticated sender"
    );
    assert!(
        w.a.server
            .log()
            .contains("DSN refused by local delivery; dropped"),
        "{}",
        w.a.server.log()
    );
}

#[test]
fn mail_failing_dmarc_or_judged_spam_is_never_forwarded() {
    let mut w = world(18);
    cli(w.a_db(), &format!("alias add both@a.test {ALICE},{BOB}"));
    w.b.start();
    w.a.start();
    // DMARC p=reject fails (SPF -all, unsigned), although A's own DMARC check is off: refused when nobody
    // else would get it ...
    let strict = "bob@s.test";
    mx_send(
        &w,
        strict,
        &[FWD],
        &message(strict, FWD, "dmarc", "d1@s.test"),
    )
    .expect(550, "5.7.1 Not forwarded: it fails DMARC");
    // ... delivered only locally otherwise.
    mx_send(
        &w,
        strict,
        &["both@a.test"],
        &message(strict, "both@a.test", "dmarc", "d2@s.test"),
    )
    .expect(250, "2.0.0");
    wait_for(&w.a, "alice has the DMARC failure", 10, || {
        !w.a.server.inbox(ALICE).is_empty()
    });

    // SPF fail without DMARC, with A's SPF check on "mark": spam, filed locally, never forwarded.
    w.a.server.terminate();
    w.a.server
        .reconfigure(|o| o.checks.push(("spf".into(), "mark".into())));
    w.a.server.restart();
    let spam = "bob@p.test";
    mx_send(
        &w,
        spam,
        &["both@a.test"],
        &message(spam, "both@a.test", "spam", "s1@p.test"),
    )
    .expect(250, "2.0.0");
    mx_send(&w, spam, &[FWD], &message(spam, FWD, "spam", "s2@p.test")).expect(
        550,
        "5.7.1 Not forwarded: this server's checks judged it spam",
    );
    wait_for(&w.a, "alice has the spam in Junk", 10, || {
        w.a.server
            .junk(ALICE)
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(queue_list(&w.a).is_empty());
    assert!(files(&w, BOB).is_empty(), "nothing was forwarded");
}

#[test]
fn srs_can_be_turned_off_for_a_forwarding_domain() {
    let mut w = world(19);
    w.a.server.reconfigure(|o| {
        o.set_server_key("forwarding.domains.\"a.test\".srs", false);
    });
    w.b.start();
    w.a.start();
    let sender = "bob@e.test";
    mx_send(
        &w,
        sender,
        &[FWD],
        &message(sender, FWD, "plain", "plain@e.test"),
    )
    .expect(250, "2.0.0");
    let d = arrived(&w, "plain@e.test");
    assert_eq!(mail_from(&d), sender);
    // Still signed and sealed.
    let rest = String::from_utf8_lossy(&d.rest);
    assert!(
        rest.contains("ARC-Seal: i=1;") && rest.contains("d=a.test;"),
        "{rest}"
    );
}

#[test]
fn bad_forwarding_settings_stop_serve_with_exit_2_naming_the_key() {
    let db = kit::TestDb::sqlite();
    for (key, value, expected) in [
        (
            "forwarding.domains.\"not a domain\".srs",
            "false",
            "server.forwarding.domains: invalid domain name",
        ),
        (
            "forwarding.srs",
            "\"yes\"",
            "server.forwarding.srs: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "forwarding.domains.\"a.test\".sign",
            "true",
            "server.forwarding.domains.\"a.test\".sign: unknown field `sign`",
        ),
    ] {
        let options = kit::serve::ServeOptions::default().server_key(key, value);
        let server = kit::serve::TestServer::configure(&db, options);
        server.run(&["serve", "--check-config"]).fails(2, expected);
    }
}
