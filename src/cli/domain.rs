//! `mailctl domain add|list|show|update|delete`

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{ActiveFlags, Ctx, parse};
use crate::error::Result;
use crate::model::DomainName;
use crate::model::shown_with_unicode;
use crate::output::{Render, key_values, table, yes_no};
use crate::provision::{self, DomainSettings};
use crate::store::{DomainRow, DomainUsage};
use crate::time::{db_to_local, db_to_rfc3339};

/// Domain subcommands.
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a hosted domain
    Add {
        /// Domain name (internationalized names are stored in their xn-- form)
        domain: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List hosted domains with their usage
    List,
    /// Show one domain with its limits and usage
    Show {
        /// Domain name
        domain: String,
    },
    /// Change a domain's description, limits or flags
    Update {
        /// Domain name
        domain: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete a domain (refused while it holds mailboxes or aliases, unless --force)
    Delete {
        /// Domain name
        domain: String,
        /// Also delete every mailbox, alias and alias-domain mapping of the domain
        #[arg(long)]
        force: bool,
    },
}

/// Domain properties settable from the command line.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// Free-text description
    #[arg(long)]
    description: Option<String>,
    /// Most mailboxes allowed (0 unlimited, -1 none)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_mailboxes: Option<i64>,
    /// Most aliases allowed, catch-all included (0 unlimited, -1 none)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_aliases: Option<i64>,
    /// Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default
    #[arg(long, value_name = "MB")]
    max_quota_mb: Option<i64>,
    /// Total quota of all mailboxes in MB (0 unlimited)
    #[arg(long, value_name = "MB")]
    domain_quota_mb: Option<i64>,
    /// This server is only a backup MX for the domain (relays to the primary)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    backup_mx: Option<bool>,
    #[command(flatten)]
    active: ActiveFlags,
}

impl SettingsArgs {
    fn settings(&self) -> DomainSettings {
        DomainSettings {
            description: self.description.clone(),
            max_mailboxes: self.max_mailboxes,
            max_aliases: self.max_aliases,
            max_quota_mb: self.max_quota_mb,
            quota_mb: self.domain_quota_mb,
            backup_mx: self.backup_mx,
            active: self.active.value(),
        }
    }
}

/// A domain as printed (`--json` field names are stable).
#[derive(Debug, Serialize)]
pub struct DomainView {
    domain: String,
    description: String,
    max_mailboxes: i64,
    max_aliases: i64,
    max_quota_mb: i64,
    domain_quota_mb: i64,
    transport: String,
    backup_mx: bool,
    active: bool,
    created: String,
    modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<DomainUsage>,
}

impl DomainView {
    fn new(row: DomainRow, usage: Option<DomainUsage>) -> Self {
        DomainView {
            created: db_to_rfc3339(&row.created),
            modified: db_to_rfc3339(&row.modified),
            domain: row.domain,
            description: row.description,
            max_mailboxes: row.mailboxes,
            max_aliases: row.aliases,
            max_quota_mb: row.maxquota,
            domain_quota_mb: row.quota,
            transport: row.transport,
            backup_mx: row.backupmx,
            active: row.active,
            usage,
        }
    }
}

/// Renders a count against a postfixadmin limit: `3/10`, `3/unlimited`, `0/none`.
fn of_limit(have: i64, limit: i64) -> String {
    match limit {
        0 => format!("{have}/unlimited"),
        l if l < 0 => format!("{have}/none"),
        l => format!("{have}/{l}"),
    }
}

fn mb_limit(mb: i64) -> String {
    if mb <= 0 {
        "unlimited".into()
    } else {
        format!("{mb} MB")
    }
}

impl Render for DomainView {
    fn render(&self) -> String {
        let u = self.usage.clone().unwrap_or_default();
        key_values(vec![
            ("domain", shown_with_unicode(&self.domain)),
            ("description", self.description.clone()),
            ("active", yes_no(self.active)),
            ("backup MX", yes_no(self.backup_mx)),
            ("mailboxes", of_limit(u.mailboxes, self.max_mailboxes)),
            ("aliases", of_limit(u.aliases, self.max_aliases)),
            ("quota per mailbox", mb_limit(self.max_quota_mb)),
            (
                "quota allocated",
                format!(
                    "{} MB of {}",
                    u.quota_bytes / provision::MB,
                    mb_limit(self.domain_quota_mb)
                ),
            ),
            ("alias domains", u.alias_domains.to_string()),
            (
                "created",
                db_to_local(&self.created.replace('T', " ").replace('Z', "")),
            ),
        ])
    }
}

struct DomainList(Vec<DomainView>);

impl Serialize for DomainList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for DomainList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no domains".into();
        }
        table(
            &[
                "DOMAIN",
                "MAILBOXES",
                "ALIASES",
                "ACTIVE",
                "BACKUP MX",
                "DESCRIPTION",
            ],
            self.0.iter().map(|d| {
                let u = d.usage.clone().unwrap_or_default();
                vec![
                    shown_with_unicode(&d.domain),
                    of_limit(u.mailboxes, d.max_mailboxes),
                    of_limit(u.aliases, d.max_aliases),
                    yes_no(d.active),
                    yes_no(d.backup_mx),
                    d.description.clone(),
                ]
            }),
        )
    }
}

/// Runs a domain subcommand.
pub async fn run(ctx: &Ctx, cmd: DomainCmd) -> Result<()> {
    let store = ctx.store().await?;
    let mut tx = match cmd {
        DomainCmd::List | DomainCmd::Show { .. } => store.begin().await?,
        _ => store.begin_write().await?,
    };
    match cmd {
        DomainCmd::Add { domain, settings } => {
            let name: DomainName = parse(&domain)?;
            let row = provision::add_domain(&mut tx, &name, &settings.settings()).await?;
            tx.commit().await?;
            ctx.out
                .done(&DomainView::new(row, None), format!("added domain {name}"));
        }
        DomainCmd::List => {
            let mut views = Vec::new();
            for row in tx.domains().await? {
                let usage = tx.domain_usage(&row.domain).await?;
                views.push(DomainView::new(row, Some(usage)));
            }
            ctx.out.emit(&DomainList(views));
        }
        DomainCmd::Show { domain } => {
            let name: DomainName = parse(&domain)?;
            let row = provision::require_domain(&mut tx, &name).await?;
            let usage = tx.domain_usage(&row.domain).await?;
            ctx.out.emit(&DomainView::new(row, Some(usage)));
        }
        DomainCmd::Update { domain, settings } => {
            let name: DomainName = parse(&domain)?;
            let row = provision::update_domain(&mut tx, &name, &settings.settings()).await?;
            tx.commit().await?;
            ctx.out.done(
                &DomainView::new(row, None),
                format!("updated domain {name}"),
            );
        }
        DomainCmd::Delete { domain, force } => {
            let name: DomainName = parse(&domain)?;
            let removed = provision::delete_domain(&mut tx, &name, force).await?;
            tx.commit().await?;
            let msg = format!(
                "deleted domain {name} with {}",
                provision::contents(&removed)
            );
            #[derive(Serialize)]
            struct Deleted<'a> {
                deleted: &'a str,
                removed: DomainUsage,
            }
            ctx.out.done(
                &Deleted {
                    deleted: name.as_str(),
                    removed,
                },
                msg,
            );
        }
    }
    Ok(())
}
