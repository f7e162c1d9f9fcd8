//! Command-line interface: clap definitions, one file per subcommand, each thin (parse, call, render).
//!
//! Global options resolve into a [`Ctx`] (configuration plus output settings); each subcommand's `run` takes it
//! and returns `Result<()>`. The same [`Cli`] definition generates `--help`, the man pages and the completions.

mod alias;
mod alias_domain;
mod app_password;
mod audit;
mod bench;
mod cert;
mod checkpassword;
mod completions;
mod config_cmd;
mod db;
mod dkim;
mod dns;
mod domain;
mod export;
mod import;
mod limits;
mod mailbox;
mod password_input;
mod queue;
mod relay;
mod reports;
mod serve;
mod srs;
mod totp;
mod vacation;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::error::Result;
use crate::output::Output;
use crate::store::Store;

/// Exit status section shared by `--help` and the man pages.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  the operation failed (not found, already exists, limit reached, refused)
  2  usage error (bad arguments, invalid names, bad configuration or database URL)
  3  the database or another backend could not be reached

mailctl audit follows the monitoring plugins instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
(could not test, or bad arguments).";

/// mailctl: provision, run and audit a self-hosted mail server.
#[derive(Debug, Parser)]
#[command(
    name = "mailctl",
    version,
    about = "Provision, run and audit a self-hosted mail server",
    long_about = "mailctl provisions domains, mailboxes and aliases in postfixadmin's database schema \
                  (SQLite by default, or MySQL/MariaDB), so a stock Postfix and Dovecot serve them unchanged.",
    after_long_help = EXIT_STATUS,
    propagate_version = true
)]
pub struct Cli {
    /// Options that apply to every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]
    #[arg(long, global = true, value_name = "FILE", env = "MAILCTL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL]
    /// [default: a SQLite file in the user's data directory]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print data as JSON (one document per run) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Print more detail on stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print nothing but data and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage hosted domains
    #[command(subcommand)]
    Domain(domain::DomainCmd),
    /// Manage mailboxes
    #[command(subcommand, visible_alias = "user")]
    Mailbox(mailbox::MailboxCmd),
    /// Manage aliases, forwardings and catch-alls (@domain)
    #[command(subcommand)]
    Alias(alias::AliasCmd),
    /// Manage alias domains (every address of one domain delivered to the same address of another)
    #[command(subcommand, name = "alias-domain")]
    AliasDomain(alias_domain::AliasDomainCmd),
    /// DKIM keys: generate, rotate, publish, sign and verify
    #[command(subcommand)]
    Dkim(dkim::DkimCmd),
    /// The DNS records a domain must publish
    #[command(subcommand)]
    Dns(dns::DnsCmd),
    /// Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    Audit(audit::AuditArgs),
    /// Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)
    Serve(serve::ServeArgs),
    /// Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// Relay hosts (smarthosts) per sender domain: set, list, delete
    #[command(subcommand)]
    Relay(relay::RelayCmd),
    /// Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show,
    /// delete, usage
    #[command(subcommand)]
    Limits(limits::LimitsCmd),
    /// SRS secrets for forwarded mail: rotate, list, forward, reverse
    #[command(subcommand)]
    Srs(srs::SrsCmd),
    /// DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary
    #[command(subcommand)]
    Reports(reports::ReportsCmd),
    /// Load generators for measuring a running server
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// The listeners' TLS certificate: status, renew (from the ACME CA of [server.acme])
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Out-of-office auto-replies of mailboxes: set, show, off
    #[command(subcommand)]
    Vacation(vacation::VacationCmd),
    /// Dovecot's checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)
    Checkpassword(checkpassword::CheckpasswordArgs),
    /// Import domains, mailboxes and aliases from a CSV file, all or nothing
    Import(import::ImportArgs),
    /// Export every domain, mailbox and alias as CSV or JSON
    Export(export::ExportArgs),
    /// Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Database schema: migrate, status
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
}

/// What every command gets: resolved configuration and output settings.
pub struct Ctx {
    /// Resolved configuration.
    pub config: Config,
    /// How to print.
    pub out: Output,
}

impl Ctx {
    /// Opens the database, creating and migrating it on first use, and tells the user when it did.
    pub async fn store(&self) -> Result<Store> {
        let (store, opened) = Store::open(&self.config.database_url).await?;
        if let Some(path) = &opened.created_file {
            self.out
                .note(format!("created new database at {}", path.display()));
        }
        for m in &opened.migrated {
            self.out.detail(format!(
                "applied schema migration {}: {}",
                m.version, m.description
            ));
        }
        Ok(store)
    }
}

