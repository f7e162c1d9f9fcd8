//! `mailctl serve` against hostile clients, one test per attack: SMTP smuggling with every fake end of data
//! (lock-step and with the whole transaction in one write), BDAT although CHUNKING is not offered, commands
//! sent before the greeting, over-long lines and NUL bytes in commands and in DATA, a million pipelined RCPTs,
//! slowloris in a command line and in DATA, two thousand connections from one IP, and relay attempts with
//! every address trick on the MX listener.
//!
//! Every test asserts the exact reply (code and enhanced code), that nothing was delivered or queued where it
//! must not be, and that afterwards a fresh connection still completes a delivery ([`still_serves`]).
//!
//! Covered elsewhere and not repeated here: AUTH brute force on submission
//! (`serve_submission::repeated_wrong_passwords_lock_the_ip_out_for_a_while`), AUTH on the MX listener
//! (`serve_inbound_limits::auth_is_neither_offered_nor_accepted_on_the_mx_listener`), STARTTLS command
//! injection on both listeners (`serve_protocol::starttls_discards_commands_pipelined_before_the_handshake`),
//! a 100 kB command line (`serve_inbound_limits::over_long_command_line_is_refused_with_500_not_truncated`),
//! the per-IP limit at small scale (`serve_ops::fourth_connection_from_one_ip_gets_421_and_a_freed_slot_is_reusable`).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kit::TestDb;
use kit::serve::mail::{Delivered, cli, example, find, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::{SmtpClient, data_bytes};

const FROM: &str = "sender@far.test";
const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// SQLite with [`example`] (plus `extra` provisioning), and a daemon with `options` (its outbound queue is a
/// spool in its private directory, as every test server's, so `mailctl queue list` shows this daemon's queue
/// and nobody else's).
fn start_with(options: ServeOptions, extra: impl FnOnce(&TestDb)) -> (TestDb, TestServer) {
    let db = TestDb::sqlite();
    example(&db);
    extra(&db);
    let server = TestServer::start(&db, options);
    (db, server)
}

fn start(options: ServeOptions) -> (TestDb, TestServer) {
    start_with(options, |_| {})
}

/// A fresh client on the MX listener delivers a message to alice (250 2.0.0, and the file is there).
#[track_caller]
fn still_serves(server: &TestServer, tag: &str) {
    let before = server.inbox(ALICE).len();
    let mut c = SmtpClient::connect(server.smtp());
    c.banner.expect(220, HOSTNAME);
    c.ehlo("client.far.test");
    let msg = message(FROM, ALICE, tag, &format!("{tag}@far.test"));
    c.send_mail(FROM, &[ALICE], &msg).expect(250, "2.0.0");
    c.command("QUIT").expect(221, "2.0.0");
    let inbox = server.inbox(ALICE);
    assert_eq!(inbox.len(), before + 1, "after {tag}");
    assert!(
        inbox.iter().any(|m| Delivered::parse(m).rest == msg),
        "{tag}: the message is not in alice's INBOX"
    );
}

/// The entries of the daemon's outbound queue, as `mailctl queue list --json` shows them.
fn queue(server: &TestServer) -> Vec<serde_json::Value> {
    let run = server.run(&["queue", "list", "--json"]).ok();
    run.json().as_array().expect("a JSON array").clone()
}

/// The daemon's peak resident memory (VmHWM) in kB.
fn peak_rss_kb(server: &TestServer) -> u64 {
    let pid = server.pid().expect("daemon running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Polls `done` every 50 ms for up to 10 s.
#[track_caller]
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A bare socket for the attacks the line-oriented client cannot make (talking first, dribbling bytes,
/// streaming a flood while reading).
struct Raw {
    reader: BufReader<TcpStream>,
    tcp: TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        tcp.set_nodelay(true).expect("nodelay");
        Raw {
            reader: BufReader::new(tcp.try_clone().expect("clone")),
            tcp,
        }
    }

    /// One reply line without its CRLF; `None` at end of stream (or reset).
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).expect("send");
    }

    /// Sends `line` + CRLF and asserts the (single-line) reply starts with `expected`.
    #[track_caller]
    fn command(&mut self, line: &str, expected: &str) {
        self.send(format!("{line}\r\n").as_bytes());
        let reply = self.line().unwrap_or_default();
        assert!(reply.starts_with(expected), "{line}: got {reply:?}");
    }

    /// Everything the server still sends, up to its close.
    fn rest(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading to the end: {e} (after {out:?})"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------- smuggling

/// The published fake ends of data, each with the refusal it earns: the first bare CR or LF in it.
const SEPARATORS: [(&[u8], &str); 6] = [
    (b"\n.\n", "Bare <LF>"),
    (b"\r.\r", "Bare <CR>"),
    (b"\n.\r\n", "Bare <LF>"),
    (b"\r.\r\n", "Bare <CR>"),
    (b"\r\n.\r", "Bare <CR>"),
    (b"\r\n.\n", "Bare <LF>"),
];

/// A message to alice with `sep` after its first line, then a whole second transaction (to bob, from a
/// forged sender) and the real end of data.
fn smuggling_payload(i: usize, sep: &[u8]) -> Vec<u8> {
    let mut payload = format!(
        "From: <{FROM}>\r\nSubject: legit {i}\r\nMessage-ID: <legit{i}@far.test>\r\n\r\nhello"
    )
    .into_bytes();
    payload.extend_from_slice(sep);
    payload.extend_from_slice(
        b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
          From: <ceo@example.test>\r\nSubject: SMUGGLED\r\n\r\nwire the money\r\n.\r\n",
    );
    payload
}

#[test]
fn smuggling_every_fake_end_in_lock_step_and_pipelined_is_refused_554_5_5_2_and_delivers_nothing() {
    let (_db, server) = start(ServeOptions::default());
    for (i, (sep, bare)) in SEPARATORS.iter().enumerate() {
        let shown = String::from_utf8_lossy(sep).escape_debug().to_string();
        let expected = format!("5.5.2 {bare} received; lines must end with <CR><LF>");
        let mut c = SmtpClient::connect(server.smtp());
        c.ehlo("client.far.test");

        // Lock-step: each command waits for its reply, the payload goes in one write.
        c.command(&format!("MAIL FROM:<{FROM}>"))
            .expect(250, "2.1.0");
        c.command(&format!("RCPT TO:<{ALICE}>"))
            .expect(250, "2.1.5");
        c.command("DATA").expect(354, "");
        c.send(&smuggling_payload(i, sep));
        c.read_reply().expect(554, &expected);
        // Were the smuggled MAIL/RCPT/DATA run, their replies (250 2.1.0, ...) would come before this one.
        c.command("NOOP").expect(250, "2.0.0 Ok");

        // PIPELINING: the whole transaction, the payload and a NOOP in one write.
        let mut all = format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n").into_bytes();
        all.extend_from_slice(&smuggling_payload(i + 100, sep));
        all.extend_from_slice(b"NOOP\r\n");
        c.send(&all);
        c.read_reply().expect(250, "2.1.0");
        c.read_reply().expect(250, "2.1.5");
        c.read_reply().expect(354, "");
        c.read_reply().expect(554, &expected);
        let next = c.read_reply();
        assert_eq!(
            (next.code, next.first()),
            (250, "2.0.0 Ok"),
            "{shown}: a reply to a smuggled command"
        );
        c.command("QUIT").expect(221, "2.0.0");
        assert!(server.inbox(ALICE).is_empty(), "{shown}: alice got mail");
        assert!(server.inbox(BOB).is_empty(), "{shown}: bob got mail");
    }
    still_serves(&server, "after-smuggling");
    for file in server.inbox(ALICE) {
        assert!(find(&file, b"SMUGGLED").is_none() && find(&file, b"legit").is_none());
    }
    assert!(queue(&server).is_empty());
}

#[test]
fn bdat_is_not_offered_and_its_chunk_is_skipped_never_run_as_commands() {
    let (_db, server) = start(ServeOptions::default().limit("max_message_size", 100_000));
    let mut c = SmtpClient::connect(server.smtp());
    let ehlo = c.ehlo("client.far.test");
    for keyword in ["CHUNKING", "BINARYMIME"] {
        assert!(!ehlo.has_keyword(keyword), "{keyword}: {}", ehlo.raw());
    }
    c.command(&format!("MAIL FROM:<{FROM}>"))
        .expect(250, "2.1.0");
    c.command(&format!("RCPT TO:<{ALICE}>"))
        .expect(250, "2.1.5");
    // A chunk that is itself a transaction: read as commands it would deliver to bob.
    let chunk = b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
                  Subject: SMUGGLED\r\n\r\nwire the money\r\n.\r\n";
    let mut write = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
    write.extend_from_slice(chunk);
    write.extend_from_slice(b"NOOP\r\n");
    c.send(&write);
    c.read_reply()
        .expect(502, "5.5.1 BDAT not implemented (CHUNKING is not offered)");
    c.read_reply().expect(250, "2.0.0 Ok");
    // The transaction is still open and DATA still works for it.
    let msg = message(FROM, ALICE, "after bdat", "after-bdat@far.test");
    c.command("DATA").expect(354, "");
    c.send(&data_bytes(&msg));
    c.read_reply().expect(250, "2.0.0");
    assert!(server.inbox(BOB).is_empty(), "the chunk delivered to bob");
    assert_eq!(server.inbox(ALICE).len(), 1);

    // A chunk larger than the size limit is not waited for.
    c.command(&format!("MAIL FROM:<{FROM}>"))
        .expect(250, "2.1.0");
    c.command(&format!("RCPT TO:<{ALICE}>"))
        .expect(250, "2.1.5");
    c.command("BDAT 100001 LAST").expect(552, "5.3.4");
    c.expect_closed();
    assert_eq!(server.inbox(ALICE).len(), 1);
    still_serves(&server, "after-bdat");
}

// ---------------------------------------------------------------------------------------------- pregreet

#[test]
fn client_talking_before_the_greeting_gets_554_5_5_0_and_is_disconnected() {
    let (_db, server) = start(ServeOptions::default().limit("greet_pause", 1));
    let blind = format!(
        "EHLO bot.far.test\r\nMAIL FROM:<{FROM}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n\
         Subject: pregreet\r\n\r\nspam\r\n.\r\nQUIT\r\n"
    );
    for addr in [server.smtp(), server.submission()] {
        let mut raw = Raw::connect(addr);
        raw.send(blind.as_bytes());
        assert_eq!(
            raw.rest(),
            format!(
                "554 5.5.0 {HOSTNAME} Error: SMTP protocol synchronization \
                 (command sent before the greeting)\r\n"
            ),
            "{addr}"
        );
    }
    assert!(server.inbox(ALICE).is_empty());
    // A client that waits for the greeting is served (after the pause).
    let started = Instant::now();
    still_serves(&server, "after-pregreet");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "greet_pause = 1 but greeted after {:?}",
        started.elapsed()
    );
    assert!(queue(&server).is_empty());
    // The pause is bounded: every connection waits that long for its greeting.
    let db = TestDb::sqlite();
    let too_long = TestServer::configure(&db, ServeOptions::default().limit("greet_pause", 31));
    too_long
        .run(&["serve", "--check-config"])
        .fails(2, "server.limits.greet_pause: at most 30 seconds");
}

// ---------------------------------------------------------------------------------------------- long lines, NUL

#[test]
fn command_line_of_2048_bytes_is_read_and_of_2049_refused_500_5_5_2() {
    let (_db, server) = start(ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    for (len, code, text) in [(2048, 250, "2.0.0 Ok"), (2049, 500, "5.5.2 Line too long")] {
        let mut line = b"NOOP ".to_vec();
        line.resize(len - 2, b'x');
        line.extend_from_slice(b"\r\n");
        c.send(&line);
        c.read_reply().expect(code, text);
    }
    c.command("NOOP").expect(250, "2.0.0 Ok");
    still_serves(&server, "after-2049");
}

#[test]
fn long_lines_and_nul_bytes_in_data_are_refused_554_5_6_0_with_bounded_memory() {
    let _heavy = kit::exclusive();
    let (_db, server) = start(ServeOptions::default());
    still_serves(&server, "warm-up");
    let baseline = peak_rss_kb(&server);
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    let header = format!("Subject: {}\r\n", "x".repeat(1500));
    let mut ten_mb = b"Subject: one line\r\n\r\n".to_vec();
    ten_mb.resize(ten_mb.len() + 10 * 1024 * 1024, b'y');
    ten_mb.extend_from_slice(b"\r\n");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "header line of 1510 bytes",
            format!("From: <{FROM}>\r\n{header}\r\nbody\r\n").into_bytes(),
            "5.6.0 Message line too long",
        ),
        ("one 10 MB line", ten_mb, "5.6.0 Message line too long"),
        (
            "NUL in the body",
            b"Subject: nul\r\n\r\nbefore\0after\r\n".to_vec(),
            "5.6.0 NUL byte in message not allowed",
        ),
    ];
    for (what, body, expected) in cases {
        c.command(&format!("MAIL FROM:<{FROM}>"))
            .expect(250, "2.1.0");
        c.command(&format!("RCPT TO:<{BOB}>")).expect(250, "2.1.5");
        c.command("DATA").expect(354, "");
        c.set_timeout(Duration::from_secs(30));
        c.send(&data_bytes(&body));
        let reply = c.read_reply();
        assert_eq!(
            (reply.code, reply.first()),
            (554, expected),
            "{what}: {}",
            reply.raw()
        );
        c.command("NOOP").expect(250, "2.0.0 Ok");
    }
    c.command("QUIT").expect(221, "2.0.0");
    assert!(server.inbox(BOB).is_empty());
    let grown = peak_rss_kb(&server).saturating_sub(baseline);
    eprintln!("peak RSS grew by {grown} kB over a 10 MB line");
    assert!(
        grown < 8 * 1024,
        "peak RSS grew by {grown} kB: the 10 MB line was buffered"
    );
    still_serves(&server, "after-long-data-lines");
}

#[test]
fn nul_bytes_in_commands_are_refused_500_5_5_2_and_change_nothing() {
    let (_db, server) = start(ServeOptions::default());
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    for line in [
        &b"NOOP a\0b\r\n"[..],
        b"MAIL FROM:<sender\0@far.test>\r\n",
        b"EHLO evil\0.far.test\r\n",
    ] {
        c.send(line);
        c.read_reply()
            .expect(500, "5.5.2 Error: NUL character in command");
    }
    // NUL after a valid MAIL must not open a transaction; nor after RCPT add a recipient.
    c.command("RCPT TO:<alice@example.test>")
        .expect(503, "5.5.1 Need MAIL command");
    c.command(&format!("MAIL FROM:<{FROM}>"))
        .expect(250, "2.1.0");
    c.send(b"RCPT TO:<bob@example.test>\0\r\n");
    c.read_reply().expect(500, "5.5.2");
    c.command("DATA").expect(554, "5.5.1 No valid recipients");
    c.command("QUIT").expect(221, "2.0.0");
    assert!(server.inbox(BOB).is_empty());
    still_serves(&server, "after-nul-commands");
}

// ---------------------------------------------------------------------------------------------- floods

#[test]
fn a_million_pipelined_rcpts_get_452_4_5_3_then_421_4_7_0_with_bounded_memory() {
    let _heavy = kit::exclusive();
    const ATTEMPTED: usize = 1_000_000;
    const MAX_RECIPIENTS: usize = 100;
    // As in src/smtp/inbound/session: RECIPIENT_OVERSHOOT 452s are free, then MAX_ERRORS of them end the session.
    const OVERSHOOT: usize = 1000;
    const MAX_ERRORS: usize = 20;
    let (_db, server) = start(ServeOptions::default());
    still_serves(&server, "warm-up");
    let baseline = peak_rss_kb(&server);
    let mut raw = Raw::connect(server.smtp());
    assert!(raw.line().unwrap_or_default().starts_with("220 "));
    raw.command("HELO flood.far.test", "250 ");
    raw.command(&format!("MAIL FROM:<{FROM}>"), "250 2.1.0");

    // The RCPTs are generated as they are written, a thousand lines per write.
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut tcp = raw.tcp.try_clone().expect("clone");
        let written = written.clone();
        std::thread::spawn(move || {
            let names = ["alice", "bob", "carol", "dave"];
            let mut buf = Vec::with_capacity(64 * 1000);
            for start in (0..ATTEMPTED).step_by(1000) {
                buf.clear();
                for i in start..start + 1000 {
                    let name = names[i % names.len()];
                    buf.extend_from_slice(format!("RCPT TO:<{name}@example.test>\r\n").as_bytes());
                }
                if tcp.write_all(&buf).is_err() {
                    return;
                }
                written.store(start + 1000, Ordering::Relaxed);
            }
        })
    };
    let (mut accepted, mut too_many, mut others) = (0usize, 0usize, Vec::new());
    let mut last = None;
    while let Some(line) = raw.line() {
        if line == "250 2.1.5 Ok" {
            accepted += 1;
        } else if line == "452 4.5.3 Too many recipients" {
            too_many += 1;
        } else if line.starts_with("421 ") {
            last = Some(line);
            break;
        } else {
            others.push(line);
        }
    }
    assert_eq!(raw.rest(), "", "nothing after the 421");
    writer.join().expect("writer thread");
    assert!(others.is_empty(), "unexpected replies: {others:?}");
    assert_eq!(accepted, MAX_RECIPIENTS);
    assert_eq!(too_many, OVERSHOOT + MAX_ERRORS);
    assert_eq!(
        last.as_deref(),
        Some(&*format!(
            "421 4.7.0 {HOSTNAME} Error: too many errors, closing connection"
        ))
    );
    let sent = written.load(Ordering::Relaxed);
    eprintln!("the client got {sent} RCPT lines out before it was disconnected");
    assert!(sent < ATTEMPTED, "the flood was never cut off");
    let grown = peak_rss_kb(&server).saturating_sub(baseline);
    eprintln!("peak RSS grew by {grown} kB during the flood");
    assert!(grown < 8 * 1024, "peak RSS grew by {grown} kB");
    still_serves(&server, "after-rcpt-flood");
}

