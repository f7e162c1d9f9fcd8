//! `mailctl serve` as an operator runs it: the Prometheus endpoint, SIGHUP certificate reloads, delivery over
//! LMTP (TCP and unix socket), the per-IP connection limit, the idle command timeout, SIGTERM with idle sessions,
//! and a database that is unreachable at start. (`config systemd` and its `ExecReload` line are covered by
//! `config_systemd`.)

mod fake_lmtp;
mod ops_client;

use std::time::{Duration, Instant};

use fake_lmtp::{FakeLmtp, Verdict};
use kit::TestDb;
use kit::http::get as http_get;
use kit::serve::mail::{Delivered, example, message};
use kit::serve::{HOSTNAME, ServeOptions, ServerCert, TestServer};
use kit::smtp_client::SmtpClient;
use ops_client::{eventually, leaf_der, set_server_key, starttls_peer};

const FROM: &str = "sender@far.test";
const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

// ---------------------------------------------------------------------------------------------- metrics

fn metrics_count_accepted_and_relay_refused_mail_and_serve_404_elsewhere(db: &TestDb) {
    example(db);
    let mut server = TestServer::configure(db, ServeOptions::default());
    set_server_key(&server, "metrics", "127.0.0.1:0");
    server.launch();
    let metrics = server.addr("metrics");
    assert!(metrics.ip().is_loopback(), "{metrics}");

    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    let msg = message(FROM, ALICE, "metrics", "metrics@far.test");
    c.send_mail(FROM, &[ALICE], &msg)
        .expect(250, "2.0.0 Ok: queued as ");
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    c.command("RCPT TO:<victim@elsewhere.test>")
        .expect(554, "5.7.1 <victim@elsewhere.test>: relay access denied");
    c.command("RSET").expect(250, "2.0.0");

    let r = http_get(metrics, "/metrics");
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{r:?}");
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{r:?}"
    );
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str()),
        "{r:?}"
    );
    let lines: Vec<&str> = r.body.lines().collect();
    for expected in [
        "# TYPE mailctl_smtp_connections_total counter",
        "mailctl_smtp_connections_total{listener=\"smtp\"} 1",
        "mailctl_smtp_connections_total{listener=\"submission\"} 0",
        "mailctl_smtp_connections_active{listener=\"smtp\"} 1",
        "mailctl_smtp_messages_accepted_total{listener=\"smtp\"} 1",
        "mailctl_smtp_messages_accepted_total{listener=\"submission\"} 0",
        "mailctl_smtp_messages_rejected_total{reason=\"relay\"} 1",
        "mailctl_smtp_messages_rejected_total{reason=\"unknown_user\"} 0",
        "# TYPE mailctl_smtp_delivery_seconds histogram",
        "mailctl_smtp_delivery_seconds_bucket{le=\"+Inf\"} 1",
        "mailctl_smtp_delivery_seconds_count 1",
    ] {
        assert!(
            lines.contains(&expected),
            "missing line {expected:?} in:\n{}",
            r.body
        );
    }
    let sum = lines
        .iter()
        .find_map(|l| l.strip_prefix("mailctl_smtp_delivery_seconds_sum "))
        .unwrap_or_else(|| panic!("no _sum line:\n{}", r.body));
    let sum: f64 = sum.parse().expect("sum is a number");
    assert!(sum > 0.0 && sum < 60.0, "delivery seconds sum {sum}");

    for path in ["/", "/metricsx", "/favicon.ico"] {
        let r = http_get(metrics, path);
        assert_eq!(r.status, "HTTP/1.1 404 Not Found", "{path}: {r:?}");
        assert!(!r.body.contains("mailctl_smtp"), "{path}: {r:?}");
    }
    c.command("QUIT").expect(221, "2.0.0");
}

// ---------------------------------------------------------------------------------------------- TLS reload

