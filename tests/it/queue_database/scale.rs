//! Several nodes on one queue: concurrent claims never hand out an entry twice, and the scale-out scenario of
//! issue 6 at the queue level (2,000 messages, two nodes, one dies halfway, everything delivered once).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mailctl::smtp::queue::{Claimed, Completion, QueueError};

use super::*;

kit::on_both_backends!(concurrent_claimers_never_get_the_same_entry);

fn concurrent_claimers_never_get_the_same_entry(db: &TestDb) {
    let nodes = [Arc::new(node(db)), Arc::new(node(db))];
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(enqueue(&**nodes[n % 2], &["x@r.test"]));
    }
    let seen: Arc<Mutex<HashMap<QueueId, usize>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..6 {
        let queue = Arc::clone(&nodes[w % 2]);
        let seen = Arc::clone(&seen);
        workers.push(thread::spawn(move || {
            loop {
                let claims = queue.claim_due(t(1), LEASE, 1 + w % 3).unwrap();
                if claims.is_empty() && queue.list(t(1)).unwrap().is_empty() {
                    break;
                }
                for claim in claims {
                    *seen.lock().unwrap().entry(claim.id().clone()).or_default() += 1;
                    queue
                        .record(&claim, &[delivered("x@r.test")], t(2))
                        .unwrap();
                    assert!(matches!(
                        queue.complete(&claim).unwrap(),
                        Completion::Removed(_)
                    ));
                }
            }
        }));
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), ids.len(), "every entry delivered");
    assert!(
        seen.values().all(|&n| n == 1),
        "an entry was claimed twice: {seen:?}"
    );
    assert_empty(db);
}

/// Messages in the scale-out scenario.
const MESSAGES: usize = 2000;
/// Short leases, so the survivor takes over within seconds.
const SHORT_LEASE: Duration = Duration::from_secs(3);
/// Entries per claim.
const BATCH: usize = 10;

/// What the delivery threads of both nodes saw.
#[derive(Default)]
struct World {
    /// Per id: the nodes whose delivery was recorded (a delivery counts once its `record` succeeded).
    recorded: Mutex<HashMap<QueueId, Vec<&'static str>>>,
    /// Fake deliveries made, recorded or not.
    attempts: AtomicUsize,
    /// The dying node has stopped.
    dead: AtomicBool,
    /// The claims the dying node still held when it stopped, with their lease expiry.
    abandoned: Mutex<Vec<(QueueId, DateTime<Utc>)>>,
    /// When the survivor claimed each entry.
    claimed_by_survivor: Mutex<HashMap<QueueId, DateTime<Utc>>>,
}

impl World {
    fn recorded_total(&self) -> usize {
        self.recorded.lock().unwrap().len()
    }
}

