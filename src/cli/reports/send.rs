//! `mailctl reports send`: the DMARC aggregate and TLS reports due to other domains, built from what `serve` recorded
//! ([`crate::reports::send`]), shown (`--dry-run`) or queued for the running `serve` to deliver.

use clap::Args;
use serde::Serialize;

use crate::cli::Ctx;
use crate::error::Result;
use crate::output::Render;
use crate::reports::send::{self, Planned, Reporter};

/// `reports send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Include what was seen today (by default a report covers one whole UTC day and today's waits for
    /// tomorrow, as `serve` does it)
    #[arg(long)]
    now: bool,
    /// Show what would be sent, build nothing and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Ask this nameserver for the destinations' authorization records (IP or IP:PORT; repeatable)
    #[arg(long, value_name = "IP[:PORT]")]
    nameserver: Vec<String>,
}

/// The reports, as shown.
#[derive(Debug, Serialize)]
struct Sent {
    dry_run: bool,
    reports: Vec<Planned>,
}

impl Render for Sent {
    /// One line per report (domain, period, size, outcome), then one per destination: where it goes, and
    /// where not and why.
    fn render(&self) -> String {
        if self.reports.is_empty() {
            return "no reports due".to_string();
        }
        let mut out = Vec::new();
        for r in &self.reports {
            out.push(format!(
                "{} {}  {} .. {}  {} records, {} messages  {}",
                r.kind, r.domain, r.begin, r.end, r.records, r.messages, r.outcome
            ));
            for d in &r.destinations {
                out.push(match &d.refused {
                    None => format!("  to {}", d.address),
                    Some(why) => format!("  not to {}: {why}", d.address),
                });
            }
        }
        out.join("\n")
    }
}

/// Runs `reports send`: exit 0, or 1 when the queue did not take a report.
pub async fn run(ctx: &Ctx, args: SendArgs) -> Result<i32> {
    let settings = crate::smtp::settings::reports(&ctx.config.server.reports)?;
    let hostname = crate::smtp::settings::hostname(&ctx.config)?;
    let store = ctx.store().await?;
    let reporter = Reporter::resolve(
        &store,
        settings.from.as_deref(),
        settings.org_name.as_deref(),
        &hostname,
    )
    .await?;
    let resolver = crate::dns::Resolver::build(
        &crate::cli::nameservers(ctx, &args.nameserver),
        crate::dns::DEFAULT_TIMEOUT,
    )
    .map_err(|e| crate::error::Error::usage(format!("--nameserver: {e}")))?;
    let now = chrono::Utc::now();
    let cutoff = if args.now {
        now + chrono::Duration::seconds(1)
    } else {
        send::start_of_day(now)
    };
    let mut reports = send::plan(&store, &resolver, &reporter, cutoff).await?;
    if !args.dry_run && !reports.is_empty() {
        let queue = crate::cli::queue::open_existing(ctx).await?;
        reports = send::execute(&store, queue, &reporter, reports).await?;
    }
    let failed = reports.iter().any(|r| r.status == send::Status::Failed);
    ctx.out.emit(&Sent {
        dry_run: args.dry_run,
        reports,
    });
    Ok(i32::from(failed))
}
