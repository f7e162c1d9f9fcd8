//! The inbound checks of `mailctl serve` end to end: the real daemon, its resolver pointed at an authoritative
//! DNS server on loopback (see `world.rs` for the records), a raw SMTP client sending real
//! mail to the MX listener (or, once, to submission), and assertions on the reply codes and on the Maildir:
//! INBOX or Maildir++ `.Junk`, and the `Authentication-Results:` field in front of the message.
//!
//! The database is SQLite only: the checks never touch it, the backends are covered by the other serve tests.

mod world;

use kit::TestDb;
use kit::serve::mail::{PASSWORD, cli, example, message, message_id};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;
use mailctl::dkim::KeySpec;
use world::{
    CLEAN_ZONE, LISTING_ZONE, World, nothing_for, only_in_inbox, only_in_junk, results_field,
    tampered,
};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const QUEUED: &str = "2.0.0 Ok: queued as ";

/// A fresh SQLite database with example.test and its mailboxes alice, bob, carol and dave.
fn provisioned() -> TestDb {
    let db = TestDb::sqlite();
    example(&db);
    db
}

/// A daemon on `db` using `world`'s DNS, with the given `[server.checks]` actions (the rest off) and DNSBL zones.
fn start(db: &TestDb, world: &World, checks: &[(&str, &str)], lists: &[&str]) -> TestServer {
    let mut options = ServeOptions::default().dns(&world.dns);
    for (check, action) in checks {
        options = options.check(check, action);
    }
    options.dnsbl_lists = lists.iter().map(|l| l.to_string()).collect();
    TestServer::start(db, options)
}

/// A client on the MX listener that has said EHLO.
fn mx(server: &TestServer) -> SmtpClient {
    let mut client = SmtpClient::connect(server.smtp());
    client.ehlo("client.far.test");
    client
}

/// Sends `msg` from `from` to `rcpts` on `client` and asserts the 250 at the end of DATA.
#[track_caller]
fn accepted(client: &mut SmtpClient, from: &str, rcpts: &[&str], msg: &[u8]) {
    client.send_mail(from, rcpts, msg).expect(250, QUEUED);
}

#[test]
fn spf_pass_is_reported_with_the_mail_from_address_and_delivered_to_inbox() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("spf", "reject")], &[]);
    let sender = "news@spfpass.test";
    let msg = message(sender, ALICE, "spf pass", "spfpass@spfpass.test");
    accepted(&mut mx(&server), sender, &[ALICE], &msg);

    let d = only_in_inbox(&server, ALICE);
    assert_eq!(
        d.trace[0],
        results_field(&[&format!("spf=pass smtp.mailfrom={sender}")])
    );
    assert_eq!(
        d.rest, msg,
        "the message follows the trace fields unchanged"
    );
}

#[test]
fn spf_fail_with_action_mark_is_delivered_into_junk_and_reported_as_fail() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("spf", "mark")], &[]);
    let sender = "forger@spffail.test";
    let msg = message(sender, ALICE, "spf fail", "spffail@spffail.test");
    accepted(&mut mx(&server), sender, &[ALICE], &msg);

    let d = only_in_junk(&server, ALICE);
    assert_eq!(
        d.trace[0],
        results_field(&[&format!("spf=fail smtp.mailfrom={sender}")])
    );
    assert_eq!(d.rest, msg);
    assert!(
        server
            .mailbox_root(ALICE)
            .join(".Junk/maildirfolder")
            .is_file(),
        "a Maildir++ folder carries its maildirfolder marker"
    );
}

#[test]
fn spf_fail_with_action_reject_refuses_mail_from_with_550_5_7_23_and_delivers_nothing() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("spf", "reject")], &[]);
    let mut c = mx(&server);
    c.command("MAIL FROM:<forger@spffail.test>")
        .expect(550, "5.7.23 SPF check failed for spffail.test");
    c.command(&format!("RCPT TO:<{ALICE}>"))
        .expect(503, "5.5.1");
    c.command("DATA").expect(503, "5.5.1");

    // The refusal ends that transaction only: an authorized sender on the same connection gets through.
    let sender = "news@spfpass.test";
    let msg = message(sender, ALICE, "after refusal", "after@spfpass.test");
    accepted(&mut c, sender, &[ALICE], &msg);
    let d = only_in_inbox(&server, ALICE);
    assert_eq!(message_id(&d.rest).as_deref(), Some("after@spfpass.test"));
}

