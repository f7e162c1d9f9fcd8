//! The world of the outbound tests (`tests/serve_outbound*.rs`): a sender instance A hosting `a.test` (user
//! alice, an active DKIM key published in DNS, SPF and DMARC `p=reject`), a receiver instance B hosting
//! `b.test` and the other recipient domains (user bob in each, inbound SPF, DKIM and DMARC checks on), and one
//! authoritative DNS zone `test.` both resolve through.
//!
//! Test number N owns the addresses `127.0.N.x`, so the tests of one binary never share a listening address:
//! A is `.2`, B is `.3`, a relay host (`relay.test`, see `serve_relay.rs`) `.4`, `.8` has nothing listening,
//! `.9` is free for a recording listener, `.10` for an MTA-STS policy server. Every instance listens for SMTP
//! on the same port, which is also the port the outbound client connects to.
//!
//! Mail from A reaches B from 127.0.0.1: the outbound client binds no source address and Linux picks
//! 127.0.0.1 for every 127.0.0.0/8 destination, so a.test's SPF authorizes `ip4:127.0.0.0/8`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::outbound_node::Node;
use kit::TestDb;
use kit::daemon::free_port;
use kit::dns::TestDns;
use kit::serve::mail::{PASSWORD, add_mailbox, cli, message_id};
use kit::serve::{HOSTNAME, ServeOptions};
use kit::smtp_client::SmtpClient;

/// The sending user on A.
pub const ALICE: &str = "alice@a.test";
/// The receiving user on B.
pub const BOB: &str = "bob@b.test";
/// The domains B hosts, each with the mailbox `bob@`.
pub const B_DOMAINS: [&str; 5] = ["b.test", "c.test", "e.test", "p.test", "s.test"];
/// The DKIM selector of a.test's key.
pub const SELECTOR: &str = "sel";
/// The subject of a non-delivery report.
pub const BOUNCE_SUBJECT: &str = "Subject: Undelivered Mail Returned to Sender";

/// The DNS records of test `n` besides a.test's DKIM key.
fn zone(n: u8) -> String {
    let ip = |h: u8| Ipv4Addr::new(127, 0, n, h);
    let (b, dead, rec, sts, relay) = (ip(3), ip(8), ip(9), ip(10), ip(4));
    format!(
        r#"
a.test.             IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.a.test.      IN TXT "v=DMARC1; p=reject"
b.test.             IN MX  10 mx.b.test.
mx.b.test.          IN A   {b}
c.test.             IN MX  10 mx1.c.test.
c.test.             IN MX  20 mx2.c.test.
mx1.c.test.         IN A   {dead}
mx2.c.test.         IN A   {b}
p.test.             IN MX  10 mx1.p.test.
p.test.             IN MX  20 mx2.p.test.
mx1.p.test.         IN A   {b}
mx2.p.test.         IN A   {rec}
null.test.          IN MX  0 .
null.test.          IN A   {b}
e.test.             IN A   {b}
dead.test.          IN MX  10 mx.dead.test.
mx.dead.test.       IN A   {dead}
s.test.             IN MX  10 mx.s.test.
mx.s.test.          IN A   {b}
_mta-sts.s.test.    IN TXT "v=STSv1; id=1"
mta-sts.s.test.     IN A   {sts}
relay.test.         IN A   {relay}
"#
    )
}

/// Two configured (not started) instances and the DNS they share.
pub struct World {
    /// The sender: submission and SMTP on `127.0.N.2`.
    pub a: Node,
    /// The receiver: SMTP on `127.0.N.3`.
    pub b: Node,
    /// The zone `test.`, served while the world lives.
    dns: TestDns,
    /// The SMTP port of every instance, and the port the outbound client connects to.
    pub port: u16,
    /// The test's number (its addresses are `127.0.N.x`).
    pub n: u8,
    a_db: TestDb,
    _b_db: TestDb,
}

impl World {
    /// Provisions both databases, publishes a.test's fresh DKIM key and configures A and B.
    pub fn new(n: u8) -> World {
        World::with_zone(n, "")
    }

