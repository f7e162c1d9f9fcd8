//! `mailctl serve` as the inbound MX under pressure: limits (recipients, SIZE, line length), pipelining, SMTP
//! smuggling payloads, AUTH on the MX listener, and a database that goes away (MariaDB through a cuttable
//! proxy). Reply codes and Maildir files are asserted; the session must survive every refusal.

use std::time::{Duration, Instant};

use kit::TestDb;
use kit::serve::db_proxy::DbProxy;
use kit::serve::mail::{Delivered, example, find, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::{SmtpClient, data_bytes};

const FROM: &str = "sender@far.test";
const ALICE: &str = "alice@example.test";

/// SQLite database with [`example`], a server with `options`, a client after EHLO on the MX listener.
fn mx(options: ServeOptions) -> (TestDb, TestServer, SmtpClient) {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, options);
    let mut client = SmtpClient::connect(server.smtp());
    client.ehlo("client.far.test");
    (db, server, client)
}

#[test]
fn auth_is_neither_offered_nor_accepted_on_the_mx_listener() {
    let (_db, server, mut c) = mx(ServeOptions::default());
    let ehlo = c.ehlo("client.far.test");
    assert!(!ehlo.has_keyword("AUTH"), "{}", ehlo.raw());
    c.auth_plain(ALICE, "x").expect(503, "5.5.1");
    c.starttls(server.root(), HOSTNAME);
    let ehlo = c.ehlo("client.far.test");
    assert!(
        !ehlo.has_keyword("AUTH"),
        "not even under TLS: {}",
        ehlo.raw()
    );
    assert!(!ehlo.has_keyword("STARTTLS"), "{}", ehlo.raw());
    c.auth_plain(ALICE, kit::serve::mail::PASSWORD)
        .expect(503, "5.5.1 AUTH not available on this listener");
    c.command("NOOP").expect(250, "2.0.0");
}

#[test]
fn recipients_over_max_recipients_get_452() {
    let (_db, server, mut c) = mx(ServeOptions::default().limit("max_recipients", 3));
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    for name in ["alice", "bob", "carol"] {
        c.command(&format!("RCPT TO:<{name}@example.test>"))
            .expect(250, "");
    }
    c.command("RCPT TO:<dave@example.test>")
        .expect(452, "4.5.3 too many recipients");
    c.command("DATA").expect(354, "");
    c.send(&data_bytes(&message(
        FROM,
        ALICE,
        "three",
        "three@far.test",
    )));
    c.read_reply().expect(250, "2.0.0");
    for name in ["alice", "bob", "carol"] {
        assert_eq!(server.inbox(&format!("{name}@example.test")).len(), 1);
    }
    assert!(server.inbox("dave@example.test").is_empty());
}

#[test]
fn size_over_the_limit_is_refused_at_mail_from() {
    let (_db, _server, mut c) = mx(ServeOptions::default().limit("max_message_size", 10_000));
    let ehlo = c.ehlo("client.far.test");
    assert_eq!(
        ehlo.keyword_line("SIZE"),
        Some("SIZE 10000"),
        "{}",
        ehlo.raw()
    );
    c.command("MAIL FROM:<sender@far.test> SIZE=10001")
        .expect(552, "5.3.4 message size exceeds fixed maximum message size");
    c.command("MAIL FROM:<sender@far.test> SIZE=9000")
        .expect(250, "");
}

#[test]
fn oversize_data_is_refused_with_552_and_the_session_goes_on() {
    let (_db, server, mut c) = mx(ServeOptions::default().limit("max_message_size", 10_000));
    let mut big = message(FROM, ALICE, "big", "big@far.test");
    for _ in 0..400 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789012345678\r\n");
    }
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<alice@example.test>").expect(250, "");
    c.command("DATA").expect(354, "");
    c.send(&data_bytes(&big));
    c.read_reply()
        .expect(552, "5.3.4 message size exceeds fixed maximum message size");
    assert!(!c.has_unread(Duration::from_millis(300)), "one reply only");
    c.command("RSET").expect(250, "2.0.0");
    let small = message(FROM, ALICE, "small", "small@far.test");
    c.send_mail(FROM, &[ALICE], &small).expect(250, "2.0.0");
    let files = server.inbox(ALICE);
    assert_eq!(files.len(), 1, "only the small message");
    assert_eq!(Delivered::parse(&files[0]).rest, small);
}

