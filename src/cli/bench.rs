//! `mailctl bench smtp|connections ADDR`: load generators for measuring a running server.
//!
//! Both print a table (or one JSON document with `--json`) and then fail (exit 1) when the run fell short: not
//! every message accepted, not every connection established and held. A server that cannot be reached at all
//! is exit 3.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Ctx, parse};
use crate::bench::login::{Login, Security};
use crate::bench::{connections, smtp};
use crate::error::{Error, Result};
use crate::model::Address;
use crate::output::{Render, key_values};

/// Bench subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency
    Smtp(SmtpArgs),
    /// Open many idle connections and hold them; report how many the server kept and its memory use
    Connections(ConnectionsArgs),
}

/// Options of `bench smtp`.
#[derive(Debug, Args)]
pub struct SmtpArgs {
    /// Server address (IP:PORT)
    addr: SocketAddr,
    /// Recipient of every message
    #[arg(long, value_name = "ADDRESS")]
    to: String,
    /// Sender of every message [default: the --auth user, else bench@bench.test]
    #[arg(long, value_name = "ADDRESS")]
    from: Option<String>,
    /// Concurrent SMTP sessions
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sessions: u32,
    /// Messages to send in total
    #[arg(long, value_name = "N", default_value_t = 20000,
          value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Size of each message in bytes (headers and body)
    #[arg(long, value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    size: u64,
    /// Send MAIL, RCPT and DATA in one write when the server offers PIPELINING
    #[arg(long)]
    pipelining: bool,
    /// Open a new connection for every message (QUIT after each), as Postfix's smtp-source does by default
    /// and most MX traffic arrives; without it each session sends all its messages over one connection
    #[arg(long)]
    new_connection: bool,
    /// PID of the server: report its CPU time (user + system, from /proc) per accepted message
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Stop after this many seconds even if not every message was sent
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Append "Message-ID reply" for every accepted message to FILE, each line written as it happens
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Start every session with STARTTLS (any certificate is accepted: this is a benchmark tool, not a
    /// mail client)
    #[arg(long)]
    starttls: bool,
    /// Log in once per session with AUTH PLAIN after STARTTLS (implies --starttls), e.g. to benchmark a
    /// submission listener. The server's certificate is NOT verified (this is a benchmark tool), so the
    /// password goes to whatever answers at ADDR: use it only against your own server and a test account
    #[arg(long, value_name = "USER:PASS")]
    auth: Option<String>,
}

/// Options of `bench connections`.
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    /// Server address (IP:PORT)
    addr: SocketAddr,
    /// Connections to open
    #[arg(long, value_name = "N", default_value_t = 10000,
          value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Seconds to hold them once all are open
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    hold: u64,
    /// Connections opened at once while ramping up
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// PID of the server, to report its VmRSS and VmHWM while the connections are held
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

/// Runs one benchmark.
pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Smtp(args) => run_smtp(ctx, args).await,
        BenchCmd::Connections(args) => run_connections(ctx, args).await,
    }
}

async fn run_smtp(ctx: &Ctx, args: SmtpArgs) -> Result<()> {
    let login = match &args.auth {
        Some(text) => {
            Some(Login::parse(text).ok_or_else(|| Error::usage("--auth must be USER:PASS"))?)
        }
        None => None,
    };
    let from = match (&args.from, &login) {
        (Some(from), _) => from.as_str(),
        (None, Some(login)) => login.user.as_str(),
        (None, None) => "bench@bench.test",
    };
    let what = match args.from.is_none() && login.is_some() {
        true => "--from (by default the --auth user)",
        false => "--from",
    };
    let from: Address = parse(from).map_err(|e| Error::usage(format!("{what}: {e}")))?;
    let to: Address = parse(&args.to).map_err(|e| Error::usage(format!("--to: {e}")))?;
    let size = usize::try_from(args.size).map_err(|_| Error::usage("--size is too large"))?;
    let log = args.log.clone();
    let security = Security::new(args.starttls, login)
        .map_err(|e| Error::refused(format!("cannot set up TLS: {e}")))?;
    let report = smtp::run(smtp::Options {
        addr: args.addr,
        from: from.to_string(),
        to: to.to_string(),
        sessions: args.sessions as usize,
        messages: args.messages,
        size,
        pipelining: args.pipelining,
        duration: args.duration.map(Duration::from_secs),
        log: args.log,
        security,
        new_connection: args.new_connection,
        server_pid: args.server_pid,
    })
    .await?;
    ctx.out.emit(&report);
    if let (Some(e), Some(path)) = (&report.log_error, &log) {
        return Err(Error::refused(format!(
            "writing the log {} failed: {e}",
            path.display()
        )));
    }
    if report.accepted < report.messages {
        let first = match &report.first_error {
            Some(e) => format!("; first: {e}"),
            None => String::new(),
        };
        return Err(Error::refused(format!(
            "{} of {} messages accepted ({} rejected, {} connection errors{first})",
            report.accepted, report.messages, report.rejected, report.errors
        )));
    }
    Ok(())
}

