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

/// Prints the completion script to stdout. The script is made in memory first: clap_complete panics when its
/// writer fails, and a reader that closes the pipe early (`| head`) is no error.
pub fn run(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mailctl", &mut script);
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
    Ok(())
}
