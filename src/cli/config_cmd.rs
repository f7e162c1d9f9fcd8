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

/// A generated file as reported. Once written with `--out`, a file holding database credentials is reported by
/// name only: the password stays in the 0640 file and out of the (`--json`) output.
#[derive(Serialize)]
struct Shown {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    secret: bool,
}

#[derive(Serialize)]
struct Files {
    files: Vec<Shown>,
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
                .map(|f| {
                    let content = f.content.as_deref().unwrap_or_default();
                    format!("# ==> {} <==\n{content}", f.name)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The group that must be able to read the files holding database credentials, per program.
///
/// Postfix opens its lookup tables as the unprivileged `postfix` user (proxymap(8) for `proxy:` maps, smtpd(8)
/// otherwise), after dropping root: a map that is 0640 root:root cannot be read, every lookup fails with
/// "Permission denied" and each RCPT is deferred with 451 4.3.0. Dovecot's auth process reads
/// `dovecot-sql.conf.ext` while still root, so that file stays root's alone.
const POSTFIX_READER: &str = "postfix";

/// The gid of the group called `name`, `None` when there is none.
#[cfg(unix)]
fn group_id(name: &str) -> std::io::Result<Option<u32>> {
    crate::smtp::daemon::privileges::gid_by_name(name)
}

/// Writes `files` into `dir`. Files with credentials are created 0640 before any content is written and, when
/// `reader` names a group, handed to it (the program's usual group: see [`POSTFIX_READER`]). Returns notes for
/// the user about what could not be done (no such group here, not allowed to change the group).
fn write_all(dir: &PathBuf, files: &[File], reader: Option<&str>) -> Result<Vec<String>> {
    let io = |action, path: PathBuf| {
        move |source| Error::File {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create directory", dir.clone()))?;
    let mut notes = Vec::new();
    #[cfg(unix)]
    let reader_gid = match reader {
        Some(group) if files.iter().any(|f| f.secret) => match group_id(group) {
            Ok(Some(gid)) => Some(gid),
            Ok(None) => {
                notes.push(format!(
                    "note: there is no group '{group}' on this machine; where {group} runs, make the files \
                     with credentials readable by it: chgrp {group} {}/*.cf",
                    dir.display()
                ));
                None
            }
            Err(e) => {
                notes.push(format!("note: cannot look up group '{group}': {e}"));
                None
            }
        },
        _ => None,
    };
    #[cfg(not(unix))]
    let _ = reader;
    // Why the group of the credential files could not be changed (not root, not a member), if it could not.
    let mut refused: Option<std::io::Error> = None;
    for f in files {
        let path = dir.join(&f.name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        let mode = if f.secret { 0o640 } else { 0o644 };
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options
            .open(&path)
            .map_err(io("cannot write", path.clone()))?;
        // An existing file keeps its old mode and group on open: fix both before the content goes in.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io("cannot set permissions of", path.clone()))?;
            if f.secret
                && let Some(gid) = reader_gid
                && let Err(e) = std::os::unix::fs::fchown(&file, None, Some(gid))
            {
                refused.get_or_insert(e);
            }
        }
        std::io::Write::write_all(&mut file, f.content.as_bytes())
            .map_err(io("cannot write", path.clone()))?;
    }
    if let (Some(e), Some(group)) = (refused, reader) {
        notes.push(format!(
            "note: cannot give the files with credentials to group {group} ({e}), which must be able to read \
             them: chgrp {group} {}/*.cf",
            dir.display()
        ));
    }
    Ok(notes)
}

/// The Postfix or Dovecot files, naming `DIR` (or the program's usual directory) as where they live.
fn lookup_files(
    ctx: &Ctx,
    args: &OutArgs,
    default_dir: &str,
    generate: impl FnOnce(&crate::config::Config, &std::path::Path) -> Result<Vec<File>>,
) -> Result<Vec<File>> {
    let dir = match &args.out {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => PathBuf::from(default_dir),
    };
    generate(&ctx.config, &dir)
}

/// The command Dovecot's checkpassword passdb runs for app passwords: this binary with the config file of this
/// run (`--config`, `MAILCTL_CONFIG`, else the default path, which must then exist), and notes about what the
/// admin must make true.
fn checkpassword_command(ctx: &Ctx) -> Result<(String, Vec<String>)> {
    let binary = std::env::current_exe()
        .map_err(|e| Error::usage(format!("cannot tell where this binary is: {e}")))?;
    let mut notes = Vec::new();
    let config = match &ctx.config.config_file {
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        None => {
            notes.push(format!(
                "no config file was read; Dovecot's app password check reads {}, which must name the database",
                crate::config::DEFAULT_CONFIG_PATH
            ));
            PathBuf::from(crate::config::DEFAULT_CONFIG_PATH)
        }
    };
    for (what, path) in [("this binary", &binary), ("the config file", &config)] {
        let text = path.display().to_string();
        if text.contains(char::is_whitespace) || text.contains(['%', '\'', '"', '#']) {
            return Err(Error::usage(format!(
                "the path of {what} ({text}) has characters Dovecot's args cannot carry (spaces, %, quotes, #)"
            )));
        }
    }
    Ok((
        format!(
            "{} --config {} checkpassword",
            binary.display(),
            config.display()
        ),
        notes,
    ))
}

/// Runs a config subcommand.
pub async fn run(ctx: &Ctx, cmd: ConfigCmd) -> Result<()> {
    let (out, files, reader) = match &cmd {
        ConfigCmd::Postfix(a) => (
            &a.out,
            lookup_files(ctx, a, "/etc/postfix/mailctl", lookup_config::postfix)?,
            Some(POSTFIX_READER),
        ),
        ConfigCmd::Dovecot(a) => {
            let (command, notes) = checkpassword_command(ctx)?;
            for note in notes {
                ctx.out.note(format!("note: {note}"));
            }
            (
                &a.out,
                lookup_files(ctx, a, "/etc/dovecot", |config, dir| {
                    lookup_config::dovecot(config, dir, &command)
                })?,
                None,
            )
        }
        ConfigCmd::Systemd(a) => {
            let (params, notes) = systemd::params(&ctx.config, a)?;
            for note in notes {
                ctx.out.note(format!("note: {note}"));
            }
            (&a.out, vec![systemd::unit(&params)], None)
        }
    };
    let written_to = out
        .as_ref()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));
    if let Some(dir) = &written_to {
        for note in write_all(dir, &files, reader)? {
            ctx.out.note(note);
        }
    }
    let files = files
        .into_iter()
        .map(|f| Shown {
            content: (written_to.is_none() || !f.secret).then_some(f.content),
            name: f.name,
            secret: f.secret,
        })
        .collect();
    ctx.out.emit(&Files { files, written_to });
    Ok(())
}
