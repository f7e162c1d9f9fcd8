//! The daily run of the reports this server sends ([`crate::reports::send`]): ten seconds after the start (to
//! catch up on days the daemon was down), then every day shortly after midnight UTC, spread over ten minutes
//! by the host name so the nodes sharing a database do not all start at once (the report ids keep a report
//! from going out twice anyway).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::dns::Resolver;
use crate::reports::send::{self, Reporter, Status};
use crate::smtp::inbound::Context;
use crate::smtp::metrics::SentResult;
use crate::smtp::shutdown::Shutdown;

/// The wait before the first run (a restart catches up on the days before today at once).
const FIRST_RUN: Duration = Duration::from_secs(10);

/// Runs the daily reports until the daemon stops.
pub async fn daily(server: Arc<Context>, resolver: Resolver, mut shutdown: Shutdown) {
    let mut wait = FIRST_RUN;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.recv() => return,
        }
        run_once(&server, &resolver).await;
        wait = until_next_run(&server.settings.hostname);
    }
}

/// Builds and queues the reports due for the days before today.
async fn run_once(server: &Context, resolver: &Resolver) {
    let settings = &server.settings.reports;
    server.reports.flush().await;
    let reporter = match Reporter::resolve(
        &server.store,
        settings.from.as_deref(),
        settings.org_name.as_deref(),
        &server.settings.hostname,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            // Only worth a warning when a report is due.
            if send::anything_due(&server.store, send::start_of_day(Utc::now()))
                .await
                .unwrap_or(true)
            {
                tracing::warn!(target: "mailctl::reports", error = %e, "no reports sent");
            }
            return;
        }
    };
    let cutoff = send::start_of_day(Utc::now());
    let done = async {
        let planned = send::plan(&server.store, resolver, &reporter, cutoff).await?;
        send::execute(&server.store, server.queue.clone(), &reporter, planned).await
    }
    .await;
    match done {
        Ok(reports) => {
            for r in &reports {
                let result = match r.status {
                    Status::Queued => SentResult::Queued,
                    Status::Failed => SentResult::Failed,
                    Status::Unsendable => SentResult::Unsendable,
                    Status::Due | Status::BuiltBefore => continue,
                };
                server.metrics.report_sent(r.kind, result);
            }
            if reports.iter().any(|r| r.status == Status::Queued) {
                server.wake_queue();
            }
        }
        Err(e) => {
            tracing::error!(target: "mailctl::reports", error = %e, "the daily reports failed; next try tomorrow")
        }
    }
}

/// From now to 00:05 UTC tomorrow plus up to ten minutes chosen by the host name.
fn until_next_run(hostname: &str) -> Duration {
    let spread = hostname
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 600;
    let now = Utc::now();
    let next = send::start_of_day(now) + chrono::Duration::days(1);
    let secs = (next - now).num_seconds().max(0) as u64 + 300 + spread;
    Duration::from_secs(secs)
}
