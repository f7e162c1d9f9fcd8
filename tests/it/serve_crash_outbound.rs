//! Crash safety of the outbound queue (issue 7): a sender instance A (submission with STARTTLS and AUTH, the
//! spool queue) and a receiver instance B (see `worlds/outbound_world.rs`). A load generator submits
//! mail for bob@b.test to A from several connections and logs every Message-ID A answered `250` to; while it
//! runs, A is killed with SIGKILL at random moments (at least 20 times) and restarted on the same spool and
//! database, and B is killed and restarted a few times in between. At the end A's queue must be empty and
//! every acknowledged message in B's Maildir.
//!
//! Loss is never allowed. Duplicates are allowed only in the window no SMTP client can close (RFC 1047): B
//! wrote a message and answered `250`, and A was killed before it recorded that `250`, or B was killed after
//! writing the file but before its `250` reached A. So every copy of a message but its last must be written
//! shortly before (or, when the `.` was already on the wire, just after) a kill, the next copy after that
//! kill, each extra copy with a kill of its own; and no kill may account for more extra copies than A has
//! deliveries in flight (`[server.outbound] per_domain`, the only destination domain). A message can be in
//! the window of several consecutive kills: A, restarted, delivers it again first thing and dies again.
//!
//! A message whose submission ended without a reply (connection killed) may or may not be delivered; one A
//! refused with a reply must not be. Kill moments are random (seed printed; `MAILCTL_TEST_SEED` replays
//! one), and each kill of A comes only after A acknowledged a submission and B received a delivery since A's
//! last start, so every kill lands while A is both queueing and delivering. Sized by `MAILCTL_TEST_KILLS`
//! (kills of A, default 20, at least 20 for issue 7), `MAILCTL_TEST_SESSIONS` (submitting connections,
//! default 4). Prints its figures (run with `--nocapture`).

use crate::worlds::outbound_node;
use crate::worlds::outbound_world;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kit::serve::mail::{PASSWORD, message, message_id};
use kit::serve::{HOSTNAME, TestServer};
use kit::smtp_client::SmtpClient;
use outbound_node::Node;
use outbound_world::{ALICE, BOB, World, bounces, queue_list};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::CertificateDer;

/// This test's addresses are `127.0.71.x` (see `outbound_world.rs`).
const NET: u8 = 71;
/// `[server.outbound] concurrency` and `per_domain` of A: the most deliveries A has in flight to b.test,
/// so the most messages one kill can leave delivered but unrecorded.
const IN_FLIGHT: usize = 4;
/// Which kills of A are preceded, in the same life of A, by a kill of B.
const B_KILLS: [usize; 3] = [4, 10, 16];
/// How long before a kill B may have written a copy that was never recorded: B's fsync and `250`, A's
/// record with its fsync; milliseconds when measured, a margin for a slow CI machine.
const WINDOW_BEFORE: Duration = Duration::from_secs(2);
/// How long after a kill of A B may still write a copy of a message whose data was on the wire.
const WINDOW_AFTER: Duration = Duration::from_secs(1);
/// How long any one wait of the test may take.
const STEP_LIMIT: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the submitting threads share with the killer: A's current submission address and the log.
struct Load {
    addr: Mutex<SocketAddr>,
    root: CertificateDer<'static>,
    stop: AtomicBool,
    /// Message-IDs A answered `250` to after DATA.
    acked: Mutex<Vec<String>>,
    acked_count: AtomicUsize,
    /// Message-IDs A answered something else to after DATA, with the reply.
    refused: Mutex<Vec<(String, String)>>,
    /// Message-IDs whose transaction broke off without a final reply.
    unknown: Mutex<Vec<String>>,
}

