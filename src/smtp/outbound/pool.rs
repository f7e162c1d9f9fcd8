//! Sessions kept open between deliveries, as Postfix's connection cache does (`smtp_connection_cache_on_demand`):
//! with the relay host (by relay URL and login) and with MX hosts (by host, address, port and the TLS the
//! policy asks for, so a session opened under one security level never carries mail that needs another). A new
//! session costs a TCP and a TLS handshake on both sides and, with a relay, an AUTH whose password check is slow
//! on purpose (SHA512-CRYPT, bcrypt, Argon2); a kept session costs one `RSET` before the next transaction.
//! Sessions with the relay are always kept; a session with an MX host only on demand, as Postfix does: when
//! another delivery to the same destination is under way as it ends (a backlog for that destination), so a
//! lone message still ends with `QUIT` at once.
//!
//! A session goes back into the cache only after a transaction that ended cleanly; it is taken out again if
//! it was idle less than [`IDLE`], carried fewer than [`MAX_TRANSACTIONS`] transactions, and answers `RSET`
//! (otherwise it is closed and a new one opened). At most [`MAX_IDLE`] sessions wait per relay and login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Quit, Rset};

use super::session::{End, Envelope, Params, Tls, goodbye, transaction};
use crate::smtp::queue::Outcome;

/// How long an idle session is kept (Postfix: `smtp_connection_cache_time_limit`, 2 s; relays usually allow
/// 300 s of idling).
pub const IDLE: Duration = Duration::from_secs(10);

/// Transactions one session carries before it is closed (some relays limit messages per connection).
pub const MAX_TRANSACTIONS: usize = 100;

/// Idle sessions kept per key (relay and login, or MX host, address, port and TLS level).
pub const MAX_IDLE: usize = 32;

/// Idle sessions kept in all.
pub const MAX_IDLE_TOTAL: usize = 256;

/// A session to reuse: its connection, whom it is with, what became of TLS when it was opened, and how many
/// transactions it carried.
pub struct Kept {
    /// The connection (authenticated, with a relay).
    pub conn: AsyncSmtpConnection,
    /// `HOST[IP]` or `relay HOST[IP]`, for outcome texts.
    pub who: String,
    /// TLS as the session's opening left it (for the TLS reports of each delivery it carries).
    pub tls: Tls,
    /// Transactions so far.
    pub used: usize,
    since: Instant,
}

/// The idle sessions of one daemon, by key (see the module documentation). While any session is kept, a
/// sweeper closes (with QUIT) those idle for [`IDLE`], so a destination that gets no more mail does not hold
/// a connection for ever.
#[derive(Default)]
pub struct Pool {
    idle: std::sync::Arc<Mutex<HashMap<String, Vec<Kept>>>>,
    /// A sweeper is running.
    sweeping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Deliveries under way, by key.
    busy: Mutex<HashMap<String, usize>>,
}

/// One delivery under way to a key, counted while it lives.
pub struct Demand<'a> {
    pool: &'a Pool,
    key: String,
}

impl Demand<'_> {
    /// Whether another delivery to the same key is under way.
    pub fn shared(&self) -> bool {
        let busy = self.pool.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.get(&self.key).is_some_and(|n| *n > 1)
    }
}

impl Drop for Demand<'_> {
    fn drop(&mut self) {
        let mut busy = self.pool.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = busy.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.key);
            }
        }
    }
}

