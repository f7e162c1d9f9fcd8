//! Sessions with the relay host kept open between deliveries, as Postfix's connection cache does for its
//! relayhost. A new session costs a TCP and TLS handshake and, worse, an AUTH whose password check is slow
//! on purpose on the relay (SHA512-CRYPT, bcrypt, Argon2); a kept session costs one `RSET` before the next
//! transaction. Without the cache, a server relaying everything is several times slower than one delivering
//! to MX hosts directly (see the outbound benchmark in the README).
//!
//! A session goes back into the cache only after a transaction that ended cleanly; it is taken out again if
//! it was idle less than [`IDLE`], carried fewer than [`MAX_TRANSACTIONS`] transactions, and answers `RSET`
//! (otherwise it is closed and a new one opened). At most [`MAX_IDLE`] sessions wait per relay and login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Quit, Rset};

/// How long an idle session is kept (Postfix: `smtp_connection_cache_time_limit`, 2 s; relays usually allow
/// 300 s of idling).
pub const IDLE: Duration = Duration::from_secs(10);

/// Transactions one session carries before it is closed (some relays limit messages per connection).
pub const MAX_TRANSACTIONS: usize = 100;

/// Idle sessions kept per relay and login.
pub const MAX_IDLE: usize = 32;

/// A session to reuse: its connection, the `relay HOST[IP]` it is with, and how many transactions it carried.
pub struct Kept {
    /// The authenticated connection.
    pub conn: AsyncSmtpConnection,
    /// `relay HOST[IP]`, for outcome texts.
    pub who: String,
    /// Transactions so far.
    pub used: usize,
    since: Instant,
}

/// The idle sessions of one daemon, by relay URL and login.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Kept>>>,
}

impl Pool {
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
        used: usize,
        limit: Duration,
    ) {
        if used >= MAX_TRANSACTIONS || conn.has_broken() {
            return close(conn, limit);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key.to_string()).or_default();
        list.retain(|k| k.since.elapsed() < IDLE);
        if list.len() >= MAX_IDLE {
            drop(idle);
            return close(conn, limit);
        }
        list.push(Kept {
            conn,
            who,
            used,
            since: Instant::now(),
        });
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
