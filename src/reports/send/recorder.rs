//! Writing what the reports will say without slowing the SMTP path: sessions hand events to a bounded channel
//! ([`Recorder::record`] never waits), one task writes them in batches (up to [`BATCH`] rows, at most
//! [`LINGER`] after the first). A full channel (the database far behind) drops the event and counts it: a
//! report is a statistic, a message is not, so nothing waits on the report tables. Events still in the channel
//! when `serve` stops are written by [`Recorder::flush`]; a crash loses at most the last [`LINGER`] of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::smtp::metrics::Metrics;
use crate::store::{ReportEventRow, Store};

/// Events waiting in memory at most.
const CAPACITY: usize = 10_000;
/// Rows per write.
const BATCH: usize = 500;
/// How long the first event of a batch waits for company.
const LINGER: Duration = Duration::from_secs(1);

enum Msg {
    Event(ReportEventRow),
    Flush(oneshot::Sender<()>),
}

/// The sessions' handle on the writer task.
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Starts the writer task on the current runtime; it runs as long as the runtime does. Dropped events
    /// are counted in `metrics`.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> Recorder {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write_loop(store, rx));
        Recorder {
            tx,
            dropped: AtomicU64::new(0),
            metrics,
        }
    }

    /// Hands one event to the writer; drops it (and counts it) when the writer is too far behind.
    pub fn record(&self, event: ReportEventRow) {
        if self.tx.try_send(Msg::Event(event)).is_err() {
            self.metrics.report_event_dropped();
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(target: "mailctl::reports", dropped = before + 1,
                    "the database is behind: events for the reports this server sends were dropped");
            }
        }
    }

    /// Returns once every event recorded before the call is written (or failed to be).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut acks = Vec::new();
        match first {
            Msg::Event(e) => batch.push(e),
            Msg::Flush(ack) => acks.push(ack),
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH && acks.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Msg::Event(e))) => batch.push(e),
                Ok(Some(Msg::Flush(ack))) => acks.push(ack),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write(&store, &batch).await;
            batch.clear();
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

async fn write(store: &Store, batch: &[ReportEventRow]) {
    let written = async {
        let mut tx = store.begin_write().await?;
        tx.insert_report_events(batch).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = written {
        tracing::error!(target: "mailctl::reports", error = %e, lost = batch.len(),
            "cannot record events for the reports this server sends");
    }
}