#[test]
fn junk_commands_past_one_hundred_count_as_errors_and_end_the_session_with_421_4_7_0() {
    // As in src/smtp/inbound/session: MAX_JUNK_COMMANDS NOOPs are free, then each counts until MAX_ERRORS.
    const JUNK: usize = 100;
    const MAX_ERRORS: usize = 20;
    let (_db, server) = start(ServeOptions::default());
    let mut raw = Raw::connect(server.smtp());
    assert!(raw.line().unwrap_or_default().starts_with("220 "));
    raw.command("HELO idle.far.test", "250 ");
    raw.send(&b"NOOP\r\n".repeat(JUNK + MAX_ERRORS + 30));
    let mut ok = 0;
    let last = loop {
        match raw.line() {
            Some(line) if line == "250 2.0.0 Ok" => ok += 1,
            other => break other,
        }
    };
    assert_eq!(ok, JUNK + MAX_ERRORS, "NOOPs answered before the cut");
    assert_eq!(
        last.as_deref(),
        Some(&*format!(
            "421 4.7.0 {HOSTNAME} Error: too many errors, closing connection"
        ))
    );
    assert_eq!(raw.rest(), "", "nothing after the 421");
    still_serves(&server, "after-junk-commands");
}

#[test]
fn data_streamed_far_past_the_size_limit_is_cut_off_552_5_3_4() {
    // The limit is 10,000 bytes; the session stops reading 1 MiB past it. The client streams 8 MiB of
    // well-formed lines and never ends the message.
    let (_db, server) = start(ServeOptions::default().limit("max_message_size", 10_000));
    let mut raw = Raw::connect(server.smtp());
    assert!(raw.line().unwrap_or_default().starts_with("220 "));
    raw.command("HELO big.far.test", "250 ");
    raw.command(&format!("MAIL FROM:<{FROM}>"), "250 2.1.0");
    raw.command(&format!("RCPT TO:<{BOB}>"), "250 2.1.5");
    raw.command("DATA", "354 ");
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut tcp = raw.tcp.try_clone().expect("clone");
        let sent = sent.clone();
        std::thread::spawn(move || {
            let line = format!("{}\r\n", "x".repeat(998));
            let chunk = line.repeat(64);
            while sent.load(Ordering::Relaxed) < 8 << 20 {
                if tcp.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        })
    };
    let reply = raw.line().unwrap_or_default();
    assert_eq!(
        reply,
        "552 5.3.4 Message size exceeds fixed maximum message size",
        "after {} bytes",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(raw.rest(), "", "the connection is closed after the 552");
    writer.join().expect("writer thread");
    assert!(
        sent.load(Ordering::Relaxed) < 8 << 20,
        "the server read all 8 MiB instead of cutting the client off"
    );
    assert!(server.inbox(BOB).is_empty());
    still_serves(&server, "after-oversize-stream");
}

#[test]
fn two_thousand_connections_from_one_ip_past_the_limit_get_421_4_7_0_and_service_resumes() {
    let _heavy = kit::exclusive();
    const PER_IP: usize = 50;
    let (_db, server) = start(ServeOptions::default().limit("max_connections_per_ip", PER_IP));
    let started = Instant::now();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        let mut raw = Raw::connect(server.smtp());
        let banner = raw.line().unwrap_or_default();
        if banner == format!("220 {HOSTNAME} ESMTP mailctl") {
            admitted.push(raw);
        } else {
            assert_eq!(
                banner,
                format!("421 4.7.0 {HOSTNAME} Too many connections, try again later"),
                "connection {i}"
            );
            assert_eq!(raw.rest(), "", "connection {i}: closed after the 421");
            refused += 1;
        }
    }
    eprintln!("2000 connections in {:?}", started.elapsed());
    assert_eq!((admitted.len(), refused), (PER_IP, 2000 - PER_IP));
    // Every admitted session is served while the others are turned away.
    for raw in &mut admitted {
        raw.command("NOOP", "250 2.0.0");
    }
    for mut raw in admitted {
        raw.command("QUIT", "221 2.0.0");
        assert_eq!(raw.rest(), "");
    }
    // The slots come back as the session tasks end; then a fresh client delivers.
    eventually("a connection is admitted again", || {
        Raw::connect(server.smtp())
            .line()
            .is_some_and(|l| l.starts_with("220 "))
    });
    still_serves(&server, "after-2000-connections");
}

