//! `mailctl serve` as the submission server for the hosted users, end to end: lettre (a real mail client)
//! submits over STARTTLS and implicit TLS with a certificate made at test time, and a raw client checks the
//! refusals byte for byte: AUTH before TLS, wrong or SMTP-disabled credentials, forged senders, MAIL before
//! AUTH, and the per-IP lockout after repeated failures.

use std::time::Duration;

use kit::TestDb;
use kit::serve::mail::{Delivered, PASSWORD, cli, example, message, message_id};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// Submits `msg` with lettre to `addr`, over STARTTLS (`implicit` false) or TLS from the first byte, trusting
/// only the test CA, authenticating as `user`.
fn lettre_send(
    server: &TestServer,
    implicit: bool,
    user: &str,
    password: &str,
    msg: Message,
) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
    let cert = server.cert.as_ref().expect("TLS");
    let root = Certificate::from_pem(cert.ca_pem.as_bytes()).expect("CA PEM");
    let tls = TlsParameters::builder(HOSTNAME.to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(root)
        .build_rustls()
        .expect("TLS parameters");
    let (addr, tls) = if implicit {
        (server.submissions(), Tls::Wrapper(tls))
    } else {
        (server.submission(), Tls::Required(tls))
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(tls)
        .hello_name(ClientId::Domain("laptop.example.test".into()))
        .credentials(Credentials::new(user.into(), password.into()))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(transport.send(msg))
}

fn lettre_message(to: &str, id: &str) -> Message {
    Message::builder()
        .from(format!("Alice <{ALICE}>").parse().expect("from"))
        .to(to.parse().expect("to"))
        .subject("submitted with lettre")
        .message_id(Some(format!("<{id}>")))
        .body(String::from(
            "Hello Bob,\r\nthis went through submission.\r\n",
        ))
        .expect("message")
}

/// Asserts `mailbox` got exactly one message, with Message-ID `id`, received with ESMTPSA over TLS 1.3.
fn assert_submitted(server: &TestServer, mailbox: &str, id: &str) {
    let files = server.inbox(mailbox);
    assert_eq!(files.len(), 1, "{mailbox}");
    let d = Delivered::parse(&files[0]);
    assert!(
        d.trace[0].starts_with(&format!("Authentication-Results: {HOSTNAME}")),
        "{:?}",
        d.trace
    );
    let received = &d.fields("Received")[0];
    assert!(received.contains("with ESMTPSA"), "{received}");
    assert!(received.contains("TLSv1.3"), "{received}");
    assert!(
        received.contains("from laptop.example.test ("),
        "{received}"
    );
    assert_eq!(message_id(&d.rest).as_deref(), Some(id));
}

/// A raw client on the submission listener after EHLO, STARTTLS and EHLO again.
fn submission(server: &TestServer) -> SmtpClient {
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c
}

fn lettre_submits_over_starttls_and_the_mailbox_gets_it(db: &TestDb) {
    example(db);
    let server = TestServer::start(db, ServeOptions::default());
    let reply = lettre_send(
        &server,
        false,
        ALICE,
        PASSWORD,
        lettre_message(BOB, "l1@example.test"),
    )
    .unwrap_or_else(|e| server.fail(&format!("lettre over STARTTLS: {e}")));
    assert_eq!(reply.code().to_string(), "250");
    assert_submitted(&server, BOB, "l1@example.test");
}

fn wrong_password_gets_535(db: &TestDb) {
    example(db);
    let server = TestServer::start(db, ServeOptions::default());
    let mut c = submission(&server);
    c.auth_plain(ALICE, "not the password")
        .expect(535, "5.7.8 authentication credentials invalid");
    c.auth_plain("nobody@example.test", PASSWORD)
        .expect(535, "5.7.8");
    c.auth_plain(ALICE, PASSWORD)
        .expect(235, "2.7.0 authentication successful");
    let err = lettre_send(
        &server,
        false,
        ALICE,
        "wrong",
        lettre_message(BOB, "l2@example.test"),
    )
    .expect_err("lettre with a wrong password");
    assert_eq!(
        err.status().map(|c| c.to_string()).as_deref(),
        Some("535"),
        "{err}"
    );
    assert!(server.inbox(BOB).is_empty());
}

fn smtp_disabled_or_inactive_mailbox_cannot_authenticate(db: &TestDb) {
    example(db);
    cli(db, "mailbox update alice@example.test --smtp false");
    cli(db, "mailbox disable bob@example.test");
    let server = TestServer::start(db, ServeOptions::default());
    let mut c = submission(&server);
    c.auth_plain(ALICE, PASSWORD).expect(535, "5.7.8");
    c.auth_plain(BOB, PASSWORD).expect(535, "5.7.8");
    c.auth_plain("carol@example.test", PASSWORD)
        .expect(235, "2.7.0");
}

fn authenticated_sender_may_only_use_its_own_addresses(db: &TestDb) {
    example(db);
    cli(db, "alias add sales@example.test alice@example.test");
    let server = TestServer::start(db, ServeOptions::default());
    let mut c = submission(&server);
    c.auth_plain(ALICE, PASSWORD).expect(235, "2.7.0");
    c.command("MAIL FROM:<bob@example.test>").expect(
        553,
        "5.7.1 sender address <bob@example.test> not owned by user alice@example.test",
    );
    c.command("MAIL FROM:<ceo@far.test>").expect(553, "5.7.1");
    c.command("MAIL FROM:<sales@example.test>").expect(250, "");
    c.command("RSET").expect(250, "");
    let msg = message(ALICE, BOB, "own address", "own@example.test");
    c.send_mail(ALICE, &[BOB], &msg).expect(250, "2.0.0");
    assert_eq!(server.inbox(BOB).len(), 1);
}

kit::on_both_backends!(
    lettre_submits_over_starttls_and_the_mailbox_gets_it,
    wrong_password_gets_535,
    smtp_disabled_or_inactive_mailbox_cannot_authenticate,
    authenticated_sender_may_only_use_its_own_addresses,
);

/// SQLite database with [`example`] and a server with `options`.
fn started(options: ServeOptions) -> (TestDb, TestServer) {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, options);
    (db, server)
}

