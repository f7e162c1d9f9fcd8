//! The group-commit writer on a real filesystem: exactly-once delivery under concurrency, batches that merge,
//! per-job all-or-nothing, and a throughput experiment (ignored; run it by name).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{Config, Writer, spawn_threads};
use crate::smtp::deliver::Target;
use crate::smtp::deliver::maildir::MaildirStore;

struct Scratch {
    _dir: tempfile::TempDir,
    base: PathBuf,
    store: MaildirStore,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("vmail");
    fs::create_dir(&base).unwrap();
    let store = MaildirStore::new(&base, "mx.example.test");
    Scratch {
        _dir: dir,
        base,
        store,
    }
}

fn target(maildir: &str, junk: bool) -> Target {
    Target {
        mailbox: format!("{}@example.com", maildir.trim_end_matches('/')),
        maildir: maildir.to_string(),
        junk,
    }
}

/// The queue id of test message `n`.
fn id(n: usize) -> crate::smtp::queue::QueueId {
    crate::smtp::queue::QueueId::parse(&format!("{n:024x}")).unwrap()
}

fn message(n: usize) -> Arc<Vec<u8>> {
    Arc::new(format!("Subject: message {n}\r\n\r\nbody {n}\r\n").into_bytes())
}

/// The contents of every file in a directory (none when it does not exist).
fn contents(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect()
}

fn batches(writer: &Writer) -> Vec<usize> {
    writer
        .shared
        .batches
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_deliveries_land_exactly_once() {
    let s = scratch();
    let writer = Writer::start(s.store.clone(), Config::default());
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let targets = vec![target("a/", false), target("b/", n % 3 == 0)];
                writer.deliver(&id(n), message(n), targets).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(()));
    }
    let in_a: Vec<_> = contents(&s.base.join("a/new"));
    let expected: HashSet<Vec<u8>> = (0..200).map(|n| message(n).to_vec()).collect();
    assert_eq!(in_a.len(), 200);
    assert_eq!(in_a.into_iter().collect::<HashSet<_>>(), expected);
    let in_b: Vec<_> = contents(&s.base.join("b/new"))
        .into_iter()
        .chain(contents(&s.base.join("b/.Junk/new")))
        .collect();
    assert_eq!(in_b.len(), 200);
    assert_eq!(in_b.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(contents(&s.base.join("b/.Junk/new")).len(), 67);
    assert!(contents(&s.base.join("a/tmp")).is_empty());
    assert_eq!(batches(&writer).iter().sum::<usize>(), 200);
}

#[tokio::test]
async fn jobs_queued_together_are_delivered_as_one_batch() {
    let s = scratch();
    let (writer, shared) = Writer::new(s.store.clone(), Config::default());
    let answers: Vec<_> = (0..100)
        .map(|n| {
            writer
                .submit(id(n), message(n), vec![target("a/", false)])
                .unwrap()
        })
        .collect();
    spawn_threads(&shared);
    for answer in answers {
        assert_eq!(answer.await.unwrap(), Ok(()));
    }
    assert_eq!(batches(&writer), [100]);
    assert_eq!(contents(&s.base.join("a/new")).len(), 100);
}

#[tokio::test]
async fn batches_are_capped_by_jobs_and_by_bytes() {
    let s = scratch();
    let config = Config {
        threads: 1,
        max_jobs: 16,
        max_bytes: 1 << 30,
    };
    let (writer, shared) = Writer::new(s.store.clone(), config);
    let answers: Vec<_> = (0..40)
        .map(|n| {
            writer
                .submit(id(n), message(n), vec![target("a/", false)])
                .unwrap()
        })
        .collect();
    spawn_threads(&shared);
    for answer in answers {
        assert_eq!(answer.await.unwrap(), Ok(()));
    }
    assert_eq!(batches(&writer), [16, 16, 8]);

    let config = Config {
        threads: 1,
        max_jobs: 256,
        max_bytes: 10_000,
    };
    let (writer, shared) = Writer::new(s.store.clone(), config);
    let big = Arc::new(vec![b'x'; 4000]);
    let answers: Vec<_> = (0..5)
        .map(|_| {
            let targets = vec![target("b/", false)];
            writer.submit(id(0), big.clone(), targets).unwrap()
        })
        .collect();
    spawn_threads(&shared);
    for answer in answers {
        assert_eq!(answer.await.unwrap(), Ok(()));
    }
    assert_eq!(batches(&writer), [3, 2], "4000, 8000, 12000 >= 10000: cut");
}

