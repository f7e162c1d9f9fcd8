//! Man pages and shell completions, generated from the clap definition so they never drift from `--help`.
//!
//! The committed copies live in `completions/` and `man/`; the test `generated_files` (`tests/it/generated_files.rs`) fails when they
//! are stale and rewrites them when run with `MAILCTL_BLESS=1`.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes every completion script into `dir`.
pub fn write_completions(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut cmd = Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "mailctl", dir)?;
    }
    Ok(())
}

/// Writes `mailctl.1` and one page per subcommand (`mailctl-domain-add.1`, ...) into `dir`.
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command().after_help(crate::cli::EXIT_STATUS);
    clap_mangen::generate_to(cmd, dir)
}
