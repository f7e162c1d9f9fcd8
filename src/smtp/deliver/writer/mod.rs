//! The Maildir group-commit writer: a few dedicated threads that take delivery jobs from every SMTP session,
//! and deliver whatever is queued at that moment as one batch with [`MaildirStore::deliver_many`], so the
//! directory fsyncs are shared by every message of the batch instead of paid once per message.
//!
//! Why threads and a queue: delivery is blocking file I/O with fsyncs that take milliseconds, which must never
//! run on the tokio reactor; and only one party that sees many messages at once can merge their syncs. Jobs go
//! into one queue; a writer thread waits for the first, takes everything else queued behind it (up to
//! [`Config::max_jobs`] jobs or [`Config::max_bytes`] bytes, so a flood cannot grow a batch without bound),
//! delivers the batch and answers each job. Several threads share the queue: while one is fsyncing its batch,
//! the next collects the jobs that arrive meanwhile, so the disk always has work and the fsyncs of concurrent
//! batches overlap: the filesystem journal commits concurrent fsyncs together, which is what makes them cheap
//! (see [`Config::default`] for the measurements).
//!
//! **All or nothing per job.** A job (one message to several mailboxes) succeeds only if every target landed.
//! Otherwise the files of that job that did land are removed again, and the directories they were removed from
//! are fsynced before the job is answered: a removal lost in a crash would bring the message back, and the
//! sender, told to retry, would deliver it a second time. One job's failure never affects another's.
//!
//! The threads stop once every [`Writer`] clone is dropped and the queue is empty.

mod rollback;
#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use tokio::sync::oneshot;

use super::maildir::{DeliverError, Delivered, Item, MaildirStore};
use super::{Failure, Target};
use crate::smtp::queue::QueueId;

/// The Maildir++ folder junk is filed into.
const JUNK_FOLDER: &str = "Junk";

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Writer threads sharing the queue (at least one is started).
    pub threads: usize,
    /// Most jobs in one batch.
    pub max_jobs: usize,
    /// Most message bytes (size times targets) in one batch; a single larger job still goes alone.
    pub max_bytes: usize,
}

impl Default for Config {
    /// Eight threads, batches of at most 256 jobs or 64 MiB.
    ///
    /// Measured (release build, ext4 in a 2-core VM shared with other builds, 16 submitters of 4 KiB messages to
    /// 16 mailboxes): one thread delivered 500-800 msgs/s, because the fsyncs of a batch then run one after the
    /// other; four to sixteen threads delivered 1,300-2,300 msgs/s, as their fsyncs overlap and the journal
    /// commits them together. Staging a batch's files on a pool of threads inside one batch did no better. On
    /// that VM the limit is CPU time in the kernel (a bare C loop creating and fsyncing 4 KiB files from 16
    /// threads managed 3,200 files/s under the same load), so eight threads is a margin for disks with slower
    /// flushes, where overlap matters most.
    fn default() -> Self {
        Config {
            threads: 8,
            max_jobs: 256,
            max_bytes: 64 << 20,
        }
    }
}

/// A handle on the writer threads: cheap to clone, shared by every session.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    #[cfg(test)]
    shared: Arc<Shared>,
}

/// One message for one or more mailboxes, and where to send the verdict.
struct Job {
    id: QueueId,
    message: Arc<Vec<u8>>,
    targets: Vec<Target>,
    reply: oneshot::Sender<Result<(), Failure>>,
}

/// What the writer threads share.
struct Shared {
    store: MaildirStore,
    config: Config,
    queue: Mutex<mpsc::Receiver<Job>>,
    /// Jobs per batch, in order, for tests that check batches merge.
    #[cfg(test)]
    batches: Mutex<Vec<usize>>,
}

impl Writer {
    /// Starts the writer threads delivering into `store`. A thread that cannot be started is skipped; if none
    /// can, every delivery fails with a temporary error (the sessions answer 451 and the senders retry).
    pub fn start(store: MaildirStore, config: Config) -> Writer {
        let (writer, shared) = Writer::new(store, config);
        spawn_threads(&shared);
        writer
    }

    /// The queue and its shared state, with no thread yet.
    fn new(store: MaildirStore, config: Config) -> (Writer, Arc<Shared>) {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            store,
            config,
            queue: Mutex::new(rx),
            #[cfg(test)]
            batches: Mutex::new(Vec::new()),
        });
        let writer = Writer {
            queue: tx,
            #[cfg(test)]
            shared: Arc::clone(&shared),
        };
        (writer, shared)
    }

    /// Delivers message `id` to every target (junk ones into the `Junk` folder), durably, or to none of
    /// them; the file names carry the id. Never blocks: the work happens on the writer threads.
    pub async fn deliver(
        &self,
        id: &QueueId,
        message: Arc<Vec<u8>>,
        targets: Vec<Target>,
    ) -> Result<(), Failure> {
        let answer = self.submit(id.clone(), message, targets)?;
        answer
            .await
            .unwrap_or_else(|_| Err(Failure::transient("local delivery was interrupted")))
    }

    /// Queues a job; the receiver gets the verdict.
    fn submit(
        &self,
        id: QueueId,
        message: Arc<Vec<u8>>,
        targets: Vec<Target>,
    ) -> Result<oneshot::Receiver<Result<(), Failure>>, Failure> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id,
            message,
            targets,
            reply,
        };
        self.queue
            .send(job)
            .map_err(|_| Failure::transient("local delivery is not running"))?;
        Ok(answer)
    }
}