#[test]
fn dkim_signature_that_verifies_is_reported_as_pass_and_delivered_to_inbox() {
    let (db, w) = (provisioned(), World::new(KeySpec::Rsa2048));
    let server = start(&db, &w, &[("dkim", "mark")], &[]);
    let sender = "bounce@spfpass.test";
    // The body has dot-stuffed lines and 8-bit text: the daemon must verify what was sent, not the wire form.
    let msg = w.sign(
        &message("alice@signed.test", ALICE, "dkim pass", "dkim@signed.test"),
        "signed.test",
    );
    accepted(&mut mx(&server), sender, &[ALICE], &msg);

    let d = only_in_inbox(&server, ALICE);
    assert_eq!(
        d.trace[0],
        results_field(&["dkim=pass header.d=signed.test header.s=sel"])
    );
    assert_eq!(d.rest, msg, "the signed message is delivered byte for byte");
}

#[test]
fn dkim_signature_broken_by_one_body_byte_fails_and_with_action_mark_goes_to_junk() {
    let (db, w) = (provisioned(), World::new(KeySpec::Rsa2048));
    let server = start(&db, &w, &[("dkim", "mark")], &[]);
    let sender = "bounce@spfpass.test";
    let signed = w.sign(
        &message(
            "alice@signed.test",
            ALICE,
            "dkim fail",
            "broken@signed.test",
        ),
        "signed.test",
    );
    let msg = tampered(&signed);
    accepted(&mut mx(&server), sender, &[ALICE], &msg);

    let d = only_in_junk(&server, ALICE);
    assert_eq!(
        d.trace[0],
        results_field(&["dkim=fail header.d=signed.test header.s=sel"])
    );
    assert_eq!(d.rest, msg);
}

#[test]
fn dkim_failure_with_action_reject_refuses_the_message_at_end_of_data() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("dkim", "reject")], &[]);
    let signed = w.sign(
        &message("alice@signed.test", ALICE, "dkim reject", "rej@signed.test"),
        "signed.test",
    );
    let mut c = mx(&server);
    c.send_mail("bounce@spfpass.test", &[ALICE], &tampered(&signed))
        .expect(550, "5.7.20");
    nothing_for(&server, ALICE);
    // Unsigned mail is no DKIM failure.
    let plain = message("alice@signed.test", ALICE, "unsigned", "plain@signed.test");
    accepted(&mut c, "bounce@spfpass.test", &[ALICE], &plain);
    let d = only_in_inbox(&server, ALICE);
    assert_eq!(d.trace[0], results_field(&["dkim=none"]));
}

#[test]
fn dmarc_reject_policy_with_spf_fail_and_no_dkim_is_refused_with_550_5_7_1_at_end_of_data() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let checks = [("spf", "mark"), ("dkim", "mark"), ("dmarc", "reject")];
    let server = start(&db, &w, &checks, &[]);
    let mut c = mx(&server);
    let msg = message("ceo@reject.test", ALICE, "pay me", "ceo@reject.test");
    c.send_mail("ceo@reject.test", &[ALICE], &msg)
        .expect(550, "5.7.1 rejected by DMARC policy of reject.test");
    nothing_for(&server, ALICE);
    c.command("NOOP").expect(250, "2.0.0");
}

#[test]
fn dmarc_quarantine_policy_failure_is_delivered_into_junk() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    // SPF and DKIM off (still evaluated for DMARC, not reported): the Junk filing is DMARC's alone.
    let server = start(&db, &w, &[("dmarc", "reject")], &[]);
    let sender = "ceo@quarantine.test";
    let msg = message(sender, ALICE, "invoice", "inv@quarantine.test");
    accepted(&mut mx(&server), sender, &[ALICE], &msg);

    let d = only_in_junk(&server, ALICE);
    assert_eq!(
        d.trace[0],
        results_field(&["dmarc=fail header.from=quarantine.test"])
    );
    assert_eq!(d.rest, msg);
}