#[test]
fn pipelined_commands_in_one_write_get_replies_in_order() {
    let (_db, server, mut c) = mx(ServeOptions::default());
    let ehlo = c.ehlo("client.far.test");
    assert!(ehlo.has_keyword("PIPELINING"), "{}", ehlo.raw());
    c.send(
        b"MAIL FROM:<sender@far.test>\r\nRCPT TO:<alice@example.test>\r\n\
          RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    );
    c.read_reply().expect(250, "2.1.0");
    c.read_reply().expect(250, "2.1.5");
    c.read_reply().expect(550, "5.1.1");
    c.read_reply().expect(250, "2.1.5");
    c.read_reply().expect(354, "");
    let msg = message(FROM, ALICE, "pipelined", "pipe@far.test");
    // The message and the commands after it in one write, too.
    let mut rest = data_bytes(&msg);
    rest.extend_from_slice(b"RSET\r\nNOOP\r\nQUIT\r\n");
    c.send(&rest);
    c.read_reply().expect(250, "2.0.0");
    c.read_reply().expect(250, "2.0.0");
    c.read_reply().expect(250, "2.0.0");
    c.read_reply().expect(221, "2.0.0");
    c.expect_closed();
    for mailbox in [ALICE, "bob@example.test"] {
        let files = server.inbox(mailbox);
        assert_eq!(files.len(), 1, "{mailbox}");
        assert_eq!(Delivered::parse(&files[0]).rest, msg);
    }
}

#[test]
fn over_long_command_line_is_refused_with_500_not_truncated() {
    let (_db, _server, mut c) = mx(ServeOptions::default());
    // Were the line cut at some limit, the rest would be read as a second (unknown) command.
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 100_000));
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    c.read_reply().expect(500, "5.5.2 line too long");
    assert!(!c.has_unread(Duration::from_millis(300)), "one reply only");
    c.command("NOOP").expect(250, "2.0.0");
}

/// The published SMTP smuggling separators: each a way to fake an end of data that is not `<CRLF>.<CRLF>`.
const SMUGGLING: [&[u8]; 6] = [
    b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n",
];

#[test]
fn smuggling_payloads_never_produce_a_second_message() {
    let (_db, server, mut c) = mx(ServeOptions::default());
    let mut accepted = 0;
    for (i, sep) in SMUGGLING.iter().enumerate() {
        c.command("MAIL FROM:<sender@far.test>").expect(250, "");
        c.command("RCPT TO:<alice@example.test>").expect(250, "");
        c.command("DATA").expect(354, "");
        let mut payload = format!(
            "From: <sender@far.test>\r\nSubject: legit {i}\r\nMessage-ID: <legit{i}@far.test>\r\n\r\nhello"
        )
        .into_bytes();
        payload.extend_from_slice(sep);
        payload.extend_from_slice(
            b"MAIL FROM:<evil@far.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
              From: <evil@far.test>\r\nSubject: SMUGGLED\r\n\r\nsmuggled\r\n.\r\n",
        );
        c.send(&payload);
        let reply = c.read_reply();
        let sep_text = String::from_utf8_lossy(sep).escape_debug().to_string();
        match reply.code {
            250 => accepted += 1,
            // Bare CR / bare LF: refused as src/smtp/inbound/data's DataError::reply says.
            554 => {
                reply.expect(554, "5.5.2");
            }
            _ => panic!(
                "{sep_text}: expected 250 (normalized) or 554 5.5.2 (refused), got {}",
                reply.raw()
            ),
        }
        assert!(
            !c.has_unread(Duration::from_millis(300)),
            "{sep_text}: the server answered smuggled commands"
        );
        c.command("RSET").expect(250, "2.0.0");
    }
    let clean = message(FROM, ALICE, "after smuggling", "clean@far.test");
    c.send_mail(FROM, &[ALICE], &clean).expect(250, "2.0.0");
    let files = server.inbox(ALICE);
    assert_eq!(files.len(), accepted + 1, "one file per 250, never more");
    for file in &files {
        let d = Delivered::parse(file);
        let head_end = find(&d.rest, b"\r\n\r\n").unwrap_or(d.rest.len());
        let head = String::from_utf8_lossy(&d.rest[..head_end]);
        assert!(!head.contains("SMUGGLED"), "a smuggled message: {head}");
    }
    assert_eq!(
        Delivered::parse(files.last().expect("clean")).rest.len(),
        clean.len()
    );
}

#[test]
fn database_cut_gives_451_at_rcpt_and_service_resumes() {
    let db = TestDb::mariadb();
    let proxy = DbProxy::for_test_server();
    example(&db);
    let options = ServeOptions {
        database_url: Some(proxy.url_for(&db.url)),
        ..ServeOptions::default()
    };
    let server = TestServer::start(&db, options);
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    let first = message(FROM, ALICE, "before the cut", "before@far.test");
    c.send_mail(FROM, &[ALICE], &first).expect(250, "2.0.0");

    proxy.cut();
    for mut client in [c, SmtpClient::connect(server.smtp())] {
        // A pool may wait for a connection before giving up: allow it time, but it must answer.
        client.set_timeout(Duration::from_secs(60));
        client.command("EHLO client.far.test");
        client
            .command("MAIL FROM:<sender@far.test>")
            .expect(250, "");
        let started = Instant::now();
        client
            .command("RCPT TO:<alice@example.test>")
            .expect(451, "4.3.0 temporary local problem, try again later");
        eprintln!("451 after {:?}", started.elapsed());
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = SmtpClient::connect(server.smtp());
        c.set_timeout(Duration::from_secs(60));
        c.ehlo("client.far.test");
        c.command("MAIL FROM:<sender@far.test>").expect(250, "");
        let reply = c.command("RCPT TO:<alice@example.test>");
        if reply.code == 250 {
            c.command("DATA").expect(354, "");
            c.send(&data_bytes(&message(
                FROM,
                ALICE,
                "after",
                "after@far.test",
            )));
            c.read_reply().expect(250, "2.0.0");
            break;
        }
        reply.expect(451, "4.3.0");
        assert!(
            Instant::now() < deadline,
            "still 451 a minute after the restore"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.inbox(ALICE).len(), 2, "both messages, nothing lost");
}
