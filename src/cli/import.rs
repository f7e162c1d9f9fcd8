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

async fn apply(tx: &mut Tx, record: Record, summary: &mut Summary) -> Result<()> {
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
        // Mailboxes go in batches (see `run`).
        Record::Mailbox(addr, ..) => {
            return Err(Error::refused(format!(
                "{addr}: a mailbox outside its batch"
            )));
        }
        Record::Alias(addr, goto, active) => {
            provision::set_alias(tx, &addr, &goto, active).await?;
            summary.aliases += 1;
        }
    }
    Ok(())
}

/// Adds a run of mailboxes in batches, counting them and their refusals.
async fn add_mailboxes(
    tx: &mut Tx,
    mailboxes: Vec<provision::NewMailbox>,
    summary: &mut Summary,
    errors: &mut Vec<(u64, String)>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    // One call for the whole run: each domain is counted once for all of it.
    let added = provision::add_mailboxes(tx, mailboxes, |n| bar.inc(n as u64)).await?;
    summary.mailboxes += added.rows.len();
    errors.extend(
        added
            .refused
            .into_iter()
            .map(|(line, e)| (line, e.to_string())),
    );
    Ok(())
}

/// Hashes every plain-text password, on every core (the hash is the slow part of an import of plain-text
/// passwords, and each is independent). A password that cannot be accepted or hashed becomes a row error and
/// its row is dropped; every other record comes back in order, mailboxes with `Password::Hash`.
async fn hash_passwords(
    ctx: &Ctx,
    lines: Vec<Line>,
    errors: &mut Vec<(u64, String)>,
) -> Result<Vec<Line>> {
    let min = ctx.config.min_password_length;
    let scheme = ctx.config.password_scheme;
    let mut kept: Vec<Option<Line>> = Vec::with_capacity(lines.len());
    let (mut at, mut plain) = (Vec::new(), Vec::new());
    for Line { line, record } in lines {
        if let Record::Mailbox(_, Password::Plain(p), _) = &record {
            if let Err(e) = crate::password::check_acceptable(p, min) {
                errors.push((line, e.to_string()));
                continue;
            }
            at.push(kept.len());
            plain.push(p.clone());
        }
        kept.push(Some(Line { line, record }));
    }
    if !plain.is_empty() {
        let hashed = tokio::task::spawn_blocking(move || crate::password::hash_all(scheme, &plain))
            .await
            .map_err(|e| Error::refused(format!("password hashing failed: {e}")))?;
        for (index, result) in at.into_iter().zip(hashed) {
            match result {
                Ok(hash) => {
                    if let Some(Line {
                        record: Record::Mailbox(_, password, _),
                        ..
                    }) = &mut kept[index]
                    {
                        *password = Password::Hash(hash);
                    }
                }
                Err(e) => {
                    if let Some(l) = kept[index].take() {
                        errors.push((l.line, e.to_string()));
                    }
                }
            }
        }
    }
    Ok(kept.into_iter().flatten().collect())
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
    let before = lines.len();
    let lines = hash_passwords(ctx, lines, &mut errors).await?;
    bar.inc((before - lines.len()) as u64);
    // Records come sorted by kind, so the mailboxes are one run: they go in one batched call, which counts
    // each domain once instead of once per mailbox.
    let mut mailboxes = Vec::new();
    for Line { line, record } in lines {
        if let Record::Mailbox(addr, Password::Hash(password_hash), settings) = record {
            mailboxes.push(provision::NewMailbox {
                line,
                addr,
                password_hash,
                settings,
            });
            continue;
        }
        if !mailboxes.is_empty() {
            add_mailboxes(
                &mut tx,
                std::mem::take(&mut mailboxes),
                &mut summary,
                &mut errors,
                &bar,
            )
            .await?;
        }
        match apply(&mut tx, record, &mut summary).await {
            Ok(()) => {}
            // A failed statement may have ended the transaction (a deadlock rolls it back in InnoDB): stop.
            Err(e @ (Error::Unreachable { .. } | Error::Database { .. })) => return Err(e),
            Err(e) => errors.push((line, e.to_string())),
        }
        bar.inc(1);
    }
    if !mailboxes.is_empty() {
        add_mailboxes(&mut tx, mailboxes, &mut summary, &mut errors, &bar).await?;
    }
    bar.finish_and_clear();
    if !errors.is_empty() {
        tx.rollback().await?;
        // In file order, whatever order the records were applied in.
        errors.sort_by_key(|(line, _)| *line);
        return Err(Error::Rows {
            summary: format!(
                "{}: {} rows failed; nothing was imported",
                args.file.display(),
                errors.len()
            ),
            rows: errors
                .into_iter()
                .map(|(line, e)| format!("line {line}: {e}"))
                .collect(),
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
