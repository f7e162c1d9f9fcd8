//! `mailctl reports summary`: what the stored reports say per domain over a period (see
//! [`crate::reports::summary`]), as tables, JSON or one monitoring-plugin line; the exit code is the verdict
//! (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use super::since;
use crate::cli::Ctx;
use crate::dns::{RData, RecordType, Resolver};
use crate::error::{Error, Result};
use crate::output::{Render, table};
use crate::reports::summary::{self, DomainSummary, Known, Status, Thresholds, percent};
use crate::smtp::outbound::relay::relayed;
use crate::time::{db_to_local, to_db};

/// PTR lookups at once, and how long all of them may take together.
const PTR_CONCURRENCY: usize = 16;
const PTR_DEADLINE: Duration = Duration::from_secs(10);

/// `reports summary` arguments.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Domains (default: every domain with reports in the period)
    #[arg(value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Reports whose period ended within this time (7d, 12h) or since this date (2026-11-01)
    #[arg(long, default_value = "7d")]
    since: String,
    /// Output: table, json (same as --json) or nagios (one line and performance data)
    #[arg(long, value_enum, default_value = "table")]
    format: SummaryFormat,
    /// WARNING when at least this share of own mail failed DMARC, or of TLS sessions failed
    #[arg(long, default_value = "2%")]
    warn: String,
    /// CRITICAL from this share on
    #[arg(long, default_value = "10%")]
    crit: String,
    /// Ask this nameserver for PTR names and the relay's addresses (IP or IP:PORT; repeatable)
    #[arg(long, value_name = "IP[:PORT]")]
    nameserver: Vec<String>,
}

/// Output formats of `reports summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    /// Human-readable tables
    Table,
    /// One JSON document
    Json,
    /// A monitoring plugin line with performance data
    Nagios,
}

/// `5%`, `5` or `0.5%` as a fraction.
fn share(flag: &str, text: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v / 100.0),
        _ => Err(Error::usage(format!(
            "--{flag} {text:?}: a percentage between 0 and 100, such as 2%"
        ))),
    }
}

/// The JSON document and the table.
#[derive(Debug, Serialize)]
struct Summaries {
    status: Status,
    since: String,
    domains: Vec<DomainSummary>,
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl Render for Summaries {
    fn render(&self) -> String {
        if self.domains.is_empty() {
            return format!("no reports since {}", self.since);
        }
        let mut out = Vec::new();
        for d in &self.domains {
            let mut lines = vec![format!("{}  {}  {}", d.domain, d.status.word(), d.reason)];
            if d.reports > 0 {
                let who: Vec<String> = d
                    .reporters
                    .iter()
                    .map(|r| format!("{} ({} {})", r.org_name, r.reports, r.kind))
                    .collect();
                let period = match (&d.first, &d.last) {
                    (Some(f), Some(l)) => format!(", {} .. {}", db_to_local(f), db_to_local(l)),
                    _ => String::new(),
                };
                lines.push(format!(
                    "  reports: {} from {}{period}",
                    d.reports,
                    who.join(", ")
                ));
            }
            if d.messages > 0 {
                lines.push(format!(
                    "  messages: {}: DMARC pass {:.1}%, DKIM aligned {:.1}%, SPF aligned {:.1}%; quarantined {}, \
                     rejected {}",
                    thousands(d.messages),
                    percent(d.dmarc_pass, d.messages),
                    percent(d.dkim_pass, d.messages),
                    percent(d.spf_pass, d.messages),
                    thousands(d.quarantined),
                    thousands(d.rejected)
                ));
                let rows = table(
                    &[
                        "SOURCE",
                        "PTR",
                        "WHOSE",
                        "MESSAGES",
                        "DMARC PASS",
                        "DKIM",
                        "SPF",
                        "QUARANTINED",
                        "REJECTED",
                    ],
                    d.sources.iter().map(|s| {
                        vec![
                            if s.ip.is_empty() {
                                "-".into()
                            } else {
                                s.ip.clone()
                            },
                            s.ptr.clone().unwrap_or_else(|| "-".into()),
                            format!("{:?}", s.whose).to_lowercase(),
                            thousands(s.messages),
                            format!("{:.1}%", percent(s.dmarc_pass, s.messages)),
                            format!("{:.1}%", percent(s.dkim_pass, s.messages)),
                            format!("{:.1}%", percent(s.spf_pass, s.messages)),
                            thousands(s.quarantined),
                            thousands(s.rejected),
                        ]
                    }),
                );
                lines.extend(rows.lines().map(|l| format!("  {l}")));
            }
            if !d.problems.is_empty() {
                lines.push("  failing sources:".into());
                for p in &d.problems {
                    lines.push(format!(
                        "  - {} messages failed DMARC: {}",
                        thousands(p.failed()),
                        p.cause.as_deref().unwrap_or_default()
                    ));
                }
            }
            if d.tls_sessions > 0 {
                let failures: Vec<String> = d
                    .tls_failures
                    .iter()
                    .map(|(result, n)| format!("{result} {}", thousands(*n)))
                    .collect();
                lines.push(format!(
                    "  TLS: {} sessions, {} failed{}",
                    thousands(d.tls_sessions),
                    thousands(d.tls_failed),
                    if failures.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", failures.join(", "))
                    }
                ));
            }
            out.push(lines.join("\n"));
        }
        out.join("\n\n")
    }
}