/// One submitting connection at a time: STARTTLS, AUTH as alice, then messages until the connection breaks
/// or the load stops; every attempt has a fresh Message-ID.
fn submitter(session: usize, load: Arc<Load>) {
    let mut attempt = 0;
    while !load.stop.load(Ordering::SeqCst) {
        let addr = *load.addr.lock().expect("addr");
        let Some(mut c) = login(addr, &load.root) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        while !load.stop.load(Ordering::SeqCst) {
            attempt += 1;
            let id = format!("s{session}-a{attempt}@a.test");
            match c.try_send_mail(ALICE, &[BOB], &message(ALICE, BOB, "crash", &id)) {
                Ok(reply) if reply.code == 250 => {
                    load.acked.lock().expect("acked").push(id);
                    load.acked_count.fetch_add(1, Ordering::SeqCst);
                }
                Ok(reply) => {
                    load.refused
                        .lock()
                        .expect("refused")
                        .push((id, reply.raw()));
                    break;
                }
                Err(_) => {
                    load.unknown.lock().expect("unknown").push(id);
                    break;
                }
            }
        }
        let _ = c.try_command("QUIT");
    }
}

/// A submission connection after STARTTLS and AUTH, or None when any step fails (A is down or restarting).
fn login(addr: SocketAddr, root: &CertificateDer<'static>) -> Option<SmtpClient> {
    let mut c = SmtpClient::try_connect(addr).ok()?;
    let ok = |r: std::io::Result<kit::serve::reply::Reply>, code| r.is_ok_and(|r| r.code == code);
    if c.banner.code != 220 || !ok(c.try_command("EHLO laptop.a.test"), 250) {
        return None;
    }
    c.try_starttls(root, HOSTNAME).ok()?;
    if !ok(c.try_command("EHLO laptop.a.test"), 250) {
        return None;
    }
    let token = base64_plain(ALICE, PASSWORD);
    ok(c.try_command(&format!("AUTH PLAIN {token}")), 235).then_some(c)
}

fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Every copy in B's Maildir folder, by Message-ID, with the time B wrote it, oldest first; panics on an
/// incomplete file.
fn copies(dir: &Path) -> BTreeMap<String, Vec<SystemTime>> {
    let mut out: BTreeMap<String, Vec<SystemTime>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("B's Maildir") {
        let path = entry.expect("dir entry").path();
        let file = std::fs::read(&path).expect("read a delivered message");
        let id = message_id(&file)
            .unwrap_or_else(|| panic!("a file without Message-ID: {}", path.display()));
        assert!(
            file.ends_with(format!("END {id}\r\n").as_bytes()),
            "an incomplete file for {id}: {}",
            path.display()
        );
        let at = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        out.entry(id).or_default().push(at);
    }
    for c in out.values_mut() {
        c.sort();
    }
    out
}

/// A kill of A or B.
#[derive(Debug, Clone, Copy)]
struct Kill {
    node: char,
    at: SystemTime,
}

/// A copy of a message in B's Maildir that a later copy repeats.
struct Extra<'a> {
    id: &'a str,
    /// When B wrote it.
    at: SystemTime,
    /// When B wrote the next copy.
    next: SystemTime,
}

/// Whether `kill` explains `extra`: B wrote it at most [`WINDOW_BEFORE`] before the kill (or up to
/// [`WINDOW_AFTER`] after a kill of A, whose `.` was already on the wire) and the next copy after the kill.
fn explains(kill: &Kill, extra: &Extra) -> bool {
    let after = if kill.node == 'A' {
        WINDOW_AFTER
    } else {
        Duration::ZERO
    };
    extra.at <= kill.at + after && kill.at <= extra.at + WINDOW_BEFORE && extra.next > kill.at
}

/// Assigns every extra copy a kill that explains it, no kill more than [`IN_FLIGHT`] copies (a bipartite
/// matching by augmenting paths, so a copy that two kills could explain never makes the assignment fail
/// needlessly). Returns each copy's kill, or the index of a copy no assignment can explain.
fn assign(kills: &[Kill], extras: &[Extra]) -> Result<Vec<usize>, usize> {
    let mut taken: Vec<Vec<usize>> = vec![Vec::new(); kills.len()];
    let mut kill_of: Vec<usize> = vec![usize::MAX; extras.len()];
    for e in 0..extras.len() {
        let mut seen = vec![false; kills.len()];
        if !augment(e, kills, extras, &mut taken, &mut kill_of, &mut seen) {
            return Err(e);
        }
    }
    Ok(kill_of)
}

