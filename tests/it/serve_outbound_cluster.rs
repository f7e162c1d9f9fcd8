//! Scale-out of the outbound queue end to end (issue 6, "Queue backend and scale-out"): two `mailctl serve`
//! sender nodes A1 and A2 share `[server.queue] backend = "database"` on one MariaDB database; 2,000 messages
//! are submitted to A1 while the receiver B is down; then B comes up, both nodes deliver, A2 is killed with
//! `kill -9` when about half has arrived, and every message must still reach B's Maildir, with A1's queue
//! empty afterwards.
//!
//! Exactly once, with one exception no SMTP client can avoid: a message whose `250` B had sent (or was about
//! to send) when A2 died, before A2 recorded it, is delivered again by A1 once A2's lease runs out. The test
//! allows only those: two copies, A2's first and written just before the kill, at most as many as A2 had
//! deliveries in flight. Any other duplicate, and any loss, fails it.
//!
//! - A1 (`a1.example.test`) and A2 (`a2.example.test`) host a.test (user alice, a DKIM key) on the MariaDB
//!   test database; their own SMTP listeners are on `127.0.61.2` and `127.0.61.4`, port 0.
//! - B (`mx.b.test`) hosts b.test on its own SQLite database and listens on `127.0.61.3:P`; the test DNS maps
//!   b.test's MX there and both senders deliver to port P. B's `Received:` field names the node (by its
//!   EHLO name) that delivered each copy.
//! - Retries are 1 s, at most 2 s apart; the lease (`[server.queue] lease`) is 10 s, the shortest allowed,
//!   so A2's claimed entries are taken over about 10 s after the kill.
//!
//! MariaDB only (the database queue needs it). Prints its
//! timings (run with `--nocapture`).

use crate::worlds::cluster_node;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use cluster_node::ClusterNode;
use kit::TestDb;
use kit::dns::TestDns;
use kit::serve::mail::{PASSWORD, add_mailbox, cli, message, message_id};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::{SmtpClient, data_bytes};

/// Messages submitted.
const MESSAGES: usize = 2000;
/// Parallel submission connections to A1.
const SUBMITTERS: usize = 8;
/// This test's addresses are `127.0.NET.x` (no other test binary uses this third octet).
const NET: u8 = 61;
/// `[server.queue] lease`, seconds: how long the killed node's claims stay before A1 takes them over.
const LEASE: u64 = 10;
/// How long delivery of everything may take once B is up.
const DELIVERY_LIMIT: Duration = Duration::from_secs(120);
/// `[server.outbound] concurrency` and `per_domain` of the senders: the most deliveries a node has in
/// flight, so the most messages the killed node can have delivered without recording it.
const IN_FLIGHT: usize = 8;
/// How long before the kill B may have written a copy the killed node never recorded (the time from B's
/// Maildir write to A2's committed `record`; a few tens of milliseconds when measured, a margin for slow CI).
const CRASH_WINDOW: Duration = Duration::from_secs(5);
/// The sender nodes' host names.
const A1: &str = "a1.example.test";
const A2: &str = "a2.example.test";
const ALICE: &str = "alice@a.test";
const BOB: &str = "bob@b.test";

/// Address `127.0.NET.host`.
fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, NET, host)
}

/// The Message-ID of submitted message `i`.
fn id(i: usize) -> String {
    format!("cluster-{i:04}@a.test")
}

/// A sender node on the shared MariaDB database.
fn sender(
    db: &TestDb,
    dns: &TestDns,
    name: &str,
    host: u8,
    submission: bool,
    port: u16,
) -> ClusterNode {
    let mut listen = vec![format!("smtp={}:0", ip(host))];
    if submission {
        listen.push(format!("submission={}:0", ip(host)));
    }
    let queue = [
        ("backend", "\"database\"".to_string()),
        ("retry_initial", "1".into()),
        ("retry_max", "2".into()),
        ("lease", LEASE.to_string()),
    ];
    let outbound = [
        ("port", port.to_string()),
        ("timeout", "5".into()),
        ("concurrency", IN_FLIGHT.to_string()),
        ("per_domain", IN_FLIGHT.to_string()),
    ];
    let options = ServeOptions::default().dns(dns);
    ClusterNode::new(db, options, name, &listen, &queue, &outbound)
}