    /// [`World::new`] with more records (absolute names) in the zone.
    pub fn with_zone(n: u8, extra: &str) -> World {
        let a_db = TestDb::sqlite();
        cli(&a_db, "domain add a.test");
        add_mailbox(&a_db, ALICE, &[]);
        cli(
            &a_db,
            &format!("dkim generate a.test --selector {SELECTOR}"),
        );
        let key = a_db
            .run(&["dkim", "show", "a.test", "--format", "zone"])
            .ok()
            .stdout;
        let b_db = TestDb::sqlite();
        for domain in B_DOMAINS.iter().chain(&["null.test"]) {
            cli(&b_db, &format!("domain add {domain}"));
            add_mailbox(&b_db, &format!("bob@{domain}"), &[]);
        }
        let dns = TestDns::start(&[("test.", &format!("{}{extra}\n{key}", zone(n)))]);
        let ip = |h: u8| Ipv4Addr::new(127, 0, n, h);
        let port = free_port(&[ip(2), ip(3), ip(4), ip(8), ip(9), ip(10)]);
        let a = Node::new(&a_db, ServeOptions::default().dns(&dns), ip(2), port, true);
        let b_options = ServeOptions::default()
            .dns(&dns)
            .check("spf", "mark")
            .check("dkim", "mark")
            .check("dmarc", "mark");
        let b = Node::new(&b_db, b_options, ip(3), port, false);
        World {
            a,
            b,
            dns,
            port,
            n,
            a_db,
            _b_db: b_db,
        }
    }

    /// Address `127.0.N.host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.n, host)
    }

    /// The zone both instances resolve through (for a third instance of the test's own).
    pub fn dns(&self) -> &TestDns {
        &self.dns
    }

    /// The database of A (for aliases and the like).
    pub fn a_db(&self) -> &TestDb {
        &self.a_db
    }
}

/// A raw client on A's submission listener, after STARTTLS and AUTH as alice.
pub fn submission(a: &Node) -> SmtpClient {
    let mut c = SmtpClient::connect(a.addr("submission"));
    c.ehlo("laptop.a.test");
    c.starttls(a.server.root(), HOSTNAME);
    c.ehlo("laptop.a.test");
    c.auth_plain(ALICE, PASSWORD).expect(235, "2.7.0");
    c
}

/// Submits `msg` as alice to `rcpts` through A, asserts the `250` (the message is queued by then) and returns
/// the id it names.
#[track_caller]
pub fn submit(a: &Node, rcpts: &[&str], msg: &[u8]) -> String {
    let mut c = submission(a);
    let reply = c.send_mail(ALICE, rcpts, msg);
    reply.expect(250, "2.0.0 Ok: queued as ");
    c.command("QUIT").expect(221, "");
    reply.first()["2.0.0 Ok: queued as ".len()..]
        .trim()
        .to_string()
}

/// Polls `done` every 100 ms for up to `secs` seconds; panics with `what` and `node`'s log when it never holds.
#[track_caller]
pub fn wait_for(node: &Node, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            node.fail(&format!("timed out after {secs} s waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mailctl queue list --json` against `node`'s config: one JSON object per queued message.
pub fn queue_list(node: &Node) -> Vec<serde_json::Value> {
    let run = node.server.run(&["queue", "list", "--json"]).ok();
    run.json().as_array().expect("a JSON array").clone()
}

/// How many messages with each Message-ID `mailbox` has in its INBOX on `node`.
pub fn ids(node: &Node, mailbox: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in node.server.inbox(mailbox) {
        let id = message_id(&m).unwrap_or_default();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// The non-delivery reports in `mailbox`'s INBOX on `node`, as text.
pub fn bounces(node: &Node, mailbox: &str) -> Vec<String> {
    node.server
        .inbox(mailbox)
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .filter(|m| m.contains(BOUNCE_SUBJECT))
        .collect()
}

/// Every file under `node`'s Maildir root (any mailbox, any folder).
pub fn all_delivered(node: &Node) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .parent()
                .is_some_and(|p| p.ends_with("new") || p.ends_with("cur"))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&node.server.vmail_root, &mut out);
    out
}

/// The only queued message on `node` once it has been tried at least `attempts` times.
pub fn tried(node: &Node, attempts: u64) -> Option<serde_json::Value> {
    let list = queue_list(node);
    let [entry] = &list[..] else { return None };
    (entry["attempts"].as_u64().unwrap_or(0) >= attempts).then(|| entry.clone())
}

/// Waits until the only queued message on `node` was tried `attempts` times and returns its list entry.
#[track_caller]
pub fn wait_tried(node: &Node, attempts: u64) -> serde_json::Value {
    wait_for(
        node,
        &format!("one message tried {attempts} times"),
        15,
        || tried(node, attempts).is_some(),
    );
    tried(node, attempts).expect("still queued")
}
