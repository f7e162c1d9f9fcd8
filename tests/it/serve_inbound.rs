//! `mailctl serve` as the inbound MX, end to end on SQLite and MariaDB: the database is provisioned through the
//! CLI, the real daemon runs on loopback, a raw SMTP client talks to it, and the tests assert the reply codes
//! and the files in the Maildirs (what Dovecot would read).

use kit::TestDb;
use kit::serve::mail::{Delivered, add_mailbox, cli, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const FROM: &str = "sender@far.test";

/// A started server for `db` (after [`example`]) and a client that has said EHLO on its MX listener.
fn mx(db: &TestDb, options: ServeOptions) -> (TestServer, SmtpClient) {
    let server = TestServer::start(db, options);
    let mut client = SmtpClient::connect(server.smtp());
    client.ehlo("client.far.test");
    (server, client)
}

/// Sends one message to `rcpts` and asserts the 250.
fn deliver(client: &mut SmtpClient, rcpts: &[&str], id: &str) -> Vec<u8> {
    let msg = message(FROM, rcpts[0], "inbound", id);
    client
        .send_mail(FROM, rcpts, &msg)
        .expect(250, "2.0.0 Ok: queued as ");
    msg
}

fn delivers_to_a_mailbox_with_trace_headers_and_the_exact_body(db: &TestDb) {
    example(db);
    let server = TestServer::start(db, ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    assert_eq!(c.banner.raw(), format!("220 {HOSTNAME} ESMTP mailctl"));
    c.ehlo("client.far.test");
    let msg = message(FROM, "alice@example.test", "delivery", "d1@far.test");
    let reply = c.send_mail(FROM, &["alice@example.test"], &msg);
    reply.expect(250, "2.0.0 Ok: queued as ");
    let queue_id = reply.first()["2.0.0 Ok: queued as ".len()..]
        .trim()
        .to_string();
    c.command("QUIT").expect(221, "2.0.0");

    let files = server.inbox("alice@example.test");
    assert_eq!(files.len(), 1, "one file in alice's new/");
    let d = Delivered::parse(&files[0]);
    assert_eq!(
        String::from_utf8_lossy(&d.rest),
        String::from_utf8_lossy(&msg),
        "the message follows the trace fields byte for byte (dot-unstuffed, CRLF kept)"
    );
    assert_eq!(d.trace.len(), 2, "A-R and Received only: {:?}", d.trace);
    assert!(
        d.trace[0].starts_with(&format!("Authentication-Results: {HOSTNAME}")),
        "Authentication-Results first, naming this server: {:?}",
        d.trace
    );
    let received = &d.fields("Received")[0];
    assert!(
        d.trace[1].starts_with("Received: from client.far.test ("),
        "{received}"
    );
    for part in [
        "[127.0.0.1])",
        &format!("by {HOSTNAME} (mailctl) with ESMTP"),
        &format!("id {queue_id}"),
        ";",
    ] {
        assert!(
            received.contains(part),
            "Received lacks {part:?}: {received}"
        );
    }
    assert!(!received.contains("ESMTPS"), "no TLS was used: {received}");
    assert!(
        server.inbox("bob@example.test").is_empty(),
        "nothing for bob"
    );
    let tmp = server.mailbox_root("alice@example.test").join("tmp");
    assert!(
        TestServer::messages(&tmp).is_empty(),
        "nothing left in tmp/"
    );
}

fn alias_with_two_targets_delivers_one_copy_to_each(db: &TestDb) {
    example(db);
    cli(
        db,
        "alias add info@example.test alice@example.test bob@example.test",
    );
    let (server, mut c) = mx(db, ServeOptions::default());
    let msg = deliver(&mut c, &["info@example.test"], "alias@far.test");
    for mailbox in ["alice@example.test", "bob@example.test"] {
        let files = server.inbox(mailbox);
        assert_eq!(files.len(), 1, "{mailbox}");
        assert_eq!(Delivered::parse(&files[0]).rest, msg, "{mailbox}");
    }
    assert!(server.inbox("carol@example.test").is_empty());
}

fn alias_domain_delivers_to_the_target_domain_mailbox(db: &TestDb) {
    example(db);
    cli(db, "alias-domain add alias.test example.test");
    let (server, mut c) = mx(db, ServeOptions::default());
    deliver(&mut c, &["alice@alias.test"], "aliasdomain@far.test");
    assert_eq!(server.inbox("alice@example.test").len(), 1);
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<nobody@alias.test>")
        .expect(550, "5.1.1");
}

fn catch_all_takes_unknown_names_but_not_mailboxes(db: &TestDb) {
    example(db);
    cli(db, "alias add @example.test carol@example.test");
    let (server, mut c) = mx(db, ServeOptions::default());
    deliver(&mut c, &["nobody@example.test"], "catchall1@far.test");
    deliver(&mut c, &["alice@example.test"], "catchall2@far.test");
    assert_eq!(server.inbox("carol@example.test").len(), 1);
    assert_eq!(server.inbox("alice@example.test").len(), 1);
}

fn unknown_user_is_refused_at_rcpt_with_550_5_1_1(db: &TestDb) {
    example(db);
    let (server, mut c) = mx(db, ServeOptions::default());
    c.command("MAIL FROM:<sender@far.test>")
        .expect(250, "2.1.0");
    c.command("RCPT TO:<nobody@example.test>").expect(
        550,
        "5.1.1 <nobody@example.test>: recipient address rejected: user unknown",
    );
    c.command("RCPT TO:<alice@example.test>")
        .expect(250, "2.1.5");
    c.command("DATA").expect(354, "");
    c.send(&kit::smtp_client::data_bytes(&message(
        FROM,
        "alice@example.test",
        "mixed",
        "mixed@far.test",
    )));
    c.read_reply().expect(250, "2.0.0");
    assert_eq!(server.inbox("alice@example.test").len(), 1);
    assert!(!server.mailbox_root("nobody@example.test").exists());
}

fn relay_to_a_foreign_domain_is_denied_with_554_5_7_1(db: &TestDb) {
    example(db);
    let (_server, mut c) = mx(db, ServeOptions::default());
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<victim@elsewhere.test>")
        .expect(554, "5.7.1 <victim@elsewhere.test>: relay access denied");
    // Address tricks that name a hosted domain but route elsewhere are not local either.
    let trick = c.command("RCPT TO:<victim%elsewhere.test@example.test>");
    assert_eq!(trick.code / 100, 5, "percent hack: {}", trick.raw());
    // RFC 5321 3.3: DATA without an accepted recipient may get 503 or 554 "no valid recipients".
    let data = c.command("DATA");
    assert!(matches!(data.code, 503 | 554), "{}", data.raw());
}

fn disabled_mailbox_is_refused_with_550_5_2_1(db: &TestDb) {
    example(db);
    cli(db, "mailbox disable bob@example.test");
    let (server, mut c) = mx(db, ServeOptions::default());
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<bob@example.test>")
        .expect(550, "5.2.1 <bob@example.test>: mailbox disabled");
    assert!(server.inbox("bob@example.test").is_empty());
}

fn mailbox_over_quota_is_refused_with_552_5_2_2(db: &TestDb) {
    example(db);
    add_mailbox(db, "full@example.test", &["--quota-mb", "1"]);
    let server = TestServer::start(db, ServeOptions::default());
    // A Maildir already holding 2 MiB (sizes in the names, as Dovecot writes them).
    let root = server.mailbox_root("full@example.test");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("maildir");
    }
    let big = vec![b'x'; 2 * 1024 * 1024];
    let name = format!("1700000000.M1P1.prefill,S={}:2,S", big.len());
    std::fs::write(root.join("cur").join(name), &big).expect("prefill");
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<full@example.test>")
        .expect(552, "5.2.2 <full@example.test>: mailbox full");
    c.command("RCPT TO:<alice@example.test>").expect(250, "");
    assert!(server.inbox("full@example.test").is_empty());
}

/// The id of the `250` reply names the message everywhere: the transaction's log line, the `Received:` field
/// and the Maildir file of every mailbox it went to.
fn one_id_names_the_message_in_the_reply_the_log_and_the_maildir_files(db: &TestDb) {
    example(db);
    let (server, mut c) = mx(db, ServeOptions::default());
    let msg = message(FROM, "alice@example.test", "ids", "ids@far.test");
    let reply = c.send_mail(FROM, &["alice@example.test", "bob@example.test"], &msg);
    reply.expect(250, "2.0.0 Ok: queued as ");
    let id = reply.first()["2.0.0 Ok: queued as ".len()..]
        .trim()
        .to_string();
    assert!(
        id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "a queue id: {id}"
    );
    c.command("QUIT").expect(221, "2.0.0");
    for mailbox in ["alice@example.test", "bob@example.test"] {
        let names: Vec<String> = std::fs::read_dir(server.maildir(mailbox))
            .expect("new/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            matches!(&names[..], [one] if one.contains(&format!("_{id}."))),
            "{mailbox}: {names:?} should name {id}"
        );
        let delivered = Delivered::parse(&server.inbox(mailbox)[0]);
        assert!(delivered.fields("Received")[0].contains(&format!("id {id}")));
    }
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("transaction"))
        .unwrap_or_else(|| panic!("no transaction log line:\n{log}"));
    assert!(line.contains(&format!("id={id}")), "{line}");
}

kit::on_both_backends!(
    one_id_names_the_message_in_the_reply_the_log_and_the_maildir_files,
    delivers_to_a_mailbox_with_trace_headers_and_the_exact_body,
    alias_with_two_targets_delivers_one_copy_to_each,
    alias_domain_delivers_to_the_target_domain_mailbox,
    catch_all_takes_unknown_names_but_not_mailboxes,
    unknown_user_is_refused_at_rcpt_with_550_5_1_1,
    relay_to_a_foreign_domain_is_denied_with_554_5_7_1,
    disabled_mailbox_is_refused_with_550_5_2_1,
    mailbox_over_quota_is_refused_with_552_5_2_2,
);