/// Runs the parsed command line and returns the exit code of a successful run (audit has several).
pub async fn run(cli: Cli) -> Result<i32> {
    crate::output::set_width(terminal_width());
    let out = Output {
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
    };
    if let Command::Completions(args) = &cli.command {
        return completions::run(args).map(|()| 0);
    }
    let overrides = Overrides {
        config_path: cli.global.config.clone(),
        database_url_flag: cli.global.database_url.clone(),
        database_url_env: std::env::var("MAILCTL_DATABASE_URL").ok(),
    };
    let ctx = Ctx {
        config: match Config::load(&overrides) {
            // A bad config file is a bad argument; for audit that is UNKNOWN (exit 3).
            Err(crate::error::Error::Usage(m)) if matches!(cli.command, Command::Audit(_)) => {
                return Err(crate::error::Error::AuditUsage(m));
            }
            other => other?,
        },
        out,
    };
    // The daemon logs them instead, where its other warnings go (the journal, with a warning priority).
    if !matches!(&cli.command, Command::Serve(a) if !a.check_config) {
        for warning in &ctx.config.warnings {
            ctx.out.note(format!("warning: {warning}"));
        }
    }
    let done = match cli.command {
        Command::Audit(a) => return audit::run(&ctx, a).await,
        Command::Checkpassword(a) => return checkpassword::run(&ctx, a).await,
        Command::Reports(c) => return reports::run(&ctx, c).await,
        Command::Domain(c) => domain::run(&ctx, c).await,
        Command::Mailbox(c) => mailbox::run(&ctx, c).await,
        Command::Alias(c) => alias::run(&ctx, c).await,
        Command::AliasDomain(c) => alias_domain::run(&ctx, c).await,
        Command::Dkim(c) => dkim::run(&ctx, c).await,
        Command::Dns(c) => dns::run(&ctx, c).await,
        Command::Import(a) => import::run(&ctx, a).await,
        Command::Export(a) => export::run(&ctx, a).await,
        Command::Config(c) => config_cmd::run(&ctx, c).await,
        Command::Db(c) => db::run(&ctx, c).await,
        Command::Serve(a) => serve::run(&ctx, a).await,
        Command::Queue(c) => queue::run(&ctx, c).await,
        Command::Relay(c) => relay::run(&ctx, c).await,
        Command::Limits(c) => limits::run(&ctx, c).await,
        Command::Srs(c) => srs::run(&ctx, c).await,
        Command::Vacation(c) => vacation::run(&ctx, c).await,
        Command::Cert(c) => cert::run(&ctx, c).await,
        Command::Bench(c) => bench::run(&ctx, c).await,
        Command::Completions(_) => Ok(()),
    };
    done.map(|()| 0)
}

/// `--active` / `--inactive` pair, for commands that can switch a record on or off.
#[derive(Debug, Args, Default)]
pub struct ActiveFlags {
    /// Mark as active
    #[arg(long, conflicts_with = "inactive")]
    pub active: bool,
    /// Mark as inactive (kept, but mail is not accepted or delivered)
    #[arg(long)]
    pub inactive: bool,
}

impl ActiveFlags {
    /// `Some(true)` for `--active`, `Some(false)` for `--inactive`, `None` when neither was given.
    pub fn value(&self) -> Option<bool> {
        match (self.active, self.inactive) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// Parses a command-line value with the model's parser, turning its message into a usage error.
pub fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T> {
    s.parse::<T>().map_err(crate::error::Error::Usage)
}

/// The width to fit human output into: `COLUMNS` when set to a number, else the terminal's; `None` in a pipe.
/// Asked once, at start ([`crate::output::width`] gives it to every renderer).
fn terminal_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    // A terminal that reports no size (a pty nobody sized) is as good as none.
    comfy_table::Table::new()
        .width()
        .map(usize::from)
        .filter(|n| *n > 0)
}

/// The nameservers a command asks: its `--nameserver` flags, else `[dns] nameserver`, else none (the system
/// resolver).
pub(crate) fn nameservers<'a>(ctx: &'a Ctx, flags: &'a [String]) -> Vec<&'a str> {
    if flags.is_empty() {
        ctx.config.nameserver.iter().map(String::as_str).collect()
    } else {
        flags.iter().map(String::as_str).collect()
    }
}