#[test]
fn sighup_reloads_the_certificate_for_new_sessions_and_keeps_old_ones() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, ServeOptions::default());
    let a = server.cert.as_ref().expect("TLS on");
    let b = ServerCert::new(&[HOSTNAME, "127.0.0.1"]);
    let (a_leaf, b_leaf) = (leaf_der(&a.cert_pem), leaf_der(&b.cert_pem));
    let roots = [&a.ca, &b.ca];
    for addr in [server.smtp(), server.submission()] {
        assert!(
            starttls_peer(addr, &roots, HOSTNAME) == a_leaf,
            "{addr}: certificate A at start"
        );
    }
    // A session under certificate A that stays open across the reloads.
    let mut old = SmtpClient::connect(server.submission());
    old.ehlo("old.far.test");
    old.starttls(&a.ca, HOSTNAME);
    old.ehlo("old.far.test");

    std::fs::write(server.path("cert.pem"), &b.cert_pem).expect("write cert B");
    std::fs::write(server.path("key.pem"), &b.key_pem).expect("write key B");
    server.signal(libc::SIGHUP);
    eventually("new sessions see certificate B", || {
        starttls_peer(server.submission(), &roots, HOSTNAME) == b_leaf
    });
    assert!(
        starttls_peer(server.smtp(), &roots, HOSTNAME) == b_leaf,
        "the MX listener serves B too"
    );
    old.command("NOOP").expect(250, "2.0.0");

    // A renewal gone wrong: a new certificate with a broken key, then with a key that does not match.
    let c = ServerCert::new(&[HOSTNAME, "127.0.0.1"]);
    let failures = |s: &TestServer| s.log().matches("TLS reload failed").count();
    let broken = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
    for (n, key) in [(1, broken), (2, b.key_pem.as_str())] {
        std::fs::write(server.path("cert.pem"), &c.cert_pem).expect("write cert C");
        std::fs::write(server.path("key.pem"), key).expect("write bad key");
        server.signal(libc::SIGHUP);
        eventually("the daemon logs the failed reload", || {
            failures(&server) >= n
        });
        let roots = [&a.ca, &b.ca, &c.ca];
        assert!(
            starttls_peer(server.submission(), &roots, HOSTNAME) == b_leaf,
            "bad reload #{n}: the previous certificate B stays in use"
        );
        old.command("NOOP").expect(250, "2.0.0");
    }
    let mut fresh = SmtpClient::connect(server.smtp());
    fresh.ehlo("fresh.far.test");
    let msg = message(FROM, ALICE, "after reloads", "reload@far.test");
    fresh.send_mail(FROM, &[ALICE], &msg).expect(250, "2.0.0");
    assert_eq!(server.inbox(ALICE).len(), 1);
    old.command("QUIT").expect(221, "2.0.0");
}

// ---------------------------------------------------------------------------------------------- LMTP

/// A server for `db` delivering to `lmtp`, with a client that has said EHLO on its MX listener.
fn lmtp_server(db: &TestDb, lmtp: &FakeLmtp) -> (TestServer, SmtpClient) {
    example(db);
    let mut server = TestServer::configure(db, ServeOptions::default());
    set_server_key(&server, "delivery", &lmtp.delivery);
    server.launch();
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    (server, c)
}

