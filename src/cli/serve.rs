//! `mailctl serve [--listen NAME=ADDR]... [--nameserver IP[:PORT]] [--check-config]`: the SMTP daemon.
//!
//! Runs in the foreground (systemd's `Type=simple`; see `mailctl config systemd`), logs to stderr, and on
//! stdout reports each bound address (`listening smtp 127.0.0.1:25`) and then `ready`, so scripts and tests
//! using port 0 learn the real ports.
//!
//! Started as root, it binds its ports and reads its TLS key, then becomes `server.user` (see
//! [`crate::smtp::daemon::privileges`]); started as another user, it must be that user or have none set.

use std::io::Write as _;

use clap::Args;

use super::Ctx;
use crate::error::{Error, Result};
use crate::smtp::daemon::privileges::Plan;
use crate::smtp::daemon::{Bound, preflight};
use crate::smtp::settings::Settings;
use crate::store::Store;

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run only these listeners, at these addresses (NAME = smtp, submission or submissions; repeatable;
    /// replaces [server.listen] entirely; port 0 picks a free port)
    #[arg(long, value_name = "NAME=ADDR")]
    pub listen: Vec<String>,
    /// Ask this nameserver (IP or IP:PORT) instead of the system resolver
    #[arg(long, value_name = "IP[:PORT]")]
    pub nameserver: Option<String>,
    /// Check the configuration and the setup (TLS files, Maildir root, spool, LMTP, database) as the user the
    /// daemon runs as, list every problem and exit
    #[arg(long)]
    pub check_config: bool,
}

/// Runs the daemon until SIGTERM (exit 0), or checks the configuration.
pub async fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    let mut config = ctx.config.clone();
    if let Some(ns) = &args.nameserver {
        crate::dns::parse_nameserver(ns)?;
        config.nameserver = Some(ns.clone());
    }
    let settings = Settings::from_config(&config, &args.listen)?;
    if args.check_config {
        check_config(ctx, &settings).await?;
        let listeners: Vec<_> = settings
            .listeners
            .iter()
            .map(|(kind, addr)| serde_json::json!({"name": kind.name(), "address": addr.to_string()}))
            .collect();
        let summary = serde_json::json!({
            "ok": true,
            "hostname": settings.hostname,
            "listeners": listeners,
            "tls": settings.tls.is_some(),
        });
        ctx.out.done(&summary, "config ok");
        return Ok(());
    }
    crate::logging::init(ctx.out.verbose, ctx.out.quiet);
    for warning in &ctx.config.warnings {
        tracing::warn!(target: "mailctl::config", "{warning}");
    }
    // Every connection is a file descriptor: the connection limits of the config, not a default soft limit
    // of 1024, must decide.
    let _ = crate::sys::raise_nofile_limit();
    let bound = Bound::start(settings).await?;
    let mut stdout = std::io::stdout().lock();
    let report = |out: &mut std::io::StdoutLock<'_>| -> std::io::Result<()> {
        for (name, addr) in bound.addresses() {
            writeln!(out, "listening {name} {addr}")?;
        }
        writeln!(out, "ready")?;
        out.flush()
    };
    report(&mut stdout).map_err(|e| Error::Refused(format!("cannot write to stdout: {e}")))?;
    drop(stdout);
    for (name, addr) in bound.addresses() {
        tracing::info!(target: "mailctl::smtp", listener = name, %addr, "listening");
    }
    bound.run().await
}

/// `--check-config`: every start-up check as the user the daemon will run as, and the database connection;
/// warnings on stderr, every problem listed (exit 2, or 3 when only the database cannot be reached).
///
/// The identity checked is the one a start from here would run as: `server.user` when root drops to it (or when
/// this user could not become it: an admin checking the config of a service), else this process. A service
/// started by systemd's `User=` without `server.user` is checked by running this as that user.
async fn check_config(ctx: &Ctx, settings: &Settings) -> Result<()> {
    let plan = match (Plan::decide(settings.run_as.as_ref()), &settings.run_as) {
        (Ok(plan), _) => plan,
        (Err(_), Some(r)) => Plan::Switch(r.clone()),
        (Err(e), None) => return Err(e),
    };
    let mut found = preflight::check(settings, &plan).await;
    match Store::connect(&settings.database_url).await {
        Ok((store, _)) => store.close().await,
        Err(e) => found.errors.push(e),
    }
    for warning in &found.warnings {
        ctx.out.note(format!("warning: {warning}"));
    }
    found.into_result()
}
