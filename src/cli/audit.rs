//! `mailctl audit DOMAIN... | --all`: check domains as a receiving server would.
//!
//! Exit codes follow the monitoring plugins (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), and bad arguments are
//! UNKNOWN too, so a typo in a cron line can never read as a finding.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use futures_util::StreamExt;

use super::Ctx;
use crate::audit::report::{self, AuditReport};
use crate::audit::{self, Known, Options, Selection};
use crate::dns::Resolver;
use crate::error::{Error, Result};
use crate::model::DomainName;
use crate::output::Render;
use crate::smtp::outbound::relay::relayed;
use crate::store::Store;
use crate::tls::Trust;

/// IP blocklists asked by default.
pub const DEFAULT_IP_LISTS: &[&str] = &[
    "zen.spamhaus.org",
    "bl.spamcop.net",
    "b.barracudacentral.org",
    "psbl.surriel.com",
];
/// Domain blocklists asked by default.
pub const DEFAULT_DOMAIN_LISTS: &[&str] = &["dbl.spamhaus.org"];

/// How many domains `--all` audits at once.
const CONCURRENT_DOMAINS: usize = 64;

/// Arguments of `mailctl audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Domains to audit (need not be in the database)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    domains: Vec<String>,
    /// Audit every active domain in the database
    #[arg(long)]
    all: bool,
    /// Ask these nameservers (IP or IP:PORT, repeatable) instead of the system resolver
    #[arg(long, value_name = "IP[:PORT]")]
    nameserver: Vec<String>,
    /// An outbound IP of your server (repeatable) [default: config server.public_ips]
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// A DKIM selector to check (repeatable) [default: the database's keys, else common selectors]
    #[arg(long, value_name = "S")]
    selector: Vec<String>,
    /// An IP blocklist zone (repeatable; replaces the defaults: zen.spamhaus.org, bl.spamcop.net,
    /// b.barracudacentral.org, psbl.surriel.com)
    #[arg(long, value_name = "ZONE")]
    rbl: Vec<String>,
    /// A domain blocklist zone (repeatable; replaces the default dbl.spamhaus.org)
    #[arg(long, value_name = "ZONE")]
    dbl: Vec<String>,
    /// Only these check ids or families (comma-separated: spf,dkim.record)
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these check ids or families (comma-separated)
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    skip: Vec<String>,
    /// Seconds to wait for each DNS answer or SMTP reply
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    timeout: u64,
    /// Do not connect to the MX hosts (DNS checks only)
    #[arg(long)]
    no_connect: bool,
    /// Also try to relay an outside address through each MX (never sends DATA)
    #[arg(long)]
    relay_test: bool,
    /// Fetch the MTA-STS policy over HTTPS and compare it with the MX records
    #[arg(long)]
    fetch_policy: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also trust the CA certificates in this PEM file (a private CA, a lab) for the SMTP certificate and the
    /// MTA-STS policy fetch
    #[arg(long, value_name = "FILE")]
    extra_ca: Option<std::path::PathBuf>,
    /// Port the SMTP probe connects to (25 is what senders use; another port audits a lab or test server)
    #[arg(long, value_name = "PORT", default_value_t = 25)]
    smtp_port: u16,
    /// Port of the MTA-STS policy fetch (443 is what senders use)
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    https_port: u16,
    /// Connect the SMTP probe to this IP instead of each MX address (a lab, or a server behind NAT); names,
    /// PTR and certificate checks still use the MX's own address and name
    #[arg(long, value_name = "IP")]
    connect_to: Option<IpAddr>,
}

/// Output formats of `mailctl audit`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A report: one line per finding, grouped by family, worst first; then the fixes, whole; then the verdict
    Text,
    /// One row per finding and a summary, as a table
    Table,
    /// One document with every finding of every domain
    Json,
    /// One monitoring-plugin line with perfdata
    Nagios,
}

struct Run(AuditReport);

impl serde::Serialize for Run {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Run {
    fn render(&self) -> String {
        report::table(&self.0)
    }
}

/// Bad arguments of `audit` exit 3 (UNKNOWN), like a monitoring plugin's.
fn unknown(e: Error) -> Error {
    match e {
        Error::Usage(m) => Error::AuditUsage(m),
        other => other,
    }
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| s.contains('.'))
        .unwrap_or_else(|| "mailctl-audit.invalid".into())
}