#[test]
fn dmarc_passes_through_an_aligned_dkim_signature_when_spf_is_not_aligned() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let checks = [("spf", "mark"), ("dkim", "mark"), ("dmarc", "reject")];
    let server = start(&db, &w, &checks, &[]);
    // As from a mailing list: the envelope is another domain's, signed.test's SPF never authorizes us.
    let sender = "bounce@spfpass.test";
    let unsigned = message("alice@signed.test", ALICE, "list post", "post@signed.test");
    let mut c = mx(&server);
    accepted(&mut c, sender, &[ALICE], &w.sign(&unsigned, "signed.test"));
    let d = only_in_inbox(&server, ALICE);
    assert_eq!(
        d.trace[0],
        results_field(&[
            &format!("spf=pass smtp.mailfrom={sender}"),
            "dkim=pass header.d=signed.test header.s=sel",
            "dmarc=pass header.from=signed.test",
        ])
    );
    // Without the signature nothing aligns, and signed.test asks for rejection.
    c.send_mail(sender, &[ALICE], &unsigned)
        .expect(550, "5.7.1 rejected by DMARC policy of signed.test");
    assert_eq!(
        server.inbox(ALICE).len(),
        1,
        "the rejected copy is not delivered"
    );
}

#[test]
fn client_listed_on_a_dnsbl_zone_is_refused_at_mail_with_554_5_7_1_naming_the_zone() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("dnsbl", "reject")], &[CLEAN_ZONE, LISTING_ZONE]);
    let mut c = mx(&server);
    let refusal = format!("5.7.1 client [127.0.0.1] blocked using {LISTING_ZONE}");
    c.command("MAIL FROM:<sender@far.test>")
        .expect(554, &refusal);
    c.command(&format!("RCPT TO:<{ALICE}>"))
        .expect(503, "5.5.1");
    c.command("RSET").expect(250, "2.0.0");
    c.command("MAIL FROM:<>").expect(554, &refusal);
    nothing_for(&server, ALICE);
}

#[test]
fn client_not_listed_on_the_dnsbl_zone_is_delivered_to_inbox() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("dnsbl", "reject")], &[CLEAN_ZONE]);
    let msg = message("sender@far.test", ALICE, "clean", "clean@far.test");
    accepted(&mut mx(&server), "sender@far.test", &[ALICE], &msg);
    let d = only_in_inbox(&server, ALICE);
    assert_eq!(d.rest, msg);
}

#[test]
fn dnsbl_listing_with_action_mark_is_delivered_into_junk() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    let server = start(&db, &w, &[("dnsbl", "mark")], &[LISTING_ZONE]);
    let msg = message("sender@far.test", ALICE, "listed", "listed@far.test");
    accepted(&mut mx(&server), "sender@far.test", &[ALICE], &msg);
    let d = only_in_junk(&server, ALICE);
    assert_eq!(d.rest, msg);
}

#[test]
fn authenticated_submission_is_reported_as_auth_pass_without_spf_dkim_dmarc_or_dnsbl() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    // Every check would refuse this mail if it ran: example.test's SPF authorizes nobody, its DMARC policy is
    // reject, the DKIM signature is broken, and 127.0.0.1 is listed.
    let checks = [
        ("spf", "reject"),
        ("dkim", "reject"),
        ("dmarc", "reject"),
        ("dnsbl", "reject"),
    ];
    let server = start(&db, &w, &checks, &[LISTING_ZONE]);
    let signed = w.sign(
        &message(ALICE, BOB, "submitted", "sub@example.test"),
        "example.test",
    );
    let msg = tampered(&signed);
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain(ALICE, PASSWORD).expect(235, "2.7.0");
    accepted(&mut c, ALICE, &[BOB], &msg);

    let d = only_in_inbox(&server, BOB);
    assert_eq!(
        d.trace[0],
        results_field(&[&format!("auth=pass smtp.auth={ALICE}")])
    );
    assert_eq!(d.rest, msg);
}

#[test]
fn junk_verdict_files_the_message_into_the_junk_folder_of_every_recipient_mailbox() {
    let (db, w) = (provisioned(), World::new(KeySpec::Ed25519));
    cli(
        &db,
        "alias add team@example.test carol@example.test dave@example.test",
    );
    let server = start(&db, &w, &[("spf", "mark")], &[]);
    let sender = "forger@spffail.test";
    let msg = message(sender, "team@example.test", "to many", "many@spffail.test");
    accepted(
        &mut mx(&server),
        sender,
        &[ALICE, BOB, "team@example.test"],
        &msg,
    );
    for mailbox in [ALICE, BOB, "carol@example.test", "dave@example.test"] {
        let d = only_in_junk(&server, mailbox);
        assert_eq!(
            d.fields("Authentication-Results"),
            [format!(
                "Authentication-Results: {HOSTNAME};\tspf=fail smtp.mailfrom={sender}"
            )],
            "{mailbox}"
        );
        assert_eq!(d.rest, msg, "{mailbox}");
    }
}