/// Submits messages `range` as alice through `addr` on one connection (STARTTLS, AUTH, then MAIL, RCPT and
/// DATA pipelined per message); panics unless every message is accepted.
fn submit(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    range: std::ops::Range<usize>,
) {
    let mut c = SmtpClient::connect(addr);
    c.ehlo("laptop.a.test");
    c.starttls(root, HOSTNAME);
    c.ehlo("laptop.a.test");
    c.auth_plain(ALICE, PASSWORD).expect(235, "2.7.0");
    for i in range {
        let id = id(i);
        c.send(format!("MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n").as_bytes());
        c.read_reply().expect(250, "");
        c.read_reply().expect(250, "");
        c.read_reply().expect(354, "");
        c.send(&data_bytes(&message(
            ALICE,
            BOB,
            &format!("cluster {i}"),
            &id,
        )));
        c.read_reply().expect(250, "2.0.0 Ok: queued as ");
    }
    c.command("QUIT").expect(221, "");
}

/// `mailctl queue stats --json` against `node`'s config.
fn stats(node: &ClusterNode) -> serde_json::Value {
    node.server.run(&["queue", "stats", "--json"]).ok().json()
}

/// One copy of a message in B's Maildir.
#[derive(Debug)]
struct Copy {
    /// The node that delivered it (its EHLO name in B's `Received:` field).
    by: String,
    /// When B wrote it (the file's modification time).
    at: SystemTime,
}

/// Every copy in B's Maildir folder `inbox`, by Message-ID, oldest first.
fn delivered(inbox: &Path) -> BTreeMap<String, Vec<Copy>> {
    let mut out: BTreeMap<String, Vec<Copy>> = BTreeMap::new();
    for entry in std::fs::read_dir(inbox).expect("B's Maildir") {
        let path = entry.expect("dir entry").path();
        let file = std::fs::read(&path).expect("read a delivered message");
        let at = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let id = message_id(&file).unwrap_or_default();
        out.entry(id).or_default().push(Copy {
            by: delivered_by(&file),
            at,
        });
    }
    for copies in out.values_mut() {
        copies.sort_by_key(|c| c.at);
    }
    out
}

/// Checks that nothing was delivered twice except in the crash window SMTP cannot close: B wrote A2's copy
/// and A2 was killed before it recorded B's `250`, so A1 delivered the message again after A2's lease ran
/// out. Such a message has exactly two copies, A2's first, written at most [`CRASH_WINDOW`] before the
/// kill, and at most [`IN_FLIGHT`] messages can be in that state. Returns those messages with how long
/// before the kill B wrote A2's copy.
#[track_caller]
fn duplicates(
    copies: &BTreeMap<String, Vec<Copy>>,
    killed_at: SystemTime,
) -> Vec<(String, Duration)> {
    let mut window = Vec::new();
    for (id, c) in copies.iter().filter(|(_, c)| c.len() > 1) {
        let before = killed_at.duration_since(c[0].at).unwrap_or_default();
        let in_window = c.len() == 2 && c[0].by == A2 && c[1].by == A1 && c[0].at <= killed_at;
        assert!(
            in_window && before <= CRASH_WINDOW,
            "{id} delivered more than once, not in A2's crash window ({before:?} before the kill): {c:?}"
        );
        window.push((id.clone(), before));
    }
    assert!(
        window.len() <= IN_FLIGHT,
        "more duplicates than A2 had deliveries in flight: {window:?}"
    );
    window
}