async fn run_connections(ctx: &Ctx, args: ConnectionsArgs) -> Result<()> {
    let report = connections::run(connections::Options {
        addr: args.addr,
        count: args.count,
        batch: args.batch as usize,
        hold: Duration::from_secs(args.hold),
        server_pid: args.server_pid,
    })
    .await?;
    ctx.out.emit(&report);
    if report.established < report.count || report.still_open < report.established {
        return Err(Error::refused(format!(
            "{} of {} connections established, {} still open after the hold",
            report.established, report.count, report.still_open
        )));
    }
    Ok(())
}

impl Render for smtp::Report {
    fn render(&self) -> String {
        let r = self;
        let by_code: Vec<String> = r
            .rejected_by_code
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let mut rows = vec![
            ("sessions", r.sessions.to_string()),
            ("messages", r.messages.to_string()),
            ("accepted", r.accepted.to_string()),
            (
                "rejected",
                match by_code.is_empty() {
                    true => r.rejected.to_string(),
                    false => format!("{} ({})", r.rejected, by_code.join(", ")),
                },
            ),
            ("errors", r.errors.to_string()),
            ("pipelined", crate::output::yes_no(r.pipelined)),
            (
                "new connection per message",
                crate::output::yes_no(r.new_connection),
            ),
            ("security", r.security.to_string()),
            ("elapsed", format!("{:.3} s", r.elapsed_seconds)),
            ("messages/s", format!("{:.1}", r.messages_per_second)),
            ("latency p50", format!("{:.3} ms", r.latency_ms.p50)),
            ("latency p90", format!("{:.3} ms", r.latency_ms.p90)),
            ("latency p99", format!("{:.3} ms", r.latency_ms.p99)),
            ("latency max", format!("{:.3} ms", r.latency_ms.max)),
        ];
        if let Some(cpu) = r.server_cpu_us_per_message {
            rows.push(("server CPU per message", format!("{cpu:.1} µs")));
        }
        if let Some(e) = &r.first_error {
            rows.push(("first error", e.clone()));
        }
        key_values(rows)
    }
}

impl Render for connections::Report {
    fn render(&self) -> String {
        let r = self;
        let mut rows = vec![
            ("connections", r.count.to_string()),
            ("established", r.established.to_string()),
            ("refused", r.refused.to_string()),
            ("failed", r.failed.to_string()),
            ("still open", r.still_open.to_string()),
            ("ramp-up", format!("{:.3} s", r.ramp_seconds)),
            ("held", format!("{:.3} s", r.hold_seconds)),
        ];
        if let Some(m) = &r.server {
            rows.push(("server pid", m.pid.to_string()));
            rows.push(("VmRSS before", format!("{:.2} MiB", m.vm_rss_before_mib)));
            rows.push(("VmRSS held", format!("{:.2} MiB", m.vm_rss_mib)));
            rows.push(("VmHWM", format!("{:.2} MiB", m.vm_hwm_mib)));
            rows.push(("per connection", format!("{:.2} KiB", m.kib_per_connection)));
        }
        if let Some(e) = &r.first_error {
            rows.push(("first error", e.clone()));
        }
        key_values(rows)
    }
}