/// The monitoring-plugin line: the worst status, each domain that is not OK (or all when all are), and the
/// shares as performance data.
fn nagios(s: &Summaries, limits: Thresholds) -> String {
    let word = s.status.word();
    let (warn, crit) = (limits.warn * 100.0, limits.crit * 100.0);
    let shown: Vec<&DomainSummary> = match s
        .domains
        .iter()
        .filter(|d| d.status != Status::Ok)
        .collect::<Vec<_>>()
    {
        v if v.is_empty() => s.domains.iter().collect(),
        v => v,
    };
    let text: Vec<String> = shown
        .iter()
        .map(|d| format!("{}: {}", d.domain, d.reason))
        .collect();
    let text = if text.is_empty() {
        format!("no reports since {}", s.since)
    } else {
        text.join("; ")
    };
    let perf: Vec<String> = s
        .domains
        .iter()
        .flat_map(|d| {
            let mut p = Vec::new();
            if d.own_messages > 0 {
                p.push(format!(
                    "'{} own_failed'={:.2}%;{warn};{crit};0;100 '{} own_messages'={}",
                    d.domain,
                    percent(d.own_failed, d.own_messages),
                    d.domain,
                    d.own_messages
                ));
            }
            if d.tls_sessions > 0 {
                p.push(format!(
                    "'{} tls_failed'={:.2}%;{warn};{crit};0;100",
                    d.domain,
                    percent(d.tls_failed, d.tls_sessions)
                ));
            }
            p
        })
        .collect();
    if perf.is_empty() {
        format!("REPORTS {word} - {text}")
    } else {
        format!("REPORTS {word} - {text} | {}", perf.join(" "))
    }
}

/// PTR names of `ips`, looked up at most [`PTR_CONCURRENCY`] at once and all within [`PTR_DEADLINE`]; what is
/// not found in time is left out.
async fn ptr_names(resolver: &Resolver, ips: Vec<String>) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let deadline = Instant::now() + PTR_DEADLINE;
    let lookups = futures_util::stream::iter(ips.into_iter().filter_map(|ip| {
        let parsed = ip.parse().ok()?;
        Some(async move {
            let name = crate::dns::reverse_name(&parsed);
            let answer = resolver.query(&name, RecordType::PTR).await;
            let ptr = match answer {
                crate::dns::Answer::Records { data, .. } => data.iter().find_map(|d| match d {
                    RData::PTR(p) => Some(p.0.to_string().trim_end_matches('.').to_string()),
                    _ => None,
                }),
                _ => None,
            };
            (ip, ptr)
        })
    }))
    .buffer_unordered(PTR_CONCURRENCY);
    let mut lookups = std::pin::pin!(lookups);
    while let Ok(Some((ip, ptr))) = tokio::time::timeout_at(deadline.into(), lookups.next()).await {
        if let Some(ptr) = ptr {
            found.insert(ip, ptr);
        }
    }
    found
}