#[tokio::test]
async fn a_failing_job_is_rolled_back_without_affecting_the_others() {
    let s = scratch();
    // "blocked" is a file where a domain directory should be: NotADirectory, temporary.
    fs::write(s.base.join("blocked"), b"").unwrap();
    let (writer, shared) = Writer::new(s.store.clone(), Config::default());
    let good_1 = writer
        .submit(
            id(1),
            message(1),
            vec![target("a/", false), target("b/", true)],
        )
        .unwrap();
    let permanent = writer
        .submit(
            id(2),
            message(2),
            vec![
                target("a/", false),
                target("../outside/", false),
                target("b/", true),
            ],
        )
        .unwrap();
    let temporary = writer
        .submit(
            id(3),
            message(3),
            vec![
                target("c/", false),
                target("blocked/x/", false),
                target("../outside/", false),
            ],
        )
        .unwrap();
    let good_2 = writer
        .submit(id(4), message(4), vec![target("a/", false)])
        .unwrap();
    spawn_threads(&shared);
    assert_eq!(good_1.await.unwrap(), Ok(()));
    let err = permanent.await.unwrap().unwrap_err();
    assert!(!err.temporary, "{err:?}");
    assert!(
        !err.reason.contains('/'),
        "no paths for the client: {err:?}"
    );
    let err = temporary.await.unwrap().unwrap_err();
    assert!(
        err.temporary,
        "any temporary failure makes the job temporary"
    );
    assert_eq!(good_2.await.unwrap(), Ok(()));
    assert_eq!(batches(&writer), [4]);

    let mut in_a = contents(&s.base.join("a/new"));
    in_a.sort();
    assert_eq!(in_a, [message(1).to_vec(), message(4).to_vec()]);
    assert_eq!(contents(&s.base.join("b/.Junk/new")), [message(1).to_vec()]);
    assert!(contents(&s.base.join("c/new")).is_empty(), "rolled back");
    for dir in ["a/tmp", "b/.Junk/tmp", "c/tmp"] {
        assert!(contents(&s.base.join(dir)).is_empty(), "{dir}");
    }
    assert!(!s.base.parent().unwrap().join("outside").exists());

    // The writer goes on working after failures.
    let later = writer
        .deliver(&id(5), message(5), vec![target("c/", false)])
        .await;
    assert_eq!(later, Ok(()));
    assert_eq!(contents(&s.base.join("c/new")), [message(5).to_vec()]);
}

#[tokio::test]
async fn the_threads_stop_when_every_writer_is_dropped() {
    let s = scratch();
    let writer = Writer::start(s.store.clone(), Config::default());
    let clone = writer.clone();
    assert_eq!(
        clone
            .deliver(&id(1), message(1), vec![target("a/", false)])
            .await,
        Ok(())
    );
    let shared = Arc::downgrade(&writer.shared);
    drop(writer);
    drop(clone);
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.upgrade().is_some() {
        assert!(Instant::now() < deadline, "writer threads still running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_missing_mail_base_fails_temporarily() {
    let s = scratch();
    let store = MaildirStore::new(s.base.join("missing"), "mx");
    let writer = Writer::start(store, Config::default());
    let err = writer
        .deliver(&id(1), message(1), vec![target("a/", false)])
        .await
        .unwrap_err();
    assert!(err.temporary);
    assert!(!err.reason.contains("missing"), "{err:?}");
}

/// Throughput of 4 KiB messages from 16 concurrent submitters, by number of writer threads. Run with
/// `cargo test --release --lib writer::tests::throughput -- --ignored --nocapture`; set `MAILCTL_BENCH_DIR`
/// to measure on another filesystem than the temporary directory's.
#[test]
#[ignore = "a measurement, not a test"]
fn throughput() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let per_session = 200;
    for threads in [1, 2, 4, 8] {
        let dir = match std::env::var_os("MAILCTL_BENCH_DIR") {
            Some(parent) => tempfile::tempdir_in(parent).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let store = MaildirStore::new(dir.path(), "mx.example.test");
        let config = Config {
            threads,
            ..Config::default()
        };
        let writer = Writer::start(store, config);
        let message = Arc::new(vec![b'x'; 4096]);
        let started = Instant::now();
        runtime.block_on(async {
            let sessions: Vec<_> = (0..16)
                .map(|session| {
                    let writer = writer.clone();
                    let message = message.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_session {
                            let targets = vec![target(&format!("d/u{session}/"), false)];
                            writer
                                .deliver(&id(0), message.clone(), targets)
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for session in sessions {
                session.await.unwrap();
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let all = batches(&writer);
        println!(
            "threads={threads}: {:.0} msgs/s ({} batches, mean {:.1} jobs)",
            (16 * per_session) as f64 / elapsed,
            all.len(),
            all.iter().sum::<usize>() as f64 / all.len() as f64
        );
    }
}
