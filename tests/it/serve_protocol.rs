//! `mailctl serve` speaking SMTP: the greeting and EHLO keywords, the simple commands and their codes,
//! commands out of order, STARTTLS command injection, graceful shutdown on SIGTERM with a transaction in
//! flight, and `serve --check-config` / start-up errors (exit 2 with one line).

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use kit::TestDb;
use kit::serve::mail::{Delivered, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::{SmtpClient, data_bytes};

const FROM: &str = "sender@far.test";
const ALICE: &str = "alice@example.test";

fn started(options: ServeOptions) -> (TestDb, TestServer) {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, options);
    (db, server)
}

#[test]
fn greeting_and_ehlo_keywords() {
    let (_db, server) = started(ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    assert_eq!(c.banner.raw(), format!("220 {HOSTNAME} ESMTP mailctl"));
    let ehlo = c.ehlo("client.far.test");
    assert!(ehlo.first().starts_with(HOSTNAME), "{}", ehlo.raw());
    for keyword in [
        "PIPELINING",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "STARTTLS",
    ] {
        assert!(
            ehlo.has_keyword(keyword),
            "{keyword} missing: {}",
            ehlo.raw()
        );
    }
    assert_eq!(
        ehlo.keyword_line("SIZE"),
        Some("SIZE 26214400"),
        "{}",
        ehlo.raw()
    );
    assert!(!ehlo.has_keyword("AUTH"), "{}", ehlo.raw());

    // Without a certificate there is no STARTTLS to offer.
    let (_db, plain) = started(ServeOptions {
        tls: false,
        ..ServeOptions::default()
    });
    let mut c = SmtpClient::connect(plain.smtp());
    let ehlo = c.ehlo("client.far.test");
    assert!(!ehlo.has_keyword("STARTTLS"), "{}", ehlo.raw());
    assert!(ehlo.has_keyword("PIPELINING"), "{}", ehlo.raw());
}

#[test]
fn helo_noop_rset_vrfy_quit_codes() {
    let (_db, server) = started(ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    c.command("HELO client.far.test").expect(250, HOSTNAME);
    c.command("NOOP").expect(250, "2.0.0");
    c.command("RSET").expect(250, "2.0.0");
    c.command("VRFY alice@example.test").expect(252, "2.5.0");
    // A HELO session can send mail too.
    let msg = message(FROM, ALICE, "helo", "helo@far.test");
    c.send_mail(FROM, &[ALICE], &msg).expect(250, "2.0.0");
    let received = Delivered::parse(&server.inbox(ALICE)[0]).fields("Received");
    assert!(received[0].contains("with SMTP"), "{received:?}");
    c.command("QUIT").expect(221, "2.0.0");
    c.expect_closed();
}

#[test]
fn unknown_command_gets_500() {
    let (_db, server) = started(ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    c.command("FROBNICATE now").expect(500, "");
    c.command("NOOP").expect(250, "2.0.0");
}

#[test]
fn commands_out_of_order_get_503() {
    let (_db, server) = started(ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    c.command("RCPT TO:<alice@example.test>").expect(503, "");
    c.command("DATA").expect(503, "");
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    // RFC 5321 3.3: DATA without an accepted recipient may get 503 or 554 "no valid recipients".
    let data = c.command("DATA");
    assert!(matches!(data.code, 503 | 554), "{}", data.raw());
    c.command("RCPT TO:<alice@example.test>").expect(250, "");
    c.command("RSET").expect(250, "");
    c.command("DATA").expect(503, "");
    assert!(server.inbox(ALICE).is_empty());
}

#[test]
fn starttls_discards_commands_pipelined_before_the_handshake() {
    let (_db, server) = started(ServeOptions::default());
    for addr in [server.smtp(), server.submission()] {
        let mut c = SmtpClient::connect(addr);
        c.ehlo("client.far.test");
        c.send(b"STARTTLS\r\nNOOP\r\n");
        c.read_reply().expect(220, "");
        assert!(
            !c.has_unread(Duration::from_millis(300)),
            "{addr}: the injected NOOP was answered in plaintext"
        );
        c.upgrade(server.root(), HOSTNAME);
        // The first reply under TLS must be the EHLO's, not the injected NOOP's.
        let reply = c.command("EHLO client.far.test");
        assert!(
            reply.code == 250 && reply.lines.len() > 1 && reply.first().starts_with(HOSTNAME),
            "{addr}: first reply under TLS is not the EHLO reply: {}",
            reply.raw()
        );
        assert!(
            !c.has_unread(Duration::from_millis(300)),
            "{addr}: more replies than commands"
        );
        c.command("NOOP").expect(250, "2.0.0");
    }
}

/// Whether a fresh connection to `addr` is greeted with 220 (within 2 s).
fn greeted(addr: std::net::SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    tcp.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 3];
    matches!(tcp.read_exact(&mut buf), Ok(()) if &buf == b"220")
}

#[test]
fn sigterm_lets_the_transaction_in_flight_finish_then_exits_0() {
    let (_db, mut server) = started(ServeOptions::default());
    let smtp = server.smtp();
    let mut c = SmtpClient::connect(smtp);
    c.ehlo("client.far.test");
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<alice@example.test>").expect(250, "");
    c.command("DATA").expect(354, "");
    let msg = message(FROM, ALICE, "in flight", "flight@far.test");
    let data = data_bytes(&msg);
    let (first, rest) = data.split_at(data.len() / 2);
    c.send(first);
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!greeted(smtp), "a new connection was greeted after SIGTERM");
    c.send(rest);
    c.read_reply().expect(250, "2.0.0");
    match c.try_command("QUIT") {
        Ok(reply) => assert!(matches!(reply.code, 221 | 421), "{}", reply.raw()),
        Err(e) => eprintln!("QUIT after shutdown: {e}"),
    }
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        server.log()
    );
    let files = server.inbox(ALICE);
    assert_eq!(files.len(), 1);
    assert_eq!(Delivered::parse(&files[0]).rest, msg);
}

#[test]
fn check_config_accepts_a_good_config() {
    let db = TestDb::sqlite();
    let server = TestServer::configure(&db, ServeOptions::default());
    let run = server.run(&["serve", "--check-config"]).ok();
    assert_eq!(run.stdout.trim(), "config ok");
}

#[test]
fn bad_listener_address_exits_2_with_one_line() {
    let db = TestDb::sqlite();
    let server = TestServer::configure(&db, ServeOptions::default());
    for extra in [&[][..], &["--check-config"][..]] {
        let mut args = vec!["serve", "--listen", "smtp=not-an-address"];
        args.extend_from_slice(extra);
        server.run(&args).fails(2, "not-an-address");
        let mut args = vec!["serve", "--listen", "bogus=127.0.0.1:0"];
        args.extend_from_slice(extra);
        server.run(&args).fails(2, "bogus");
    }
}

#[test]
fn missing_tls_key_exits_2_naming_the_file() {
    let db = TestDb::sqlite();
    let server = TestServer::configure(&db, ServeOptions::default());
    let key = server.path("key.pem");
    std::fs::remove_file(&key).expect("remove key");
    let key = key.to_string_lossy().into_owned();
    server.run(&["serve", "--check-config"]).fails(2, &key);
    server
        .run(&["serve", "--listen", "smtp=127.0.0.1:0"])
        .fails(2, &key);
}

/// The start-up checks catch a setup that would answer every message with 451: a Maildir root that does not
/// exist, a spool directory that cannot be created. `--check-config` lists every problem on a line of its own;
/// `serve` refuses to start with the same list, before anything is bound.
#[test]
fn a_broken_setup_is_refused_at_start_with_one_line_per_problem() {
    let db = TestDb::sqlite();
    let blocker = db.path("not-a-directory");
    std::fs::write(&blocker, "").expect("a file where a directory should be");
    let spool = toml::Value::from(blocker.join("spool").to_string_lossy().into_owned());
    let server = TestServer::configure(
        &db,
        ServeOptions::default().server_key("queue.spool_dir", spool),
    );
    std::fs::remove_dir(&server.vmail_root).expect("remove the Maildir root");
    let vmail = server.vmail_root.to_string_lossy().into_owned();
    for args in [&["serve", "--check-config"][..], &["serve"][..]] {
        let run = server.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}: nothing bound or reported");
        let lines: Vec<&str> = run.stderr.lines().collect();
        let listed = |key: &str| {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("  {key}: ")))
                .count()
        };
        assert_eq!(listed("mail.vmail_root"), 1, "{args:?}: {}", run.stderr);
        assert_eq!(
            listed("server.queue.spool_dir"),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("{vmail} does not exist"))
                && run.stderr.contains("is not a directory"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(
            lines.last().copied(),
            Some("error: 2 problems with the setup of serve (listed above)"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // One problem alone is the usual one error line.
    std::fs::create_dir(&server.vmail_root).expect("recreate the Maildir root");
    std::fs::remove_file(&blocker).expect("remove the blocker");
    std::fs::remove_dir(&server.vmail_root).expect("remove the Maildir root again");
    server
        .run(&["serve", "--check-config"])
        .fails(2, "mail.vmail_root: ");
}

/// An LMTP server that does not answer is a warning, not a refusal: the daemon can start and defer.
#[test]
fn an_lmtp_target_that_does_not_answer_is_a_warning() {
    let db = TestDb::sqlite();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = closed.local_addr().expect("address");
    drop(closed);
    let delivery = toml::Value::from(format!("lmtp:{addr}"));
    let server = TestServer::configure(
        &db,
        ServeOptions::default().server_key("delivery", delivery),
    );
    let run = server.run(&["serve", "--check-config"]).ok();
    assert_eq!(run.stdout.trim(), "config ok");
    assert!(
        run.stderr
            .starts_with("warning: server.delivery: the LMTP server at ")
            && run.stderr.contains(&addr.to_string())
            && run.stderr.lines().count() == 1,
        "{}",
        run.stderr
    );
}