/// One augmenting step of [`assign`]: finds a kill for copy `e`, moving other copies along if needed.
fn augment(
    e: usize,
    kills: &[Kill],
    extras: &[Extra],
    taken: &mut Vec<Vec<usize>>,
    kill_of: &mut Vec<usize>,
    seen: &mut Vec<bool>,
) -> bool {
    // The nearest kill first: the likeliest explanation, so the figures per node are meaningful.
    let gap = |k: &Kill| {
        let at = extras[e].at;
        k.at.duration_since(at)
            .unwrap_or_else(|_| at.duration_since(k.at).unwrap_or_default())
    };
    let mut order: Vec<usize> = (0..kills.len())
        .filter(|k| explains(&kills[*k], &extras[e]))
        .collect();
    order.sort_by_key(|k| gap(&kills[*k]));
    for k in order {
        if seen[k] {
            continue;
        }
        seen[k] = true;
        if taken[k].len() < IN_FLIGHT {
            taken[k].push(e);
            kill_of[e] = k;
            return true;
        }
        for slot in 0..taken[k].len() {
            if augment(taken[k][slot], kills, extras, taken, kill_of, seen) {
                taken[k][slot] = e;
                kill_of[e] = k;
                return true;
            }
        }
    }
    false
}

/// Polls `done` every 5 ms for up to [`STEP_LIMIT`]; fails with A's log when it never holds.
fn wait(a: &Node, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_LIMIT;
    while !done() {
        if Instant::now() > deadline {
            a.fail(&format!("not within {STEP_LIMIT:?}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_of_sender_and_receiver_under_load_loses_nothing_and_duplicates_only_in_crash_windows() {
    let _heavy = kit::exclusive();
    let t0 = Instant::now();
    let start = SystemTime::now();
    let kills = env_or("MAILCTL_TEST_KILLS", 20) as usize;
    let sessions = env_or("MAILCTL_TEST_SESSIONS", 4) as usize;
    let seed = env_or("MAILCTL_TEST_SEED", rand::random());
    eprintln!("seed {seed} (MAILCTL_TEST_SEED={seed} replays the kill moments' randomness)");
    let mut rng = StdRng::seed_from_u64(seed);
    assert!(kills >= 1, "MAILCTL_TEST_KILLS must be at least 1");

    let mut w = World::new(NET);
    let in_flight = IN_FLIGHT.to_string();
    w.a.set_outbound("concurrency", &in_flight)
        .set_outbound("per_domain", &in_flight);
    w.b.start();
    w.a.start();
    let inbox = w.b.server.maildir(BOB);
    let load = Arc::new(Load {
        addr: Mutex::new(w.a.addr("submission")),
        root: w.a.server.root().clone(),
        stop: AtomicBool::new(false),
        acked: Mutex::new(Vec::new()),
        acked_count: AtomicUsize::new(0),
        refused: Mutex::new(Vec::new()),
        unknown: Mutex::new(Vec::new()),
    });
    let threads: Vec<_> = (0..sessions)
        .map(|s| {
            let load = load.clone();
            std::thread::spawn(move || submitter(s, load))
        })
        .collect();

    let acked = |load: &Load| load.acked_count.load(Ordering::SeqCst);
    let mut log: Vec<Kill> = Vec::new();
    // Per life of A: acknowledged submissions and deliveries B received before the kill.
    let mut lives: Vec<(usize, usize)> = Vec::new();
    for k in 1..=kills {
        let (acks0, delivered0) = (acked(&load), TestServer::count(&inbox));
        wait(
            &w.a,
            &format!("A acknowledges and delivers after start {k}"),
            || acked(&load) > acks0 && TestServer::count(&inbox) > delivered0,
        );
        if B_KILLS.contains(&k) {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
            w.b.kill9();
            log.push(Kill {
                node: 'B',
                at: SystemTime::now(),
            });
            w.b.start();
            let delivered = TestServer::count(&inbox);
            wait(
                &w.a,
                &format!("B receives again after kill {k} of B"),
                || TestServer::count(&inbox) > delivered,
            );
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..500)));
        lives.push((acked(&load) - acks0, TestServer::count(&inbox) - delivered0));
        w.a.kill9();
        log.push(Kill {
            node: 'A',
            at: SystemTime::now(),
        });
        w.a.start();
        *load.addr.lock().expect("addr") = w.a.addr("submission");
    }
    // The load goes on after the last kill: A acknowledges and delivers again, then the load stops.
    let (acks0, delivered0) = (acked(&load), TestServer::count(&inbox));
    wait(
        &w.a,
        "A acknowledges and delivers after the last kill",
        || acked(&load) > acks0 && TestServer::count(&inbox) > delivered0,
    );
    load.stop.store(true, Ordering::SeqCst);
    for t in threads {
        if t.join().is_err() {
            w.a.fail("a submitter panicked");
        }
    }
    let load_time = t0.elapsed();
    wait(&w.a, "A's queue is empty", || queue_list(&w.a).is_empty());

    let acked_ids = load.acked.lock().expect("acked").clone();
    let refused = load.refused.lock().expect("refused").clone();
    let unknown: HashSet<String> = load
        .unknown
        .lock()
        .expect("unknown")
        .iter()
        .cloned()
        .collect();
    let copies = copies(&inbox);
    let lost: Vec<_> = acked_ids
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never reached B, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let acked_set: HashSet<&String> = acked_ids.iter().collect();
    let strangers: Vec<_> = copies
        .keys()
        .filter(|id| !acked_set.contains(id) && !unknown.contains(*id))
        .collect();
    assert!(
        strangers.is_empty(),
        "delivered although refused with a reply (or never sent): {strangers:?}; refused: {refused:?}"
    );
    let fivexx: Vec<_> = refused.iter().filter(|(_, r)| r.starts_with('5')).collect();
    assert!(
        fivexx.is_empty(),
        "A refused submissions for good: {fivexx:?}"
    );

    let extras: Vec<Extra> = copies
        .iter()
        .flat_map(|(id, at)| {
            at.windows(2).map(|pair| Extra {
                id,
                at: pair[0],
                next: pair[1],
            })
        })
        .collect();
    let since = |t: SystemTime| t.duration_since(start).unwrap_or_default();
    let kill_of = assign(&log, &extras).unwrap_or_else(|e| {
        let x = &extras[e];
        let kills: Vec<_> = log.iter().map(|k| (k.node, since(k.at))).collect();
        panic!(
            "{} has a copy (written {:?} into the test, next {:?}) that no kill's crash window explains \
             (at most {IN_FLIGHT} per kill); kills: {kills:?}",
            x.id,
            since(x.at),
            since(x.next)
        )
    });
    let (mut before, mut after) = (Duration::ZERO, Duration::ZERO);
    let mut per_node: HashMap<char, usize> = HashMap::new();
    for (x, k) in extras.iter().zip(&kill_of) {
        let kill = log[*k];
        before = before.max(kill.at.duration_since(x.at).unwrap_or_default());
        after = after.max(x.at.duration_since(kill.at).unwrap_or_default());
        *per_node.entry(kill.node).or_default() += 1;
    }
    let most = (0..log.len())
        .map(|k| kill_of.iter().filter(|x| **x == k).count())
        .max()
        .unwrap_or(0);
    assert!(
        bounces(&w.a, ALICE).is_empty(),
        "A bounced mail to alice: every recipient is deliverable"
    );
    let unknown_delivered = copies.keys().filter(|id| unknown.contains(*id)).count();
    let (a_kills, b_kills) = (
        log.iter().filter(|k| k.node == 'A').count(),
        log.iter().filter(|k| k.node == 'B').count(),
    );
    eprintln!(
        "kills: {a_kills} of A, {b_kills} of B; {} acknowledged, {} lost, {} refused with a reply, {} without a \
         reply ({unknown_delivered} of them delivered); {} extra copies (after kills of A: {}, of B: {}; \
         at most {most} per kill, bound {IN_FLIGHT}; copies written up to {before:?} before and {after:?} after \
         their kill); per life of A (acks, deliveries): {lives:?}; load {load_time:?}, \
         test {:?}",
        acked_ids.len(),
        lost.len(),
        refused.len(),
        unknown.len(),
        extras.len(),
        per_node.get(&'A').copied().unwrap_or(0),
        per_node.get(&'B').copied().unwrap_or(0),
        t0.elapsed()
    );
}