/// Opens the database when it exists (never creates one): audit must work on domains mailctl does not host.
async fn open_store(ctx: &Ctx, required: bool) -> Result<Option<Store>> {
    if let Some(path) = crate::store::sqlite_path(&ctx.config.database_url)
        && !path.exists()
    {
        return if required {
            Err(Error::AuditUsage(format!(
                "--all needs a database; {} does not exist",
                path.display()
            )))
        } else {
            Ok(None)
        };
    }
    match ctx.store().await {
        Ok(s) => Ok(Some(s)),
        Err(e) if required => Err(e),
        Err(e) => {
            ctx.out.note(format!("note: database not used ({e})"));
            Ok(None)
        }
    }
}

/// What the database and the config know about `domain`: whether it is hosted, its DKIM keys, and for a hosted
/// domain the relay host its mail leaves through (its route, else `[server.outbound.relay]`).
async fn known(ctx: &Ctx, store: Option<&Store>, domain: &DomainName) -> Result<Known> {
    let mut known = Known {
        hostname: ctx.config.hostname.clone(),
        ..Known::default()
    };
    if let Some(store) = store {
        let mut tx = store.begin().await?;
        if tx.domain(domain.as_str()).await?.is_some() {
            known.hosted = true;
            known.dkim_keys = tx.dkim_keys(Some(domain.as_str())).await?;
            let route = tx.relay_route(domain.as_str()).await?;
            known.relay = relayed(route.as_ref(), ctx.config.server.outbound.relay.as_ref())
                .map_err(unknown)?;
        }
        tx.rollback().await?;
    }
    Ok(known)
}

/// What the stored reports of the last [`audit::REPORTS_DAYS`] days say about each hosted domain, for the
/// `reports.*` checks: summed once for all domains, judged on mail from `ips` and each domain's relay host.
async fn add_reports(
    store: &Store,
    resolver: &Resolver,
    ips: &[std::net::IpAddr],
    domains: &[DomainName],
    knowns: &mut [Known],
) -> Result<()> {
    use crate::reports::summary;
    let since = chrono::Utc::now() - chrono::Duration::days(audit::REPORTS_DAYS);
    let since = crate::time::to_db(since);
    let mut tx = store.begin().await?;
    let sources = tx.dmarc_sources_since(&since).await?;
    let reporters = tx.reporters_since(&since).await?;
    let tls = tx.tls_results_since(&since).await?;
    tx.rollback().await?;
    let mut whose = summary::Known {
        ours: ips.iter().copied().collect(),
        ..summary::Known::default()
    };
    for (d, k) in domains.iter().zip(knowns.iter()) {
        if let Some(relay) = k.remote_relay() {
            let addresses = super::reports::summary::relay_addresses(resolver, relay).await;
            whose.relays.insert(d.to_string(), addresses);
        }
    }
    let limits = summary::Thresholds {
        warn: 0.02,
        crit: 0.10,
    };
    let hosted: Vec<String> = domains
        .iter()
        .zip(knowns.iter())
        .filter(|(_, k)| k.hosted)
        .map(|(d, _)| d.to_string())
        .collect();
    let ptr = std::collections::HashMap::new();
    let mut summaries: std::collections::HashMap<String, summary::DomainSummary> =
        summary::summarize(&hosted, &sources, &reporters, &tls, &whose, &ptr, limits)
            .into_iter()
            .map(|s| (s.domain.clone(), s))
            .collect();
    for (d, k) in domains.iter().zip(knowns.iter_mut()) {
        k.reports = summaries.remove(d.as_str());
    }
    Ok(())
}

