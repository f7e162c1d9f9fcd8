//! The database made unreachable under load (issue 7): MariaDB sits behind a TCP proxy
//! (`kit::serve::db_proxy`) that the test cuts for a few seconds, twice, while concurrent clients send
//! mail, then restores. Every client logs each reply with the time it came.
//!
//! - Inbound (`mailctl serve` as the MX of example.test, recipients looked up in the database): during each
//!   cut clients get `451 4.3.0`, never a 5xx; after the restore the same daemon (same process, no restart)
//!   acknowledges mail again by itself; every acknowledged message is in both recipients' Maildirs exactly
//!   once, and nothing refused with a reply was delivered.
//! - Outbound with the database queue (`[server.queue] backend = "database"`): a sender A (submission with
//!   STARTTLS and AUTH, the queue in MariaDB through the proxy) relays to a receiver B (SQLite, not behind the
//!   proxy) while the same cuts happen, so the queue manager loses the database in the middle of claiming,
//!   delivering and recording. Submitters get 4xx and no 5xx during the cuts, acknowledgements resume after
//!   each restore, A's queue ends empty, and every acknowledged message is in B's Maildir exactly once: a
//!   delivery whose result could not be recorded during the cut must not be sent again.
//!
//! Nothing refused with a reply may be delivered, outbound either: when the connection breaks during the
//! commit of an enqueue the outcome is unknown, and the queue asks the database again once it answers rather
//! than telling the client to retry a message that is stored (`src/smtp/queue/database/mod.rs`, "Durability").
//!
//! A single client's `451` at RCPT during a cut, and the recovery, are in `serve_inbound_limits.rs`
//! (`database_cut_gives_451_at_rcpt_and_service_resumes`); this file is the same under load, and outbound.
//!
//! MariaDB only. Prints its figures (run with
//! `--nocapture`).

use crate::worlds::cluster_node;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_node::ClusterNode;
use kit::TestDb;
use kit::dns::TestDns;
use kit::serve::db_proxy::DbProxy;
use kit::serve::mail::{PASSWORD, add_mailbox, cli, example, message, message_id};
use kit::serve::reply::Reply;
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::{SmtpClient, data_bytes};
use rustls::pki_types::CertificateDer;

/// Concurrent client connections.
const SESSIONS: usize = 4;
/// How many times the database goes away.
const CUTS: usize = 2;
/// How long each cut lasts at least (it lasts until some client got its 4xx, if that takes longer).
const CUT_FOR: Duration = Duration::from_secs(3);
/// Acknowledgements wanted before the first cut and after each restore.
const BETWEEN_CUTS: usize = 30;
/// How long any one wait of the test may take.
const STEP_LIMIT: Duration = Duration::from_secs(90);
/// The outbound test's addresses are `127.0.72.x`.
const NET: u8 = 72;
/// `[server.queue] lease` of A, seconds (the shortest allowed): longer than each cut.
const LEASE: u64 = 10;

/// What one transaction (or login) got.
#[derive(Debug, Clone)]
enum Got {
    /// `250` to the end of data.
    Acked,
    /// A reply other than 2xx/3xx at `stage`.
    Refused { stage: &'static str, reply: String },
    /// The connection broke before the final reply.
    Cut,
}

/// One line of the load generator's log.
#[derive(Debug, Clone)]
struct Event {
    /// The Message-ID of the transaction (`-` for a login).
    id: String,
    at: Instant,
    got: Got,
}

impl Event {
    fn code(&self) -> Option<char> {
        match &self.got {
            Got::Refused { reply, .. } => reply.chars().next(),
            _ => None,
        }
    }
}

/// What the clients share with the test.
struct Load {
    addr: SocketAddr,
    stop: AtomicBool,
    acked: AtomicUsize,
    log: Mutex<Vec<Event>>,
}

impl Load {
    fn new(addr: SocketAddr) -> Arc<Load> {
        Arc::new(Load {
            addr,
            stop: AtomicBool::new(false),
            acked: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        })
    }

