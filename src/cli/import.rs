//! `mailctl import FILE.csv [--dry-run]`: all rows in one transaction, every row error reported with its line.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::Ctx;
use crate::bulk::{self, Line, Password, Record};
use crate::error::{Error, Result};
use crate::output::Render;
use crate::provision;
use crate::store::Tx;

/// Arguments of `mailctl import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV file in the layout `mailctl export` writes (see README); `-` for standard input
    file: PathBuf,
    /// Check every row against the database and report, without changing anything
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    dry_run: bool,
    domains: usize,
    alias_domains: usize,
    mailboxes: usize,
    aliases: usize,
}

impl Render for Summary {
    fn render(&self) -> String {
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        format!(
            "{verb} {} domains, {} alias domains, {} mailboxes, {} aliases",
            self.domains, self.alias_domains, self.mailboxes, self.aliases
        )
    }
}

async fn apply(ctx: &Ctx, tx: &mut Tx, record: Record, summary: &mut Summary) -> Result<()> {
    match record {
        Record::Domain(name, settings) => {
            provision::add_domain(tx, &name, &settings).await?;
            summary.domains += 1;
        }
        Record::AliasDomain {
            alias,
            target,
            active,
        } => {
            provision::add_alias_domain(tx, &alias, &target, active).await?;
            summary.alias_domains += 1;
        }
        Record::Mailbox(addr, password, settings) => {
            let hash = match password {
                Password::Hash(h) => h,
                Password::Plain(p) => {
                    crate::password::check_acceptable(&p, ctx.config.min_password_length)
                        .map_err(Error::Usage)?;
                    let scheme = ctx.config.password_scheme;
                    tokio::task::spawn_blocking(move || crate::password::hash(scheme, &p))
                        .await
                        .map_err(|e| Error::refused(format!("password hashing failed: {e}")))?
                        .map_err(|e| Error::usage(e.to_string()))?
                }
            };
            provision::add_mailbox(tx, &addr, hash, &settings).await?;
            summary.mailboxes += 1;
        }
        Record::Alias(addr, goto, active) => {
            provision::set_alias(tx, &addr, &goto, active).await?;
            summary.aliases += 1;
        }
    }
    Ok(())
}

/// Reads the whole input first, so that any I/O failure (a missing file, a directory, a read error half-way)
/// is a file error naming the path (exit 1), never mistaken for a malformed header or row.
fn read_input(path: &PathBuf) -> Result<Vec<Line>> {
    if path.as_os_str() == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut data)
            .map_err(|source| Error::File {
                action: "cannot read",
                path: PathBuf::from("standard input"),
                source,
            })?;
        return bulk::parse(data.as_slice());
    }
    let data = std::fs::read(path).map_err(|source| Error::File {
        action: "cannot read",
        path: path.clone(),
        source,
    })?;
    bulk::parse(data.as_slice()).map_err(|e| match e {
        Error::Usage(m) => Error::usage(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Runs `mailctl import`.
pub async fn run(ctx: &Ctx, args: ImportArgs) -> Result<()> {
    let lines = read_input(&args.file)?;
    let store = ctx.store().await?;
    let mut tx = store.begin_write().await?;
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Default::default()
    };
    let mut errors = Vec::new();
    let bar = ctx.out.progress(lines.len() as u64, "importing");
    for Line { line, record } in lines {
        match apply(ctx, &mut tx, record, &mut summary).await {
            Ok(()) => {}
            // A failed statement may have ended the transaction (a deadlock rolls it back in InnoDB): stop.
            Err(e @ (Error::Unreachable { .. } | Error::Database { .. })) => return Err(e),
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !errors.is_empty() {
        tx.rollback().await?;
        return Err(Error::Rows {
            summary: format!(
                "{}: {} rows failed; nothing was imported",
                args.file.display(),
                errors.len()
            ),
            rows: errors,
        });
    }
    if args.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    ctx.out.emit(&summary);
    Ok(())
}