/// Runs `mailctl audit`; returns the exit code.
pub async fn run(ctx: &Ctx, args: AuditArgs) -> Result<i32> {
    // Everything the user typed is checked before the first lookup.
    let mut domains: Vec<DomainName> = args
        .domains
        .iter()
        .map(|d| super::parse::<DomainName>(d))
        .collect::<Result<_>>()
        .map_err(unknown)?;
    for ns in &args.nameserver {
        crate::dns::parse_nameserver(ns).map_err(unknown)?;
    }
    for zone in args.rbl.iter().chain(&args.dbl) {
        zone.parse::<DomainName>()
            .map_err(|e| Error::AuditUsage(format!("blocklist zone: {e}")))?;
    }
    for s in &args.selector {
        s.parse::<crate::model::Selector>()
            .map_err(Error::AuditUsage)?;
    }
    for pattern in args.only.iter().chain(&args.skip) {
        audit::validate_pattern(pattern).map_err(Error::AuditUsage)?;
    }
    if args.timeout == 0 || args.timeout > 300 {
        return Err(Error::AuditUsage(
            "--timeout must be between 1 and 300 seconds".into(),
        ));
    }
    let nameservers = super::nameservers(ctx, &args.nameserver);
    let timeout = Duration::from_secs(args.timeout);
    let resolver = Resolver::build(&nameservers, timeout).map_err(unknown)?;
    let store = open_store(ctx, args.all).await?;
    if args.all {
        let store = store
            .as_ref()
            .ok_or_else(|| Error::AuditUsage("--all needs a database".into()))?;
        let mut tx = store.begin().await?;
        domains = tx
            .domains()
            .await?
            .into_iter()
            .filter(|d| d.active)
            .map(|d| DomainName::from_stored(&d.domain))
            .collect();
        tx.rollback().await?;
    }
    let options = Options {
        ips: if args.ips.is_empty() {
            ctx.config.public_ips.clone()
        } else {
            args.ips.clone()
        },
        selectors: args.selector.clone(),
        ip_lists: if args.rbl.is_empty() {
            DEFAULT_IP_LISTS.iter().map(|s| s.to_string()).collect()
        } else {
            args.rbl.clone()
        },
        domain_lists: if args.dbl.is_empty() {
            DEFAULT_DOMAIN_LISTS.iter().map(|s| s.to_string()).collect()
        } else {
            args.dbl.clone()
        },
        timeout,
        connect: !args.no_connect,
        relay_test: args.relay_test,
        fetch_policy: args.fetch_policy,
        smtp_port: args.smtp_port,
        https_port: args.https_port,
        connect_to: args.connect_to,
        trust: Trust::load(args.extra_ca.as_deref())
            .map_err(|e| Error::AuditUsage(format!("--extra-ca {e}")))?,
        helo_name: ctx.config.hostname.clone().unwrap_or_else(machine_hostname),
    };
    let selection = Selection {
        only: args.only.clone(),
        skip: args.skip.clone(),
    };
    let bar = ctx.out.progress(domains.len() as u64, "auditing");
    let mut knowns = Vec::new();
    for d in &domains {
        knowns.push(known(ctx, store.as_ref(), d).await?);
    }
    if let Some(store) = &store {
        add_reports(store, &resolver, &options.ips, &domains, &mut knowns).await?;
    }
    let reports: Vec<_> = futures_util::stream::iter(domains.iter().zip(&knowns))
        .map(|(d, k)| {
            let (resolver, options, selection, bar) = (&resolver, &options, &selection, &bar);
            async move {
                let r = audit::audit_domain(resolver, options, selection, d, k).await;
                bar.inc(1);
                r
            }
        })
        .buffered(CONCURRENT_DOMAINS)
        .collect()
        .await;
    bar.finish_and_clear();
    let report = AuditReport::new(reports);
    let code = report::exit_code(report.status);
    match (args.format, ctx.out.json) {
        (Format::Json, _) | (_, true) => crate::output::Output {
            json: true,
            ..ctx.out
        }
        .emit(&Run(report)),
        (Format::Nagios, false) => crate::output::print_line(&report::nagios(&report)),
        (Format::Table, false) => ctx.out.emit(&Run(report)),
        (Format::Text, false) => {
            let style = report::text::Style {
                width: crate::output::width(),
                colour: report::colour(),
                verbose: ctx.out.verbose > 0,
            };
            crate::output::print_line(&report::text::render(&report, style));
        }
    }
    Ok(code)
}