impl Pool {
    /// Counts a delivery to `key` as under way until the returned value is dropped.
    pub fn demand(&self, key: &str) -> Demand<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy.entry(key.to_string()).or_insert(0) += 1;
        Demand {
            pool: self,
            key: key.to_string(),
        }
    }

    /// A session for `key` that answered `RSET` within `limit`, if one is kept.
    pub async fn take(&self, key: &str, limit: Duration) -> Option<Kept> {
        loop {
            let kept = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(key)?;
                let kept = list.pop();
                if list.is_empty() {
                    idle.remove(key);
                }
                kept?
            };
            let mut kept = kept;
            if kept.since.elapsed() >= IDLE {
                close(kept.conn, limit);
                continue;
            }
            if matches!(
                tokio::time::timeout(limit, kept.conn.command(Rset)).await,
                Ok(Ok(_))
            ) {
                return Some(kept);
            }
            // Closed by the relay meanwhile: try the next one, or let the caller open a new session.
        }
    }

    /// Keeps `conn` for the next delivery through `key`, unless it has carried enough or the pool is full.
    pub fn put(
        &self,
        key: &str,
        conn: AsyncSmtpConnection,
        who: String,
        tls: Tls,
        used: usize,
        limit: Duration,
    ) {
        if used >= MAX_TRANSACTIONS || conn.has_broken() {
            return close(conn, limit);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(key.to_string()).or_default();
        if list.len() >= MAX_IDLE || total >= MAX_IDLE_TOTAL {
            if list.is_empty() {
                idle.remove(key);
            }
            drop(idle);
            return close(conn, limit);
        }
        list.push(Kept {
            conn,
            who,
            tls,
            used,
            since: Instant::now(),
        });
        drop(idle);
        self.sweep_later(limit);
    }

    /// Starts the sweeper unless it runs: every second it closes the sessions idle for [`IDLE`], and it ends
    /// once nothing is kept.
    fn sweep_later(&self, limit: Duration) {
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let (idle, sweeping) = (self.idle.clone(), self.sweeping.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let expired: Vec<Kept> = {
                    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
                    let mut expired = Vec::new();
                    for list in idle.values_mut() {
                        let (old, young): (Vec<Kept>, Vec<Kept>) =
                            list.drain(..).partition(|k| k.since.elapsed() >= IDLE);
                        *list = young;
                        expired.extend(old);
                    }
                    idle.retain(|_, list| !list.is_empty());
                    if idle.is_empty() {
                        sweeping.store(false, Ordering::Release);
                    }
                    expired
                };
                for kept in expired {
                    close(kept.conn, limit);
                }
                if !sweeping.load(Ordering::Acquire) {
                    return;
                }
            }
        });
    }

    /// Runs the transaction over a session kept for `key`, when there is one: `None` when none is; else how
    /// it ended, TLS as the session's opening left it, and whether the connection was still sound (a broken
    /// one leaves its open recipients to a new session; a reply is the server's verdict). A session whose
    /// transaction ended cleanly goes back when `keep` says so (asked after the transaction); any other is
    /// closed.
    pub async fn on_kept(
        &self,
        key: &str,
        params: &Params<'_>,
        envelope: &Envelope<'_>,
        outcomes: &mut [Option<Outcome>],
        keep: impl FnOnce() -> bool,
    ) -> Option<(End, Tls, bool)> {
        let mut kept = self.take(key, params.timeout).await?;
        let mut healthy = true;
        let end = transaction(
            params,
            &kept.who,
            envelope,
            outcomes,
            &mut kept.conn,
            &mut healthy,
        )
        .await;
        let tls = kept.tls.clone();
        let keep = keep();
        self.keep_or_close(
            key,
            params,
            kept.conn,
            kept.who,
            tls.clone(),
            kept.used + 1,
            &end,
            healthy,
            keep,
        );
        Some((end, tls, healthy))
    }

    /// After a transaction that ended with `end`: keeps the session when it ended cleanly, is `healthy` and
    /// `keep` says it is wanted; else says goodbye (QUIT when healthy).
    #[allow(clippy::too_many_arguments)]
    pub fn keep_or_close(
        &self,
        key: &str,
        params: &Params<'_>,
        conn: AsyncSmtpConnection,
        who: String,
        tls: Tls,
        used: usize,
        end: &End,
        healthy: bool,
        keep: bool,
    ) {
        match end {
            End::Done if healthy && keep => self.put(key, conn, who, tls, used, params.timeout),
            _ => goodbye(params, conn, healthy),
        }
    }
}

/// Says QUIT in the background (bounded by `limit`).
fn close(mut conn: AsyncSmtpConnection, limit: Duration) {
    if conn.has_broken() {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(limit, conn.command(Quit)).await;
    });
}
