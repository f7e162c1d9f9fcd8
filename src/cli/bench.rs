//! `mailctl bench`: load generators. STUB: replaced by the bench helper.

use clap::Subcommand;

use super::Ctx;
use crate::error::Result;

/// Bench subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {}

/// Runs one benchmark.
pub async fn run(_ctx: &Ctx, cmd: BenchCmd) -> Result<()> {
    match cmd {}
}