/// Sends one message to alice and bob, asserts the 250, and checks what the LMTP server received.
fn delivers_both_recipients_over_lmtp(server: &TestServer, c: &mut SmtpClient, lmtp: &FakeLmtp) {
    let msg = message(FROM, ALICE, "lmtp", "lmtp@far.test");
    let reply = c.send_mail(FROM, &[ALICE, BOB], &msg);
    reply.expect(250, "2.0.0 Ok: queued as ");
    let queue_id = reply.first()["2.0.0 Ok: queued as ".len()..].trim();

    let t = lmtp.next();
    assert_eq!(t.lhlo, format!("LHLO {HOSTNAME}"));
    assert!(
        t.mail.starts_with(&format!("MAIL FROM:<{FROM}>")),
        "{}",
        t.mail
    );
    let mut rcpts = t.rcpts.clone();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [format!("RCPT TO:<{ALICE}>"), format!("RCPT TO:<{BOB}>")]
    );
    let data = t.data.expect("DATA was sent");
    let d = Delivered::parse(&data);
    assert_eq!(
        String::from_utf8_lossy(&d.rest),
        String::from_utf8_lossy(&msg),
        "the message after the trace fields, byte for byte"
    );
    assert!(
        d.trace[0].starts_with(&format!("Authentication-Results: {HOSTNAME}")),
        "{:?}",
        d.trace
    );
    let received = d.fields("Received");
    assert_eq!(received.len(), 1, "{:?}", d.trace);
    for part in [
        "Received: from client.far.test (",
        "[127.0.0.1])",
        &format!("by {HOSTNAME} (mailctl) with ESMTP"),
        &format!("id {queue_id}"),
    ] {
        assert!(received[0].contains(part), "{part:?} in {}", received[0]);
    }
    assert!(!lmtp.more(Duration::from_millis(300)), "one LMTP session");
    assert!(
        TestServer::messages(&server.maildir(ALICE)).is_empty()
            && TestServer::messages(&server.maildir(BOB)).is_empty(),
        "nothing written to the Maildirs when delivering over LMTP"
    );
}

fn lmtp_tcp_delivery_passes_every_recipient_and_the_trace_headers(db: &TestDb) {
    let lmtp = FakeLmtp::tcp(Verdict::Accept);
    let (server, mut c) = lmtp_server(db, &lmtp);
    delivers_both_recipients_over_lmtp(&server, &mut c, &lmtp);
}

#[test]
fn lmtp_over_a_unix_socket_delivers_too() {
    let db = TestDb::sqlite();
    let lmtp = FakeLmtp::unix(Verdict::Accept);
    assert!(lmtp.delivery.starts_with("lmtp:/"), "{}", lmtp.delivery);
    let (server, mut c) = lmtp_server(&db, &lmtp);
    delivers_both_recipients_over_lmtp(&server, &mut c, &lmtp);
}

#[test]
fn lmtp_452_for_every_recipient_gives_the_smtp_client_451() {
    for verdict in [Verdict::RcptTempfail, Verdict::DataTempfail] {
        let db = TestDb::sqlite();
        let lmtp = FakeLmtp::tcp(verdict);
        let (server, mut c) = lmtp_server(&db, &lmtp);
        let msg = message(FROM, ALICE, "lmtp tempfail", "tempfail@far.test");
        c.send_mail(FROM, &[ALICE, BOB], &msg)
            .expect(451, "4.3.0 temporary local problem, try again later");
        let t = lmtp.next();
        assert_eq!(t.rcpts.len(), 2, "{verdict:?}: {t:?}");
        assert_eq!(
            t.data.is_some(),
            verdict == Verdict::DataTempfail,
            "{verdict:?}"
        );
        // The session goes on: the client may retry in the same connection.
        c.command("NOOP").expect(250, "2.0.0");
        assert!(server.inbox(ALICE).is_empty(), "{verdict:?}");
    }
}

// ---------------------------------------------------------------------------------------------- limits

#[test]
fn fourth_connection_from_one_ip_gets_421_and_a_freed_slot_is_reusable() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(
        &db,
        ServeOptions::default().limit("max_connections_per_ip", 3),
    );
    let mut open: Vec<SmtpClient> = (0..3)
        .map(|_| {
            let c = SmtpClient::connect(server.smtp());
            assert_eq!(c.banner.raw(), format!("220 {HOSTNAME} ESMTP mailctl"));
            c
        })
        .collect();
    // The limit counts every listener of the daemon, not each one apart.
    for addr in [server.smtp(), server.submission()] {
        let mut fourth = SmtpClient::connect(addr);
        fourth.banner.expect(421, "4.7.0");
        fourth.expect_closed();
    }
    // The three admitted sessions are unaffected.
    for c in &mut open {
        c.command("NOOP").expect(250, "2.0.0");
    }
    let mut first = open.remove(0);
    first.command("QUIT").expect(221, "2.0.0");
    first.expect_closed();
    drop(first);
    // The slot is returned when the session task ends, a moment after the client saw the close.
    let mut banner = None;
    eventually("a new connection is admitted", || {
        let c = SmtpClient::connect(server.smtp());
        let admitted = c.banner.code != 421;
        banner = Some(c);
        admitted
    });
    let mut c = banner.expect("connected");
    assert_eq!(c.banner.raw(), format!("220 {HOSTNAME} ESMTP mailctl"));
    c.ehlo("client.far.test");
}