// ---------------------------------------------------------------------------------------------- slowloris

/// Sends `bytes` one byte every `every` from another thread until told to stop or the socket fails; returns
/// the stop flag, the count of bytes sent and the thread.
fn dribble(
    raw: &Raw,
    bytes: Vec<u8>,
    every: Duration,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    std::thread::JoinHandle<()>,
) {
    let mut tcp = raw.tcp.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            for b in bytes {
                if stop.load(Ordering::Relaxed) || tcp.write_all(&[b]).is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        })
    };
    (stop, sent, thread)
}

#[test]
fn slowloris_one_byte_at_a_time_is_cut_off_at_the_line_and_data_deadlines_with_421_4_4_2() {
    let _heavy = kit::exclusive();
    // Both timeouts 2 s; the attacker sends a byte every 300 ms, well inside any per-read timeout.
    let (_db, server) = start(
        ServeOptions::default()
            .limit("command_timeout", 2)
            .limit("data_timeout", 2),
    );
    let every = Duration::from_millis(300);

    // In a command line.
    let mut raw = Raw::connect(server.smtp());
    assert!(raw.line().unwrap_or_default().starts_with("220 "));
    let t = Instant::now();
    let (stop, sent, thread) = dribble(
        &raw,
        format!("NOOP {}", "x".repeat(100)).into_bytes(),
        every,
    );
    let reply = raw.line();
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        reply.as_deref(),
        Some("421 4.4.2 Timeout, closing connection")
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}"
    );
    assert!(sent.load(Ordering::Relaxed) >= 5, "the bytes did not flow");
    assert_eq!(raw.rest(), "");
    thread.join().expect("dribbler");

    // In DATA.
    let mut raw = Raw::connect(server.smtp());
    assert!(raw.line().unwrap_or_default().starts_with("220 "));
    raw.command("HELO slow.far.test", "250 ");
    raw.command(&format!("MAIL FROM:<{FROM}>"), "250 2.1.0");
    raw.command(&format!("RCPT TO:<{BOB}>"), "250 2.1.5");
    raw.command("DATA", "354 ");
    let t = Instant::now();
    let body = data_bytes(&message(FROM, BOB, "slowloris", "slow@far.test"));
    let (stop, sent, thread) = dribble(&raw, body, every);
    let reply = raw.line();
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        reply.as_deref(),
        Some("421 4.4.2 Timeout, closing connection")
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}"
    );
    assert!(sent.load(Ordering::Relaxed) >= 5, "the bytes did not flow");
    assert_eq!(raw.rest(), "");
    thread.join().expect("dribbler");
    assert!(server.inbox(BOB).is_empty());
    still_serves(&server, "after-slowloris");
}