#[test]
fn auth_before_starttls_is_refused_with_538_and_not_offered() {
    let (_db, server) = started(ServeOptions::default());
    let mut c = SmtpClient::connect(server.submission());
    let ehlo = c.ehlo("laptop.example.test");
    assert!(ehlo.has_keyword("STARTTLS"), "{}", ehlo.raw());
    assert!(
        !ehlo.has_keyword("AUTH"),
        "AUTH offered before TLS: {}",
        ehlo.raw()
    );
    c.auth_plain(ALICE, PASSWORD).expect(
        538,
        "5.7.11 encryption required for requested authentication mechanism",
    );
    c.command("AUTH LOGIN").expect(538, "5.7.11");
    c.starttls(server.root(), HOSTNAME);
    let ehlo = c.ehlo("laptop.example.test");
    assert_eq!(
        ehlo.keyword_line("AUTH"),
        Some("AUTH PLAIN LOGIN"),
        "{}",
        ehlo.raw()
    );
    assert!(!ehlo.has_keyword("STARTTLS"), "{}", ehlo.raw());
    // AUTH LOGIN, step by step.
    c.command("AUTH LOGIN").expect(334, "");
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    c.command(&b64(ALICE)).expect(334, "");
    c.command(&b64(PASSWORD)).expect(235, "2.7.0");
}

#[test]
fn mail_before_auth_on_submission_gets_530() {
    let (_db, server) = started(ServeOptions::default());
    let mut plain = SmtpClient::connect(server.submission());
    plain.ehlo("laptop.example.test");
    plain
        .command("MAIL FROM:<alice@example.test>")
        .expect(530, "5.7.0");
    let mut c = submission(&server);
    c.command("MAIL FROM:<alice@example.test>")
        .expect(530, "5.7.0 authentication required");
    c.command("RCPT TO:<bob@example.test>").expect(503, "");
}

#[test]
fn submissions_listener_speaks_tls_from_the_first_byte() {
    let (_db, server) = started(ServeOptions::default().with_submissions());
    let mut c = SmtpClient::connect_tls(server.submissions(), server.root(), HOSTNAME);
    c.banner.expect(220, HOSTNAME);
    let ehlo = c.ehlo("laptop.example.test");
    assert!(ehlo.has_keyword("AUTH"), "{}", ehlo.raw());
    assert!(!ehlo.has_keyword("STARTTLS"), "{}", ehlo.raw());
    c.auth_plain(ALICE, PASSWORD).expect(235, "2.7.0");
    c.command("QUIT").expect(221, "");
    lettre_send(
        &server,
        true,
        ALICE,
        PASSWORD,
        lettre_message(BOB, "l3@example.test"),
    )
    .unwrap_or_else(|e| server.fail(&format!("lettre over implicit TLS: {e}")));
    assert_submitted(&server, BOB, "l3@example.test");
}

#[test]
fn repeated_wrong_passwords_lock_the_ip_out_for_a_while() {
    let options = ServeOptions::default()
        .limit("auth_max_failures", 3)
        .limit("auth_lockout", 3);
    let (_db, server) = started(options);
    // One connection per attempt: the count is per client IP, not per session.
    let mut failures = 0;
    loop {
        let mut c = SmtpClient::connect(server.submission());
        if c.banner.code == 421 {
            break;
        }
        c.ehlo("laptop.example.test");
        c.starttls(server.root(), HOSTNAME);
        c.ehlo("laptop.example.test");
        let reply = c.auth_plain(ALICE, "wrong");
        if reply.code == 421 {
            reply.expect(421, "4.7.0 too many authentication failures");
            c.expect_closed();
            break;
        }
        reply.expect(535, "5.7.8");
        failures += 1;
        assert!(failures <= 3, "still 535 after {failures} failures");
    }
    // During the lockout even the right password is refused.
    let mut c = SmtpClient::connect(server.submission());
    if c.banner.code != 421 {
        c.ehlo("laptop.example.test");
        c.starttls(server.root(), HOSTNAME);
        c.ehlo("laptop.example.test");
        c.auth_plain(ALICE, PASSWORD).expect(421, "4.7.0");
    }
    std::thread::sleep(Duration::from_secs(4));
    let mut c = submission(&server);
    c.auth_plain(ALICE, PASSWORD).expect(235, "2.7.0");
}