#[test]
fn idle_client_gets_421_4_4_2_after_the_command_timeout() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, ServeOptions::default().limit("command_timeout", 1));
    let started = Instant::now();
    let mut idle = SmtpClient::connect(server.smtp());
    // A client that keeps talking is never cut off, however long the session lasts.
    let mut busy = SmtpClient::connect(server.smtp());
    busy.ehlo("busy.far.test");
    while started.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(400));
        busy.command("NOOP").expect(250, "2.0.0");
    }
    idle.read_reply().expect(421, "4.4.2");
    idle.expect_closed();
    busy.command("QUIT").expect(221, "2.0.0");

    // Also mid-transaction.
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    c.command("MAIL FROM:<sender@far.test>").expect(250, "");
    let t = Instant::now();
    c.set_timeout(Duration::from_secs(5));
    c.read_reply().expect(421, "4.4.2");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "timed out after {:?}",
        t.elapsed()
    );
    c.expect_closed();
    assert!(server.inbox(ALICE).is_empty());
}

// ---------------------------------------------------------------------------------------------- shutdown

#[test]
fn sigterm_sends_421_4_3_2_to_idle_sessions_and_exits_0_promptly() {
    let db = TestDb::sqlite();
    example(&db);
    let mut server = TestServer::start(&db, ServeOptions::default());
    let root = server.root().clone();
    let mut greeted = SmtpClient::connect(server.smtp());
    let mut after_mail = SmtpClient::connect(server.smtp());
    after_mail.ehlo("client.far.test");
    let msg = message(FROM, ALICE, "before stop", "stop@far.test");
    after_mail
        .send_mail(FROM, &[ALICE], &msg)
        .expect(250, "2.0.0");
    let mut tls = SmtpClient::connect(server.submission());
    tls.ehlo("client.far.test");
    tls.starttls(&root, HOSTNAME);
    tls.ehlo("client.far.test");

    let t = Instant::now();
    server.signal(libc::SIGTERM);
    for (name, c) in [
        ("greeted", &mut greeted),
        ("after mail", &mut after_mail),
        ("under TLS", &mut tls),
    ] {
        let bye = c.read_reply();
        assert_eq!(
            bye.raw(),
            format!("421 4.3.2 {HOSTNAME} shutting down, try again later"),
            "{name}"
        );
        c.expect_closed();
    }
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(server.inbox(ALICE).len(), 1);
}

// ---------------------------------------------------------------------------------------------- start-up

#[test]
fn unreachable_database_at_start_exits_3_with_one_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let db = TestDb::sqlite();
    let options = ServeOptions {
        database_url: Some(format!("mysql://mailctl:s3cretpw@127.0.0.1:{port}/mail")),
        ..ServeOptions::default()
    };
    let server = TestServer::configure(&db, options);
    for args in [
        &["serve", "--listen", "smtp=127.0.0.1:0"][..],
        &["serve", "--check-config"][..],
    ] {
        let t = Instant::now();
        let run = server
            .run(args)
            .fails(3, "cannot reach the database")
            .fails(3, &format!("127.0.0.1:{port}"));
        assert!(!run.stderr.contains("s3cretpw"), "{args:?}: {}", run.stderr);
        assert!(
            !run.stdout.contains("ready") && !run.stdout.contains("listening"),
            "{args:?}: {}",
            run.stdout
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{args:?}: {:?}",
            t.elapsed()
        );
    }
}

kit::on_both_backends!(
    metrics_count_accepted_and_relay_refused_mail_and_serve_404_elsewhere,
    lmtp_tcp_delivery_passes_every_recipient_and_the_trace_headers,
);
