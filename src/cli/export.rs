//! `mailctl export [--format csv|json]`: everything needed to rebuild the database with `mailctl import`.
//!
//! That includes every mailbox's password hash: a backup without them could not restore the logins, and
//! asking for an export is asking for them (like `mysqldump` or `slapcat`). It is the one listing that shows
//! hashes; `mailbox list/show` name only the scheme. The help says to keep the output as private as the
//! database.

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::Ctx;
use crate::bulk;
use crate::error::Result;
use crate::store::{AliasDomainRow, AliasRow, DomainRow, MailboxRow, Tx};
use crate::time::db_to_rfc3339;

/// Output formats of `mailctl export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// The import layout (README), with password hashes
    Csv,
    /// One JSON document with domains, alias_domains, mailboxes and aliases
    Json,
}

/// Arguments of `mailctl export`.
#[derive(Debug, Args)]
#[command(
    after_help = "The output holds every mailbox's password hash, so that import restores the logins: keep it as \
                  private as the database (e.g. (umask 077; mailctl export > backup.csv))."
)]
pub struct ExportArgs {
    /// Output format [default: csv, or json with --json]
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Serialize)]
struct Dump {
    domains: Vec<DomainOut>,
    alias_domains: Vec<AliasDomainOut>,
    mailboxes: Vec<MailboxOut>,
    aliases: Vec<AliasOut>,
}

#[derive(Serialize)]
struct DomainOut {
    domain: String,
    description: String,
    max_mailboxes: i64,
    max_aliases: i64,
    max_quota_mb: i64,
    domain_quota_mb: i64,
    backup_mx: bool,
    active: bool,
    created: String,
}

#[derive(Serialize)]
struct AliasDomainOut {
    alias_domain: String,
    target_domain: String,
    active: bool,
}

#[derive(Serialize)]
struct MailboxOut {
    address: String,
    name: String,
    password_hash: String,
    quota_bytes: i64,
    active: bool,
    smtp_active: bool,
    created: String,
}

#[derive(Serialize)]
struct AliasOut {
    address: String,
    destinations: Vec<String>,
    active: bool,
}

fn b(v: bool) -> String {
    if v { "1" } else { "0" }.to_string()
}

async fn collect(
    tx: &mut Tx,
) -> Result<(
    Vec<DomainRow>,
    Vec<AliasDomainRow>,
    Vec<MailboxRow>,
    Vec<AliasRow>,
)> {
    Ok((
        tx.domains().await?,
        tx.alias_domains().await?,
        tx.mailboxes(None).await?,
        tx.aliases(None, false).await?,
    ))
}

/// Runs `mailctl export`.
pub async fn run(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    let (domains, alias_domains, mailboxes, aliases) = collect(&mut tx).await?;
    let format = args.format.unwrap_or(if ctx.out.json {
        Format::Json
    } else {
        Format::Csv
    });
    match format {
        Format::Json => {
            let dump = Dump {
                domains: domains
                    .into_iter()
                    .map(|d| DomainOut {
                        created: db_to_rfc3339(&d.created),
                        domain: d.domain,
                        description: d.description,
                        max_mailboxes: d.mailboxes,
                        max_aliases: d.aliases,
                        max_quota_mb: d.maxquota,
                        domain_quota_mb: d.quota,
                        backup_mx: d.backupmx,
                        active: d.active,
                    })
                    .collect(),
                alias_domains: alias_domains
                    .into_iter()
                    .map(|a| AliasDomainOut {
                        alias_domain: a.alias_domain,
                        target_domain: a.target_domain,
                        active: a.active,
                    })
                    .collect(),
                mailboxes: mailboxes
                    .into_iter()
                    .map(|m| MailboxOut {
                        created: db_to_rfc3339(&m.created),
                        address: m.username,
                        name: m.name,
                        password_hash: m.password,
                        quota_bytes: m.quota,
                        active: m.active,
                        smtp_active: m.smtp_active,
                    })
                    .collect(),
                aliases: aliases
                    .into_iter()
                    .map(|a| AliasOut {
                        destinations: a.targets(),
                        address: a.address,
                        active: a.active,
                    })
                    .collect(),
            };
            crate::output::print_line(&serde_json::to_string_pretty(&dump).unwrap_or_default());
        }
        Format::Csv => {
            let mut rows = Vec::new();
            for d in domains {
                rows.push(vec![
                    ("kind", "domain".to_string()),
                    ("address", d.domain),
                    ("name", d.description),
                    ("max_mailboxes", d.mailboxes.to_string()),
                    ("max_aliases", d.aliases.to_string()),
                    ("max_quota_mb", d.maxquota.to_string()),
                    ("domain_quota_mb", d.quota.to_string()),
                    ("backup_mx", b(d.backupmx)),
                    ("active", b(d.active)),
                ]);
            }
            for a in alias_domains {
                rows.push(vec![
                    ("kind", "alias_domain".to_string()),
                    ("address", a.alias_domain),
                    ("target", a.target_domain),
                    ("active", b(a.active)),
                ]);
            }
            for m in mailboxes {
                rows.push(vec![
                    ("kind", "mailbox".to_string()),
                    ("address", m.username),
                    ("name", m.name),
                    ("password_hash", m.password),
                    ("quota_bytes", m.quota.to_string()),
                    ("active", b(m.active)),
                    ("smtp_active", b(m.smtp_active)),
                ]);
            }
            for a in aliases {
                rows.push(vec![
                    ("kind", "alias".to_string()),
                    ("target", a.targets().join(",")),
                    ("address", a.address),
                    ("active", b(a.active)),
                ]);
            }
            print!("{}", bulk::write_csv(&rows)?);
        }
    }
    Ok(())
}