/// Starts the configured number of threads on `shared`'s queue.
fn spawn_threads(shared: &Arc<Shared>) {
    for n in 0..shared.config.threads.max(1) {
        let shared = Arc::clone(shared);
        let started = std::thread::Builder::new()
            .name(format!("maildir-writer-{n}"))
            .spawn(move || run(&shared));
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start a maildir writer thread");
        }
    }
}

/// A writer thread: batch after batch until every sender is gone. A panic in one batch answers its jobs with
/// a temporary failure (their reply channels are dropped) and the thread goes on with the next.
fn run(shared: &Shared) {
    while let Some(batch) = next_batch(shared) {
        #[cfg(test)]
        shared
            .batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(batch.len());
        if catch_unwind(AssertUnwindSafe(|| deliver_batch(&shared.store, batch))).is_err() {
            tracing::error!("maildir writer: a batch panicked; its senders were told to retry");
        }
    }
}

/// Waits for a job, then takes whatever else is already queued, within the configured bounds. `None` once the
/// queue is closed and empty.
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
    let queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    let first = queue.recv().ok()?;
    let mut bytes = job_bytes(&first);
    let mut batch = vec![first];
    while batch.len() < shared.config.max_jobs && bytes < shared.config.max_bytes {
        let Ok(job) = queue.try_recv() else { break };
        bytes = bytes.saturating_add(job_bytes(&job));
        batch.push(job);
    }
    Some(batch)
}

/// The bytes a job writes.
fn job_bytes(job: &Job) -> usize {
    job.message.len().saturating_mul(job.targets.len())
}

/// Delivers one batch with a single `deliver_many`, takes back the landed files of every job that failed
/// somewhere, and answers every job.
fn deliver_batch(store: &MaildirStore, batch: Vec<Job>) {
    let items: Vec<Item> = batch
        .iter()
        .flat_map(|job| {
            job.targets.iter().map(|t| Item {
                maildir: &t.maildir,
                folder: t.junk.then_some(JUNK_FOLDER),
                message: &job.message,
                id: Some(job.id.as_str()),
            })
        })
        .collect();
    let mut results = store.deliver_many(&items).into_iter();
    drop(items);
    let mut undo = rollback::Rollback::default();
    let verdicts: Vec<Result<(), Failure>> = batch
        .iter()
        .map(|job| {
            let outcome: Vec<Result<Delivered, DeliverError>> =
                results.by_ref().take(job.targets.len()).collect();
            verdict(job, outcome, &mut undo)
        })
        .collect();
    undo.sync();
    for (job, verdict) in batch.into_iter().zip(verdicts) {
        // The session may have gone away meanwhile; nothing to tell it then.
        let _ = job.reply.send(verdict);
    }
}

/// A job's result from its targets' results: Ok when all landed; else its landed files are taken back and
/// the failures combined.
fn verdict(
    job: &Job,
    outcome: Vec<Result<Delivered, DeliverError>>,
    undo: &mut rollback::Rollback,
) -> Result<(), Failure> {
    if outcome.len() == job.targets.len() && outcome.iter().all(Result::is_ok) {
        return Ok(());
    }
    let mut failures = Vec::new();
    for (target, result) in job.targets.iter().zip(outcome) {
        match result {
            Ok(delivered) => undo.retract(&delivered.path),
            Err(e) => {
                tracing::warn!(mailbox = %target.mailbox, error = %e, "maildir delivery failed");
                failures.push(failure_of(&e));
            }
        }
    }
    Err(Failure::combine(&failures).unwrap_or_else(|| Failure::transient("local delivery failed")))
}

/// What the SMTP client is told about a Maildir error: whether to retry, and a reason without paths (the
/// details, paths included, go to the log).
fn failure_of(e: &DeliverError) -> Failure {
    match e {
        DeliverError::BadPath { .. } | DeliverError::BadFolder { .. } => {
            Failure::permanent("mailbox has an invalid storage location")
        }
        DeliverError::Escapes { .. } => {
            Failure::permanent("mailbox storage location is outside the mail store")
        }
        DeliverError::NotADirectory { .. } => {
            Failure::transient("local mail store is misconfigured")
        }
        DeliverError::Io { action, source, .. } => {
            Failure::transient(format!("local mail store error ({action}): {source}"))
        }
    }
}