/// The EHLO name in the receiver's (first) `Received:` field of a delivered file: the node that delivered it.
fn delivered_by(file: &[u8]) -> String {
    let text = String::from_utf8_lossy(file);
    text.lines()
        .find_map(|l| l.strip_prefix("Received: from "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

/// How many warning and error lines `node` logged (printed, not asserted: a sender whose receiver is down
/// legitimately warns about every deferred attempt).
fn warnings(node: &ClusterNode) -> usize {
    let log = node.server.log();
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count()
}

#[test]
fn two_serve_nodes_share_one_mariadb_queue_and_deliver_2000_messages_when_one_is_killed_halfway() {
    let _heavy = kit::exclusive();
    let db = TestDb::mariadb();
    let t0 = Instant::now();
    cli(&db, "domain add a.test");
    add_mailbox(&db, ALICE, &[]);
    cli(&db, "dkim generate a.test --selector sel");
    let b_db = TestDb::sqlite();
    cli(&b_db, "domain add b.test");
    add_mailbox(&b_db, BOB, &[]);
    let zone = format!(
        "a.test. IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\nb.test. IN MX 10 mx.b.test.\nmx.b.test. IN A {}\n",
        ip(3)
    );
    let dns = TestDns::start(&[("test.", &zone)]);
    let port = kit::daemon::free_port(&[ip(3)]);
    let mut a1 = sender(&db, &dns, A1, 2, true, port);
    let mut a2 = sender(&db, &dns, A2, 4, false, port);
    let b_listen = [format!("smtp={}:{port}", ip(3))];
    let b_spool = b_db.path("spool").to_string_lossy().into_owned();
    let b_queue = [("spool_dir", toml::Value::from(b_spool).to_string())];
    let mut b = ClusterNode::new(
        &b_db,
        ServeOptions::default().dns(&dns),
        "mx.b.test",
        &b_listen,
        &b_queue,
        &[],
    );
    let inbox = b.server.maildir(BOB);
    a1.start();
    eprintln!("setup: {:?}", t0.elapsed());

    // Phase 1: B is down; everything is accepted by A1 and queued (and deferred) in the database.
    let t1 = Instant::now();
    let (addr, root) = (a1.addr("submission"), a1.server.root().clone());
    let per = MESSAGES.div_ceil(SUBMITTERS);
    std::thread::scope(|s| {
        for n in 0..SUBMITTERS {
            let root = &root;
            s.spawn(move || submit(addr, root, n * per..((n + 1) * per).min(MESSAGES)));
        }
    });
    let submitted = t1.elapsed();
    let queued = stats(&a1);
    assert_eq!(queued["entries"], MESSAGES, "{queued}");
    assert_eq!(TestServer::count(&inbox), 0);
    eprintln!("phase 1: {MESSAGES} messages submitted and queued in {submitted:?}; {queued}");

    // Phase 2: both nodes deliver; A2 dies when about half has arrived.
    a2.start();
    b.start();
    let t2 = Instant::now();
    let deadline = t2 + DELIVERY_LIMIT;
    let wait = |what: &str, done: &mut dyn FnMut() -> bool| {
        while !done() {
            if Instant::now() > deadline {
                let n = TestServer::count(&inbox);
                a1.fail(&format!(
                    "{what}: not within {DELIVERY_LIMIT:?} of B coming up ({n} delivered)"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait("half delivered", &mut || {
        TestServer::count(&inbox) >= MESSAGES / 2
    });
    a2.kill9();
    let (killed, killed_at, at_kill) = (t2.elapsed(), SystemTime::now(), TestServer::count(&inbox));
    eprintln!(
        "phase 2: A2 killed {killed:?} after B came up, with {at_kill} messages in B's Maildir"
    );
    wait("A1's queue is empty", &mut || stats(&a1)["entries"] == 0);
    let empty = t2.elapsed();
    eprintln!(
        "phase 2: A1's queue empty {empty:?} after B came up ({:?} after the kill); lease {LEASE} s",
        empty - killed
    );
    // A late duplicate would show up now.
    std::thread::sleep(Duration::from_secs(2));
    let logged: Vec<_> = [&a1, &a2, &b]
        .iter()
        .map(|n| (n.hostname.as_str(), warnings(n)))
        .collect();
    eprintln!("warnings and errors logged: {logged:?}");

    let copies = delivered(&inbox);
    let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
    for copy in copies.values().flatten() {
        *by_node.entry(copy.by.as_str()).or_default() += 1;
    }
    eprintln!(
        "delivered by node: {by_node:?}; test time {:?}",
        t0.elapsed()
    );
    let expected: Vec<String> = (0..MESSAGES).map(id).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|i| !copies.contains_key(*i))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(copies.len(), MESSAGES, "unexpected messages in B's Maildir");
    let crash_window = duplicates(&copies, killed_at);
    eprintln!(
        "{} message(s) delivered twice, first by A2 just before the kill: {crash_window:?}",
        crash_window.len()
    );
    for node in [A1, A2] {
        let n = by_node.get(node).copied().unwrap_or(0);
        assert!(n > 0, "{node} delivered nothing: {by_node:?}");
    }
    let end = stats(&a1);
    assert_eq!(end["entries"], 0, "{end}");
}
