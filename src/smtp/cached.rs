//! A value read from the database at most once per period and shared by every task meanwhile (which
//! mailboxes are away, which domains are hosted): one reload at a time, the others wait for it instead of each
//! asking the database.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `T`, trusted for `ttl` after it was read.
#[derive(Debug)]
pub struct Cached<T> {
    loaded: Mutex<Option<(Instant, Arc<T>)>>,
    reload: tokio::sync::Mutex<()>,
    ttl: Duration,
}

impl<T> Cached<T> {
    /// Nothing read yet; a value is trusted for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Cached {
            loaded: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
            ttl,
        }
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let guard = self.loaded.lock().ok()?;
        let (at, value) = guard.as_ref()?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// The value, read with `load` when it is older than the period; `None` when `load` fails (nothing is
    /// kept then, the next call tries again).
    pub async fn get<F, Fut>(&self, load: F) -> Option<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        if let Some(value) = self.fresh() {
            return Some(value);
        }
        let _reloading = self.reload.lock().await;
        if let Some(value) = self.fresh() {
            return Some(value);
        }
        let value = Arc::new(load().await?);
        if let Ok(mut guard) = self.loaded.lock() {
            *guard = Some((Instant::now(), value.clone()));
        }
        Some(value)
    }
}
