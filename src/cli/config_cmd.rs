//! `mailctl config postfix|dovecot [--out DIR]`

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

/// Runs a config subcommand.
pub async fn run(ctx: &Ctx, cmd: ConfigCmd) -> Result<()> {
    let (args, default_dir, generate): (_, _, fn(&_, &_) -> Result<Vec<File>>) = match &cmd {
        ConfigCmd::Postfix(a) => (a, "/etc/postfix/mailctl", lookup_config::postfix),
        ConfigCmd::Dovecot(a) => (a, "/etc/dovecot", lookup_config::dovecot),
    };
    let dir = match &args.out {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => PathBuf::from(default_dir),
    };
    let files = generate(&ctx.config, &dir)?;
    if args.out.is_some() {
        write_all(&dir, &files)?;
    }
    ctx.out.emit(&Files {
        files,
        written_to: args.out.as_ref().map(|_| dir),
    });
    Ok(())
}
