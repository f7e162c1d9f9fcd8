//! What logged-in users send, counted in memory and written to the database in batches: the sending limits
//! ([`crate::provision::limits`]) must not cost the submission path a write transaction per message (on SQLite
//! every one is an fsync, and sixteen sessions queue behind each other for it).
//!
//! Sessions add their counts here ([`SendCounter::add`]); a task writes what accumulated once a second, all in
//! one transaction, as increments (so nodes sharing the database add up rather than overwrite each other). A
//! session reading a sender's usage gets the database's numbers plus what this node has not written yet, so
//! this node's limits are exact; another node sees them at most a second later. `serve` writes what is left
//! when it stops; a crash forgets at most the last second of counting, never a message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::provision::limits::{self, Usage};
use crate::store::{SendUsageRow, Store, Tx};

/// How often the counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counts not written yet.
#[derive(Debug, Default)]
struct Pending {
    /// Increments per (sender, period).
    usage: HashMap<(String, String), SendUsageRow>,
    /// Recipients senders wrote to for the first time: (sender, recipient).
    recipients: HashSet<(String, String)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SendCounter {
    store: Store,
    pending: Mutex<Pending>,
    /// What the writer took and has not committed yet: still counted by readers.
    writing: Mutex<Pending>,
    /// (sender, hour) whose old usage rows were pruned: once per sender and hour.
    pruned: Mutex<HashSet<(String, String)>>,
}

impl SendCounter {
    /// A counter writing to `store`, with its writer task started on the current runtime.
    pub fn start(store: Store) -> Arc<SendCounter> {
        let counter = Arc::new(SendCounter {
            store,
            pending: Mutex::new(Pending::default()),
            writing: Mutex::new(Pending::default()),
            pruned: Mutex::new(HashSet::new()),
        });
        let weak = Arc::downgrade(&counter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(counter) = weak.upgrade() else {
                    return;
                };
                counter.flush().await;
            }
        });
        counter
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `delta` to its sender's counters of its period.
    pub fn add(&self, delta: SendUsageRow) {
        let mut p = self.pending();
        let entry = p
            .usage
            .entry((delta.address.clone(), delta.period.clone()))
            .or_insert_with(|| SendUsageRow {
                address: delta.address.clone(),
                period: delta.period.clone(),
                ..SendUsageRow::default()
            });
        entry.messages += delta.messages;
        entry.recipients += delta.recipients;
        entry.new_recipients += delta.new_recipients;
        entry.refused += delta.refused;
        entry.unknown += delta.unknown;
    }

    /// Counts one accepted message of `address` to `recipients`, `new` of them never written to before.
    pub fn message(&self, address: &str, recipients: usize, new: &[String], now: DateTime<Utc>) {
        self.add(SendUsageRow {
            address: address.to_string(),
            period: limits::hour(now),
            messages: 1,
            ..SendUsageRow::default()
        });
        self.add(SendUsageRow {
            address: address.to_string(),
            period: limits::day(now),
            recipients: i64::try_from(recipients).unwrap_or(i64::MAX),
            new_recipients: i64::try_from(new.len()).unwrap_or(i64::MAX),
            ..SendUsageRow::default()
        });
        let mut p = self.pending();
        // An address longer than the column is not remembered (it counts as new again next time).
        for r in new.iter().filter(|r| r.chars().count() <= 255) {
            p.recipients.insert((address.to_string(), r.clone()));
        }
    }

    /// What `address` sent in the hour and day of `now`: the database's counts plus this node's unwritten ones.
    pub async fn usage(&self, tx: &mut Tx, address: &str, now: DateTime<Utc>) -> Result<Usage> {
        let mut usage = limits::usage(tx, address, now).await?;
        let pending = self.pending();
        let writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        for p in [&*pending, &*writing] {
            for row in [&mut usage.hour, &mut usage.day] {
                if let Some(d) = p.usage.get(&(address.to_string(), row.period.clone())) {
                    row.messages += d.messages;
                    row.recipients += d.recipients;
                    row.new_recipients += d.new_recipients;
                    row.refused += d.refused;
                    row.unknown += d.unknown;
                }
            }
        }
        Ok(usage)
    }

    /// Whether `address` wrote to `recipient` since the last write (the database knows the older ones).
    pub fn knows_recipient(&self, address: &str, recipient: &str) -> bool {
        let key = (address.to_string(), recipient.to_string());
        self.pending().recipients.contains(&key)
            || self
                .writing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recipients
                .contains(&key)
    }

    /// Writes what accumulated, in one transaction; on failure the counts stay for the next try.
    pub async fn flush(&self) {
        // What is being written stays visible to readers (in `writing`) until it is committed.
        let taken = {
            let mut pending = self.pending();
            let mut writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            *writing = std::mem::take(&mut *pending);
            Pending {
                usage: writing.usage.clone(),
                recipients: writing.recipients.clone(),
            }
        };
        if taken.usage.is_empty() && taken.recipients.is_empty() {
            return;
        }
        let now = Utc::now();
        let prune: Vec<String> = {
            let mut pruned = self.pruned.lock().unwrap_or_else(|e| e.into_inner());
            if pruned.len() > 100_000 {
                pruned.clear();
            }
            let hour = limits::hour(now);
            taken
                .usage
                .keys()
                .map(|(address, _)| address.clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .filter(|a| pruned.insert((a.clone(), hour.clone())))
                .collect()
        };
        let written = async {
            let mut tx = self.store.begin_write().await?;
            for row in taken.usage.values() {
                tx.add_send_usage(row).await?;
            }
            let stamp = crate::time::to_db(now);
            for (address, recipient) in &taken.recipients {
                tx.add_send_recipients(address, std::slice::from_ref(recipient), &stamp)
                    .await?;
            }
            let yesterday = now - chrono::Duration::days(1);
            for address in &prune {
                tx.prune_send_usage(address, &limits::hour(yesterday), &limits::day(yesterday))
                    .await?;
            }
            tx.commit().await
        }
        .await;
        let unwritten =
            std::mem::take(&mut *self.writing.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = written {
            tracing::warn!(target: "mailctl::smtp", error = %e,
                "sending counts could not be written; trying again in a second");
            for row in unwritten.usage.into_values() {
                self.add(row);
            }
            self.pending().recipients.extend(unwritten.recipients);
        }
    }
}
