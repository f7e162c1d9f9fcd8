//! `mailctl completions SHELL`: print a completion script (the same ones committed under `completions/`).

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::Result;

/// Arguments of `mailctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the completion script to stdout.
pub fn run(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "mailctl", &mut std::io::stdout());
    Ok(())
}
