//! Group commit of directory fsyncs: every enqueue and record update must fsync `msg/` before it returns, but
//! one fsync started after a rename makes that rename durable whoever asked for it. Concurrent callers
//! therefore share rounds: the first caller syncs, callers arriving meanwhile join the next round, and one of
//! them runs it as soon as the current one ends; each round's result (success or the error) goes to everyone
//! who joined it.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use super::files::{Faults, Step};

/// The shared fsync of one directory.
#[derive(Debug)]
pub(super) struct DirSync {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
    /// Fsyncs actually run, for the tests that check rounds are shared.
    #[cfg(test)]
    pub(super) rounds: std::sync::atomic::AtomicUsize,
}

/// Whether a round is running, and the round that callers arriving now join.
#[derive(Debug)]
struct State {
    syncing: bool,
    next: Arc<Round>,
}

/// One fsync and its result: `Err` keeps the error's kind and text, since `io::Error` cannot be cloned.
#[derive(Debug, Default)]
struct Round {
    result: OnceLock<Result<(), (io::ErrorKind, String)>>,
}

impl DirSync {
    /// A group committer for `dir`.
    pub(super) fn new(dir: PathBuf) -> Self {
        DirSync {
            dir,
            state: Mutex::new(State {
                syncing: false,
                next: Arc::default(),
            }),
            done: Condvar::new(),
            #[cfg(test)]
            rounds: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Returns once an fsync of the directory that started after this call has finished; every rename the
    /// caller did before calling is then durable.
    pub(super) fn sync(&self, faults: &Faults) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = Arc::clone(&state.next);
        loop {
            if let Some(result) = mine.result.get() {
                return result
                    .clone()
                    .map_err(|(kind, text)| io::Error::new(kind, text));
            }
            if state.syncing {
                state = self
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // No round is running, so ours has not started: run it for everyone who joined.
            state.syncing = true;
            let round = std::mem::take(&mut state.next);
            drop(state);
            let result = self.fsync(faults).map_err(|e| (e.kind(), e.to_string()));
            let _ = round.result.set(result);
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.syncing = false;
            self.done.notify_all();
        }
    }

    /// One fsync of the directory.
    fn fsync(&self, faults: &Faults) -> io::Result<()> {
        #[cfg(test)]
        self.rounds
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        faults.check(Step::SyncDir)?;
        File::open(&self.dir)?.sync_all()
    }
}