    fn push(&self, id: &str, got: Got) {
        if matches!(got, Got::Acked) {
            self.acked.fetch_add(1, Ordering::SeqCst);
        }
        let event = Event {
            id: id.to_string(),
            at: Instant::now(),
            got,
        };
        self.log.lock().expect("log").push(event);
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    fn events(&self) -> Vec<Event> {
        self.log.lock().expect("log").clone()
    }
}

/// The reply as one line, for the log.
fn text(r: &Reply) -> String {
    r.raw().replace("\r\n", " | ")
}

/// One transaction from `from` to `rcpts`, logged as `id`. A refusal before the end of data is followed by
/// `RSET`; if that is not answered `250` (the session's error limit answers `421` and closes), the reply is
/// logged too. Returns whether the connection can go on.
fn transaction(load: &Load, c: &mut SmtpClient, id: &str, from: &str, rcpts: &[&str]) -> bool {
    let msg = message(from, rcpts[0], "outage", id);
    let mut steps: Vec<(&'static str, String, u16)> =
        vec![("MAIL", format!("MAIL FROM:<{from}>"), 250)];
    steps.extend(
        rcpts
            .iter()
            .map(|r| ("RCPT", format!("RCPT TO:<{r}>"), 250)),
    );
    steps.push(("DATA", "DATA".into(), 354));
    for (stage, line, want) in steps {
        match c.try_command(&line) {
            Ok(r) if r.code == want => {}
            Ok(r) => {
                load.push(
                    id,
                    Got::Refused {
                        stage,
                        reply: text(&r),
                    },
                );
                return match c.try_command("RSET") {
                    Ok(r) if r.code == 250 => true,
                    Ok(r) => {
                        let reply = text(&r);
                        load.push(
                            "-",
                            Got::Refused {
                                stage: "RSET",
                                reply,
                            },
                        );
                        false
                    }
                    Err(_) => false,
                };
            }
            Err(_) => {
                load.push(id, Got::Cut);
                return false;
            }
        }
    }
    let got = match c
        .try_send(&data_bytes(&msg))
        .and_then(|()| c.try_read_reply())
    {
        Ok(r) if r.code == 250 => Got::Acked,
        Ok(r) => Got::Refused {
            stage: "end of data",
            reply: text(&r),
        },
        Err(_) => Got::Cut,
    };
    let go_on = !matches!(got, Got::Cut);
    load.push(id, got);
    go_on
}

/// One client: logs in with `login` (None: cannot connect; Err: refused, logged), then sends messages from
/// `from` to `rcpts` until the load stops, reconnecting when the connection breaks. After a refusal it
/// pauses 20 ms, so a client does not spin while the database is away.
fn client(
    load: &Load,
    session: usize,
    from: &str,
    rcpts: &[&str],
    login: &dyn Fn(SocketAddr) -> Option<Result<SmtpClient, Got>>,
) {
    let mut attempt = 0;
    let pause = || std::thread::sleep(Duration::from_millis(20));
    while !load.stop.load(Ordering::SeqCst) {
        let mut c = match login(load.addr) {
            Some(Ok(c)) => c,
            Some(Err(got)) => {
                load.push("-", got);
                pause();
                continue;
            }
            None => {
                pause();
                continue;
            }
        };
        while !load.stop.load(Ordering::SeqCst) {
            attempt += 1;
            let domain = from.split('@').nth(1).unwrap_or("x");
            let id = format!("s{session}-a{attempt}@{domain}");
            let before = load.acked();
            if !transaction(load, &mut c, &id, from, rcpts) {
                break;
            }
            if load.acked() == before {
                pause();
            }
        }
        let _ = c.try_command("QUIT");
    }
}

/// The times of the cuts: (cut, restore).
type Outages = Vec<(Instant, Instant)>;

/// Waits for [`BETWEEN_CUTS`] acknowledgements, then [`CUTS`] times: cuts the proxy, keeps it cut for
/// [`CUT_FOR`] and until a client got a 4xx, restores it and waits for [`BETWEEN_CUTS`] acknowledgements
/// again (the daemon recovering by itself). Returns the outages and, per restore, how long until the first
/// acknowledgement after it.
fn outages(load: &Load, proxy: &DbProxy, fail: &dyn Fn(&str)) -> (Outages, Vec<Duration>) {
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + STEP_LIMIT;
        while !done() {
            if Instant::now() > deadline {
                fail(&format!("not within {STEP_LIMIT:?}: {what}"));
                unreachable!("`fail` panics");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait("acknowledgements before the first cut", &|| {
        load.acked() >= BETWEEN_CUTS
    });
    let (mut out, mut recovery) = (Vec::new(), Vec::new());
    for n in 1..=CUTS {
        proxy.cut();
        let cut = Instant::now();
        let temp_since_cut = || {
            load.events()
                .iter()
                .any(|e| e.at >= cut && e.code() == Some('4'))
        };
        wait(&format!("a 4xx during cut {n}"), &|| {
            cut.elapsed() >= CUT_FOR && temp_since_cut()
        });
        let acked_at_restore = load.acked();
        proxy.restore();
        let restored = Instant::now();
        out.push((cut, restored));
        wait(&format!("acknowledgements after restore {n}"), &|| {
            load.acked() >= acked_at_restore + BETWEEN_CUTS
        });
        let first = load
            .events()
            .iter()
            .filter(|e| e.at >= restored && matches!(e.got, Got::Acked))
            .map(|e| e.at - restored)
            .min();
        recovery.push(first.expect("an acknowledgement after the restore"));
    }
    (out, recovery)
}

/// What the log says: refusals by reply class, where, and whether within a cut.
struct Summary {
    /// 4xx replies whose time lies within cut `i` (`per_cut[i]`), by stage.
    per_cut: Vec<BTreeMap<&'static str, usize>>,
    /// 4xx replies outside the cuts (the cut of a reply in flight at the restore), by stage.
    outside: BTreeMap<&'static str, usize>,
    /// Every 5xx reply.
    permanent: Vec<Event>,
    /// Every 4xx reply text seen, with its count.
    texts: BTreeMap<String, usize>,
    acked: Vec<String>,
    cut_off: HashSet<String>,
    /// Message-IDs refused with a 4xx to the end of data during a cut.
    data_tempfail_in_cut: HashSet<String>,
}

fn summarize(events: &[Event], cuts: &Outages) -> Summary {
    let mut s = Summary {
        per_cut: vec![BTreeMap::new(); cuts.len()],
        outside: BTreeMap::new(),
        permanent: Vec::new(),
        texts: BTreeMap::new(),
        acked: Vec::new(),
        cut_off: HashSet::new(),
        data_tempfail_in_cut: HashSet::new(),
    };
    for e in events {
        match &e.got {
            Got::Acked => s.acked.push(e.id.clone()),
            Got::Cut => {
                s.cut_off.insert(e.id.clone());
            }
            Got::Refused { stage, reply } if reply.starts_with('4') => {
                let within = cuts.iter().position(|(c, r)| e.at >= *c && e.at <= *r);
                match within {
                    Some(i) => *s.per_cut[i].entry(stage).or_default() += 1,
                    None => *s.outside.entry(stage).or_default() += 1,
                }
                if within.is_some() && *stage == "end of data" {
                    s.data_tempfail_in_cut.insert(e.id.clone());
                }
                *s.texts.entry(reply.clone()).or_default() += 1;
            }
            Got::Refused { .. } => s.permanent.push(e.clone()),
        }
    }
    s
}

/// Message-ID → copies in a Maildir folder; panics on an incomplete file.
fn copies(dir: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for file in TestServer::messages(dir) {
        let id = message_id(&file).expect("a delivered file with a Message-ID");
        assert!(
            file.ends_with(format!("END {id}\r\n").as_bytes()),
            "an incomplete file for {id} in {}",
            dir.display()
        );
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// Checks one recipient's Maildir against the log: every acknowledged message exactly once, nothing twice,
/// nothing that was refused with a reply (only transactions cut off without one may have been delivered).
#[track_caller]
fn check_maildir(what: &str, dir: &Path, s: &Summary) {
    let copies = copies(dir);
    let lost: Vec<_> = s
        .acked
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: delivered more than once: {twice:?}"
    );
    let acked: HashSet<&String> = s.acked.iter().collect();
    let refused: Vec<_> = copies
        .keys()
        .filter(|id| !acked.contains(id) && !s.cut_off.contains(*id))
        .map(|id| (id, s.data_tempfail_in_cut.contains(id)))
        .collect();
    assert!(
        refused.is_empty(),
        "{what}: delivered although refused with a reply (Message-ID, refused at the end of data during a cut): \
         {refused:?}"
    );
}

/// The common assertions on the log: no 5xx, at least one 4xx within every cut, every 4xx a `451 4.3.0` or
/// the `421 4.7.0` of the session's error limit (a client refused 20 times in a row is disconnected).
#[track_caller]
fn check_replies(s: &Summary) {
    assert!(s.permanent.is_empty(), "5xx replies: {:?}", s.permanent);
    for (i, stages) in s.per_cut.iter().enumerate() {
        assert!(!stages.is_empty(), "no 4xx during cut {}", i + 1);
    }
    for reply in s.texts.keys() {
        assert!(
            reply.starts_with("451 4.3.0") || reply.starts_with("421 4.7.0"),
            "an unexpected 4xx: {reply}"
        );
    }
}

#[test]
fn database_cut_under_inbound_load_gives_451_loses_nothing_and_the_same_daemon_recovers() {
    let _heavy = kit::exclusive();
    let db = TestDb::mariadb();
    let t0 = Instant::now();
    let proxy = DbProxy::for_test_server();
    example(&db);
    let options = ServeOptions {
        database_url: Some(proxy.url_for(&db.url)),
        ..ServeOptions::default()
    };
    let server = TestServer::start(&db, options);
    let pid = server.pid();
    let load = Load::new(server.smtp());
    const RCPTS: [&str; 2] = ["alice@example.test", "bob@example.test"];
    let login = |addr: SocketAddr| -> Option<Result<SmtpClient, Got>> {
        let mut c = SmtpClient::try_connect(addr).ok()?;
        c.set_timeout(Duration::from_secs(60));
        let r = c.try_command("EHLO client.far.test").ok()?;
        Some(if r.code == 250 {
            Ok(c)
        } else {
            Err(Got::Refused {
                stage: "EHLO",
                reply: text(&r),
            })
        })
    };
    let (cuts, recovery) = std::thread::scope(|scope| {
        for s in 0..SESSIONS {
            let load = &load;
            scope.spawn(move || client(load, s, "load@far.test", &RCPTS, &login));
        }
        let result = outages(&load, &proxy, &|what: &str| {
            server.fail(what);
        });
        load.stop.store(true, Ordering::SeqCst);
        result
    });
    assert_eq!(server.pid(), pid, "the daemon was restarted");
    let s = summarize(&load.events(), &cuts);
    check_replies(&s);
    for rcpt in RCPTS {
        check_maildir(rcpt, &server.maildir(rcpt), &s);
    }
    eprintln!(
        "inbound: {} acknowledged, 0 lost, 0 twice; {} cut off without a reply; 4xx per cut (by stage) {:?}, \
         outside the cuts {:?}; replies {:?}; first acknowledgement {recovery:?} after each restore; {:?}",
        s.acked.len(),
        s.cut_off.len(),
        s.per_cut,
        s.outside,
        s.texts,
        t0.elapsed()
    );
}

/// Address `127.0.NET.host`.
fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, NET, host)
}

/// A submission connection to A after STARTTLS and AUTH as alice.
fn submission(addr: SocketAddr, root: &CertificateDer<'static>) -> Option<Result<SmtpClient, Got>> {
    let mut c = SmtpClient::try_connect(addr).ok()?;
    c.set_timeout(Duration::from_secs(60));
    c.try_command("EHLO laptop.a.test").ok()?;
    c.try_starttls(root, HOSTNAME).ok()?;
    c.try_command("EHLO laptop.a.test").ok()?;
    use base64::Engine as _;
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("\0alice@a.test\0{PASSWORD}"));
    let r = c.try_command(&format!("AUTH PLAIN {token}")).ok()?;
    Some(if r.code == 235 {
        Ok(c)
    } else {
        Err(Got::Refused {
            stage: "AUTH",
            reply: text(&r),
        })
    })
}

#[test]
fn database_cut_while_the_database_queue_delivers_loses_nothing_and_sends_nothing_twice() {
    let _heavy = kit::exclusive();
    let db = TestDb::mariadb();
    let t0 = Instant::now();
    let proxy = DbProxy::for_test_server();
    cli(&db, "domain add a.test");
    add_mailbox(&db, "alice@a.test", &[]);
    cli(&db, "dkim generate a.test --selector sel");
    let b_db = TestDb::sqlite();
    cli(&b_db, "domain add b.test");
    add_mailbox(&b_db, "bob@b.test", &[]);
    let zone = format!(
        "a.test. IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\nb.test. IN MX 10 mx.b.test.\nmx.b.test. IN A {}\n",
        ip(3)
    );
    let dns = TestDns::start(&[("test.", &zone)]);
    let port = {
        let l = TcpListener::bind((ip(3), 0)).expect("bind a loopback port");
        l.local_addr().expect("local address").port()
    };
    let a_options = ServeOptions {
        database_url: Some(proxy.url_for(&db.url)),
        ..ServeOptions::default().dns(&dns)
    };
    let queue = [
        ("backend", "\"database\"".to_string()),
        ("retry_initial", "1".into()),
        ("retry_max", "2".into()),
        ("lease", LEASE.to_string()),
    ];
    let outbound = [("port", port.to_string()), ("timeout", "5".into())];
    let listen = [
        format!("smtp={}:0", ip(2)),
        format!("submission={}:0", ip(2)),
    ];
    let mut a = ClusterNode::new(&db, a_options, "a.example.test", &listen, &queue, &outbound);
    let b_spool = b_db.path("spool").to_string_lossy().into_owned();
    let mut b = ClusterNode::new(
        &b_db,
        ServeOptions::default().dns(&dns),
        "mx.b.test",
        &[format!("smtp={}:{port}", ip(3))],
        &[("spool_dir", toml::Value::from(b_spool).to_string())],
        &[],
    );
    b.start();
    a.start();
    let inbox = b.server.maildir("bob@b.test");
    let root = a.server.root().clone();
    let load = Load::new(a.addr("submission"));
    let login = |addr: SocketAddr| submission(addr, &root);
    let (cuts, recovery) = std::thread::scope(|scope| {
        for s in 0..SESSIONS {
            let load = &load;
            let login = &login;
            scope.spawn(move || client(load, s, "alice@a.test", &["bob@b.test"], login));
        }
        let result = outages(&load, &proxy, &|what: &str| {
            a.fail(what);
        });
        load.stop.store(true, Ordering::SeqCst);
        result
    });
    let deadline = Instant::now() + STEP_LIMIT;
    let stats = || a.server.run(&["queue", "stats", "--json"]).ok().json();
    while stats()["entries"] != 0 {
        if Instant::now() > deadline {
            a.fail(&format!(
                "A's queue not empty within {STEP_LIMIT:?}: {}",
                stats()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = summarize(&load.events(), &cuts);
    check_replies(&s);
    check_maildir("bob@b.test on B", &inbox, &s);
    let log = a.server.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    eprintln!(
        "outbound (database queue): {} acknowledged, 0 lost, 0 twice; {} cut off without a reply; 4xx per cut (by stage) {:?}, outside the cuts \
         {:?}; replies {:?}; first acknowledgement {recovery:?} after each restore; A logged {} failed records \
         (retried), {} failed claims, {} failed delivery runs, {} enqueue commits settled by asking again; {:?}",
        s.acked.len(),
        s.cut_off.len(),
        s.per_cut,
        s.outside,
        s.texts,
        count("cannot record delivery results"),
        count("cannot claim queued mail"),
        count("delivery run failed"),
        count("reported an error but went through"),
        t0.elapsed()
    );
}