// ---------------------------------------------------------------------------------------------- relay

#[test]
fn relay_tricks_on_the_mx_listener_are_refused_and_nothing_is_queued() {
    let (_db, server) = start_with(ServeOptions::default(), |db| {
        cli(db, "domain add catch.test");
        cli(db, "alias add @catch.test alice@example.test");
        cli(db, "alias add fwd@example.test out@far.test");
    });
    // (recipient as written, MAIL parameters, expected code and enhanced code)
    let cases: &[(&str, &str, u16, &str)] = &[
        ("user%far.test@example.test", "", 550, "5.1.1"),
        ("far.test!user@example.test", "", 550, "5.1.1"),
        ("far!user", "", 501, "5.1.3"),
        ("\"user@far.test\"@example.test", "", 550, "5.1.1"),
        ("\"alice@example.test\"@far.test", "", 554, "5.7.1"),
        ("user@far.test@example.test", "", 501, "5.1.3"),
        ("user%example.test@far.test", "", 554, "5.7.1"),
        // Not even a catch-all takes a local part no mailbox could have.
        ("user%far.test@catch.test", "", 550, "5.1.1"),
        ("far.test!user@catch.test", "", 550, "5.1.1"),
        ("@a.test,@b.test:user@far.test", "", 554, "5.7.1"),
        ("user@[127.0.0.1]", "", 554, "5.7.1"),
        ("user@[IPv6:::1]", "", 554, "5.7.1"),
        ("postmaster@[127.0.0.1]", "", 554, "5.7.1"),
        // RFC 5321 has no trailing dot in a Domain: a syntax error whichever domain it is.
        ("user@far.test.", "", 501, "5.1.3"),
        ("alice@example.test.", "", 501, "5.1.3"),
        // Cyrillic "а" in exаmple.test: refused without SMTPUTF8, not hosted with it, nor as punycode.
        ("user@ex\u{430}mple.test", "", 553, "5.6.7"),
        ("user@ex\u{430}mple.test", " SMTPUTF8", 554, "5.7.1"),
        ("alice@xn--exmple-4nf.test", "", 554, "5.7.1"),
        ("alice@xn--exmple-xxx.test", "", 501, "5.1.3"),
    ];
    for (rcpt, params, code, enhanced) in cases {
        let mut c = SmtpClient::connect(server.smtp());
        c.ehlo("client.far.test");
        c.command(&format!("MAIL FROM:<{FROM}>{params}"))
            .expect(250, "2.1.0");
        let reply = c.command(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(
            (reply.code, reply.first().split(' ').next().unwrap_or("")),
            (*code, *enhanced),
            "RCPT TO:<{rcpt}>{params}: {}",
            reply.raw()
        );
        if *code == 554 {
            assert!(
                reply.first().ends_with("Relay access denied"),
                "{}",
                reply.raw()
            );
        }
        c.command("DATA").expect(554, "5.5.1 No valid recipients");
        c.command("QUIT").expect(221, "2.0.0");
    }
    // What is accepted is delivered here, never relayed: a source route to a hosted mailbox is dropped
    // (RFC 5321 appendix C), and the catch-all takes an ordinary unknown name.
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    let msg = message(FROM, ALICE, "tricks", "tricks@far.test");
    c.command(&format!("MAIL FROM:<{FROM}>"))
        .expect(250, "2.1.0");
    c.command("RCPT TO:<@far.test:alice@example.test>")
        .expect(250, "2.1.5");
    c.command("RCPT TO:<user@catch.test>").expect(250, "2.1.5");
    c.command("DATA").expect(354, "");
    c.send(&data_bytes(&msg));
    c.read_reply().expect(250, "2.0.0");
    c.command("QUIT").expect(221, "2.0.0");
    let inbox = server.inbox(ALICE);
    assert_eq!(inbox.len(), 1, "one copy for alice however she was reached");
    assert_eq!(Delivered::parse(&inbox[0]).rest, msg);
    assert_eq!(
        queue(&server),
        Vec::<serde_json::Value>::new(),
        "queued for relay"
    );
    still_serves(&server, "after-relay-tricks");
    // The control: mail the server does forward (an alias the admin made) shows in that queue listing.
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("client.far.test");
    let fwd = message(FROM, "fwd@example.test", "forwarded", "fwd@far.test");
    c.send_mail(FROM, &["fwd@example.test"], &fwd)
        .expect(250, "2.0.0");
    let queued = queue(&server);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["recipients"], serde_json::json!(["out@far.test"]));
}