/// The addresses mail leaves from through `relay`: its IP, or its host name's A and AAAA records (none when
/// DNS does not answer: its mail then counts as someone else's).
pub(crate) async fn relay_addresses(
    resolver: &Resolver,
    relay: &crate::records::Relayed,
) -> HashSet<std::net::IpAddr> {
    match relay.host.parse() {
        Ok(ip) => HashSet::from([ip]),
        Err(_) => resolver
            .addresses(&relay.host)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// Runs `reports summary`.
pub async fn run(ctx: &Ctx, args: SummaryArgs) -> Result<i32> {
    let from = since(&args.since)?;
    let limits = Thresholds {
        warn: share("warn", &args.warn)?,
        crit: share("crit", &args.crit)?,
    };
    if limits.warn > limits.crit {
        return Err(Error::usage("--warn must not be above --crit"));
    }
    let domains: Vec<String> = args
        .domains
        .iter()
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let nameservers = crate::cli::nameservers(ctx, &args.nameserver);
    let resolver = Resolver::build(&nameservers, Duration::from_secs(5))
        .map_err(|e| Error::usage(format!("--nameserver: {e}")))?;

    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    let since_db = to_db(from);
    let sources = tx.dmarc_sources_since(&since_db).await?;
    let reporters = tx.reporters_since(&since_db).await?;
    let tls = tx.tls_results_since(&since_db).await?;
    let mut names: HashSet<&str> = reporters.iter().map(|r| r.domain.as_str()).collect();
    names.extend(domains.iter().map(String::as_str));
    let mut routes = HashMap::new();
    for name in &names {
        routes.insert(name.to_string(), tx.relay_route(name).await?);
    }
    tx.rollback().await?;

    // Whose IPs: this server's, and each domain's relay host's.
    let mut known = Known {
        ours: ctx.config.public_ips.iter().copied().collect(),
        ..Known::default()
    };
    for (domain, route) in &routes {
        let Some(relay) = relayed(route.as_ref(), ctx.config.server.outbound.relay.as_ref())?
        else {
            continue;
        };
        if relay.local {
            continue;
        }
        let addresses = relay_addresses(&resolver, &relay).await;
        known.relays.insert(domain.clone(), addresses);
    }

    // PTR names only for what is shown: each domain's biggest and most failing sources.
    let first = summary::summarize(
        &domains,
        &sources,
        &reporters,
        &tls,
        &known,
        &HashMap::new(),
        limits,
    );
    let mut shown: Vec<String> = first
        .iter()
        .flat_map(|d| d.sources.iter().chain(&d.problems).map(|s| s.ip.clone()))
        .filter(|ip| !ip.is_empty())
        .collect();
    shown.sort();
    shown.dedup();
    let ptr = ptr_names(&resolver, shown).await;
    let summaries = summary::summarize(&domains, &sources, &reporters, &tls, &known, &ptr, limits);

    let status = summaries
        .iter()
        .map(|d| d.status)
        .max()
        .unwrap_or(Status::Unknown);
    let doc = Summaries {
        status,
        since: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        domains: summaries,
    };
    match (args.format, ctx.out.json) {
        (SummaryFormat::Nagios, false) => crate::output::print_line(&nagios(&doc, limits)),
        (SummaryFormat::Json, _) | (_, true) => {
            let json = serde_json::to_string_pretty(&doc).unwrap_or_default();
            crate::output::print_line(&json);
        }
        (SummaryFormat::Table, false) => ctx.out.emit(&doc),
    }
    Ok(status.exit_code())
}
