//! `mailctl config postfix|dovecot|systemd [--out DIR]`: configuration files for the programs around mailctl.

mod systemd;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Ctx;
use crate::error::{Error, Result};
use crate::lookup_config::{self, File};
use crate::output::Render;

/// Config subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them
    Postfix(OutArgs),
    /// Dovecot passdb/userdb SQL configuration
    Dovecot(OutArgs),
    /// A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user
    ///
    /// ExecStart names the config file of this run (--config, MAILCTL_CONFIG, else /etc/mailctl/mailctl.toml);
    /// ReadWritePaths allows writing only the Maildir root and the SQLite database directory that config names.
    /// The comments at the top of the unit list the install steps.
    Systemd(systemd::SystemdArgs),
}

/// Where to write generated files.
#[derive(Debug, Args)]
pub struct OutArgs {
    /// Write the files into DIR (created if needed) instead of printing them
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct Files {
    files: Vec<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    written_to: Option<PathBuf>,
}

impl Render for Files {
    fn render(&self) -> String {
        match &self.written_to {
            Some(dir) => self
                .files
                .iter()
                .map(|f| format!("wrote {}", dir.join(&f.name).display()))
                .collect::<Vec<_>>()
                .join("\n"),
            None => self
                .files
                .iter()
                .map(|f| format!("# ==> {} <==\n{}", f.name, f.content))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

fn write_all(dir: &PathBuf, files: &[File]) -> Result<()> {
    let io = |action, path: PathBuf| {
        move |source| Error::File {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create directory", dir.clone()))?;
    for f in files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.content).map_err(io("cannot write", path.clone()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if f.secret { 0o640 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io("cannot set permissions of", path.clone()))?;
        }
    }
    Ok(())
}

/// The Postfix or Dovecot files, naming `DIR` (or the program's usual directory) as where they live.
fn lookup_files(
    ctx: &Ctx,
    args: &OutArgs,
    default_dir: &str,
    generate: fn(&crate::config::Config, &std::path::Path) -> Result<Vec<File>>,
) -> Result<Vec<File>> {
    let dir = match &args.out {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => PathBuf::from(default_dir),
    };
    generate(&ctx.config, &dir)
}

/// Runs a config subcommand.
pub async fn run(ctx: &Ctx, cmd: ConfigCmd) -> Result<()> {
    let (out, files) = match &cmd {
        ConfigCmd::Postfix(a) => (
            &a.out,
            lookup_files(ctx, a, "/etc/postfix/mailctl", lookup_config::postfix)?,
        ),
        ConfigCmd::Dovecot(a) => (
            &a.out,
            lookup_files(ctx, a, "/etc/dovecot", lookup_config::dovecot)?,
        ),
        ConfigCmd::Systemd(a) => {
            let (params, notes) = systemd::params(&ctx.config, a)?;
            for note in notes {
                ctx.out.note(format!("note: {note}"));
            }
            (&a.out, vec![systemd::unit(&params)])
        }
    };
    let written_to = out
        .as_ref()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));
    if let Some(dir) = &written_to {
        write_all(dir, &files)?;
    }
    ctx.out.emit(&Files { files, written_to });
    Ok(())
}
