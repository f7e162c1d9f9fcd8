//! The concurrency limits of outbound delivery: how many domain transactions run at once in total, and how
//! many per destination domain (so one big recipient domain cannot take every connection, and a small one is
//! not hammered). Semaphores of domains with nobody delivering are dropped, so the table does not grow with
//! every domain ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One semaphore per destination domain that has deliveries running or waiting.
type Domains = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

/// The total and per-domain limits.
pub(super) struct Limits {
    total: Arc<Semaphore>,
    per_domain: usize,
    domains: Domains,
}

/// The right to run one transaction to one domain; released when dropped.
pub(super) struct Permits {
    _total: Option<OwnedSemaphorePermit>,
    _domain: DomainPermit,
}

/// A per-domain permit that removes its domain's semaphore when the last user is gone.
struct DomainPermit {
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
    domain: String,
    domains: Domains,
}

impl Limits {
    /// `total` transactions at once, at most `per_domain` of them to any one domain (both at least 1).
    pub(super) fn new(total: usize, per_domain: usize) -> Limits {
        Limits {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_domain: per_domain.max(1),
            domains: Arc::default(),
        }
    }

    /// The per-domain limit.
    pub(super) fn per_domain(&self) -> usize {
        self.per_domain
    }

    /// Waits for a slot for `domain` (lowercase), first per domain and then in total, so a delivery waiting
    /// for a busy domain holds no slot that another domain could use.
    pub(super) async fn acquire(&self, domain: &str) -> Permits {
        let semaphore = lock(&self.domains)
            .entry(domain.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_domain)))
            .clone();
        let mut domain_permit = DomainPermit {
            permit: None,
            semaphore: semaphore.clone(),
            domain: domain.to_string(),
            domains: self.domains.clone(),
        };
        // The semaphores are never closed, so acquiring cannot fail.
        domain_permit.permit = semaphore.acquire_owned().await.ok();
        let total = self.total.clone().acquire_owned().await.ok();
        Permits {
            _total: total,
            _domain: domain_permit,
        }
    }

    /// Domains with a semaphore right now (tests check the table empties).
    #[cfg(test)]
    pub(super) fn tracked_domains(&self) -> usize {
        lock(&self.domains).len()
    }
}

impl Drop for DomainPermit {
    fn drop(&mut self) {
        self.permit = None;
        let mut domains = lock(&self.domains);
        // Every clone is made under this lock, so only the table's and ours left means nobody else
        // delivers to or waits for this domain.
        if Arc::strong_count(&self.semaphore) == 2 {
            domains.remove(&self.domain);
        }
    }
}

/// Locks the table; a panic elsewhere while holding it leaves a table that is still consistent.
fn lock(domains: &Domains) -> MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
    domains.lock().unwrap_or_else(|e| e.into_inner())
}
