//! `mailctl serve`: the SMTP daemon. STUB until the session lands.

use clap::Args;

use super::Ctx;
use crate::error::Result;

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run only these listeners, at these addresses (NAME = smtp, submission or submissions; repeatable)
    #[arg(long, value_name = "NAME=ADDR")]
    pub listen: Vec<String>,
    /// Ask this nameserver (IP or IP:PORT) instead of the system resolver
    #[arg(long, value_name = "IP[:PORT]")]
    pub nameserver: Option<String>,
    /// Validate the configuration (TLS files, database) and exit
    #[arg(long)]
    pub check_config: bool,
}

/// Runs the daemon until SIGTERM.
pub async fn run(_ctx: &Ctx, _args: ServeArgs) -> Result<()> {
    Ok(())
}
