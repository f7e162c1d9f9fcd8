//! Shared limits that span sessions: simultaneous connections (total and per client IP) and AUTH failures per
//! client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Counts open connections; a [`Slot`] holds one and gives it back when dropped, however the session ends.
pub struct Connections {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection.
pub struct Slot {
    owner: Arc<Connections>,
    ip: IpAddr,
}

/// Why a connection was not admitted (also the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_ip` reached for this client.
    PerIp,
}

impl Refusal {
    /// Every refusal, in exposition order (the metrics index by the variant).
    pub const ALL: [Refusal; 2] = [Refusal::Total, Refusal::PerIp];

    /// The label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

/// The guard of `m`, also after a panic elsewhere poisoned it (the counters stay usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connections {
    /// A counter enforcing both limits.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a connection from `ip`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut open = lock(&self.open);
        if open.0 >= self.max_total {
            return Err(Refusal::Total);
        }
        let per_ip = open.1.entry(ip).or_insert(0);
        if *per_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *per_ip += 1;
        open.0 += 1;
        Ok(Slot {
            owner: self.clone(),
            ip,
        })
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        lock(&self.open).0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.owner.open);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// AUTH failures per client IP: each failure after the first is answered more slowly, and after
/// `max_failures` the IP may not try again for `lockout`. Success clears the record.
pub struct AuthThrottle {
    max_failures: u32,
    lockout: Duration,
    records: Mutex<HashMap<IpAddr, Record>>,
}

struct Record {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// What a failure means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// Answer after this delay (zero for the first failure).
    Delay(Duration),
    /// Too many failures: refuse and close; the IP is locked out.
    LockedOut,
}

/// Failures older than this are forgotten, so an occasional typo never accumulates into a lockout.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The longest delay given to a failing client.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// More tracked IPs than this and stale records are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

impl AuthThrottle {
    /// A throttle with the configured limits.
    pub fn new(max_failures: u32, lockout: Duration) -> AuthThrottle {
        AuthThrottle {
            max_failures,
            lockout,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` is locked out right now.
    pub fn locked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        lock(&self.records)
            .get(&ip)
            .and_then(|r| r.locked_until)
            .is_some_and(|until| until > now)
    }

    /// Records a failure from `ip` and says how to answer it.
    pub fn failed(&self, ip: IpAddr) -> Penalty {
        let now = Instant::now();
        let mut records = lock(&self.records);
        if records.len() > SWEEP_ABOVE {
            records.retain(|_, r| {
                now.duration_since(r.last) < FORGET_AFTER || r.locked_until.is_some_and(|u| u > now)
            });
        }
        let record = records.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(record.last) >= FORGET_AFTER
            || record.locked_until.is_some_and(|u| u <= now)
        {
            record.failures = 0;
            record.locked_until = None;
        }
        record.failures += 1;
        record.last = now;
        if record.failures >= self.max_failures {
            record.locked_until = Some(now + self.lockout);
            return Penalty::LockedOut;
        }
        let delay = Duration::from_secs(u64::from(record.failures - 1)).min(MAX_DELAY);
        Penalty::Delay(delay)
    }

    /// A successful login from `ip` clears its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        lock(&self.records).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_ip_and_total_and_are_returned_on_drop() {
        let c = Connections::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = c.admit(a).unwrap();
        let _s2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).err(), Some(Refusal::PerIp));
        let _s3 = c.admit(b).unwrap();
        assert_eq!(c.admit(b).err(), Some(Refusal::Total));
        drop(s1);
        assert_eq!(c.open(), 2);
        assert!(c.admit(a).is_ok());
    }

    #[test]
    fn failures_slow_down_then_lock_out_and_success_forgives() {
        let t = AuthThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(t.failed(ip), Penalty::Delay(Duration::ZERO));
        assert_eq!(t.failed(ip), Penalty::Delay(Duration::from_secs(1)));
        assert!(!t.locked(ip));
        assert_eq!(t.failed(ip), Penalty::LockedOut);
        assert!(t.locked(ip));
        t.succeeded(ip);
        assert!(!t.locked(ip));
        assert_eq!(t.failed(ip), Penalty::Delay(Duration::ZERO));
    }
}