/// One delivery thread of a node: claim, "deliver" (count it), record, complete, until the queue is empty.
/// The dying node stops dead once half the messages are recorded: it "delivers" the claim in hand without
/// recording it (a crash between the remote 250 and `record`) and abandons the rest of its batch, leases and
/// all.
fn deliver(queue: Arc<Node>, name: &'static str, dies: bool, world: Arc<World>) {
    loop {
        if dies && world.dead.load(Ordering::SeqCst) {
            return;
        }
        let now = Utc::now();
        let claims = queue.claim_due(now, SHORT_LEASE, BATCH).unwrap();
        if claims.is_empty() {
            if queue.stats(Utc::now()).unwrap().entries == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        if !dies {
            let mut at = world.claimed_by_survivor.lock().unwrap();
            at.extend(claims.iter().map(|c| (c.id().clone(), now)));
        }
        for (i, claim) in claims.iter().enumerate() {
            if dies && (world.dead.load(Ordering::SeqCst) || world.recorded_total() >= MESSAGES / 2)
            {
                world.dead.store(true, Ordering::SeqCst);
                world.attempts.fetch_add(1, Ordering::SeqCst);
                let mut abandoned = world.abandoned.lock().unwrap();
                abandoned.extend(
                    claims[i..]
                        .iter()
                        .map(|c| (c.id().clone(), c.lease.expires)),
                );
                return;
            }
            deliver_one(&queue, name, claim, &world);
        }
    }
}

fn deliver_one(queue: &Node, name: &'static str, claim: &Claimed, world: &World) {
    let mut claim = claim.clone();
    let left = claim.lease.expires - Utc::now();
    if left.to_std().unwrap_or_default() < SHORT_LEASE / 2 {
        match queue.renew(&claim, Utc::now(), SHORT_LEASE) {
            Ok(renewed) => claim = renewed,
            Err(QueueError::Busy { .. }) => return,
            Err(e) => panic!("renew: {e}"),
        }
    }
    let now = Utc::now();
    let results: Vec<_> = claim
        .entry
        .due_recipients(now)
        .iter()
        .map(|r| delivered(&r.address))
        .collect();
    assert_eq!(results.len(), 1, "every message has one recipient, due now");
    world.attempts.fetch_add(1, Ordering::SeqCst);
    queue.record(&claim, &results, now).unwrap();
    world
        .recorded
        .lock()
        .unwrap()
        .entry(claim.id().clone())
        .or_default()
        .push(name);
    assert!(matches!(
        queue.complete(&claim).unwrap(),
        Completion::Removed(_)
    ));
}

#[test]
fn two_nodes_deliver_2000_messages_exactly_once_when_one_dies_halfway() {
    let _heavy = kit::exclusive();
    let db = TestDb::mariadb();
    let survivor = Arc::new(node(&db));
    let dying = Arc::new(node(&db));

    let started = Instant::now();
    let enqueuers: Vec<_> = (0..4)
        .map(|n| {
            let queue = Arc::clone(if n % 2 == 0 { &survivor } else { &dying });
            thread::spawn(move || {
                let message = format!("Subject: scale\r\n\r\n{}\r\n", "x".repeat(200));
                (0..MESSAGES / 4)
                    .map(|i| {
                        let rcpt = format!("user{n}-{i}@r.test");
                        queue
                            .enqueue(&envelope(&[&rcpt]), message.as_bytes(), Utc::now())
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let queued: HashSet<QueueId> = enqueuers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(queued.len(), MESSAGES);
    eprintln!("queued {MESSAGES} messages in {:?}", started.elapsed());

    let started = Instant::now();
    let world = Arc::new(World::default());
    let spawn = |queue: &Arc<Node>, name: &'static str, dies: bool| {
        let (queue, world) = (Arc::clone(queue), Arc::clone(&world));
        thread::spawn(move || deliver(queue, name, dies, world))
    };
    let dying_threads = [spawn(&dying, "dying", true), spawn(&dying, "dying", true)];
    let survivor_threads = [
        spawn(&survivor, "survivor", false),
        spawn(&survivor, "survivor", false),
    ];
    for t in dying_threads {
        t.join().unwrap();
    }
    // The dying node goes away without releasing anything: its pool closes, its leases stay.
    drop(dying);
    let died = Instant::now();
    for t in survivor_threads {
        t.join().unwrap();
    }
    eprintln!(
        "delivered in {:?} ({:?} after the node died)",
        started.elapsed(),
        died.elapsed()
    );

    let recorded = world.recorded.lock().unwrap();
    let twice: Vec<_> = recorded.iter().filter(|(_, by)| by.len() != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(
        recorded.keys().cloned().collect::<HashSet<_>>(),
        queued,
        "every message delivered"
    );
    let by = |name| recorded.values().filter(|by| by[0] == name).count();
    let (by_dying, by_survivor) = (by("dying"), by("survivor"));
    eprintln!(
        "dying node delivered {by_dying}, survivor {by_survivor}; {} fake deliveries in all",
        world.attempts.load(Ordering::SeqCst)
    );
    assert!(by_dying > 0 && by_survivor > 0, "both nodes delivered");

    let abandoned = world.abandoned.lock().unwrap();
    assert!(
        !abandoned.is_empty(),
        "the dying node held claims when it stopped"
    );
    let claimed_at = world.claimed_by_survivor.lock().unwrap();
    for (id, expired) in abandoned.iter() {
        assert_eq!(recorded[id], ["survivor"], "{id} taken over");
        assert!(
            claimed_at[id] >= *expired,
            "{id} taken over before its lease expired"
        );
    }
    // Each unrecorded fake delivery is the one message the dying node sent but never recorded: the
    // at-least-once window of a crash between the remote 250 and `record`.
    let unrecorded = world.attempts.load(Ordering::SeqCst) - MESSAGES;
    assert!(
        (1..=2).contains(&unrecorded),
        "{unrecorded} deliveries not recorded"
    );
    assert_empty(&db);
}
