//! `mailctl alias-domain add|list|delete`

use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse};
use crate::error::Result;
use crate::model::DomainName;
use crate::output::{Render, table, yes_no};
use crate::provision;
use crate::store::AliasDomainRow;
use crate::time::db_to_rfc3339;

/// Alias-domain subcommands.
#[derive(Debug, Subcommand)]
pub enum AliasDomainCmd {
    /// Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN
    Add {
        /// The domain whose mail is redirected (created as a domain row if it does not exist)
        alias_domain: String,
        /// The hosted domain that has the mailboxes
        target_domain: String,
        /// Create the mapping inactive
        #[arg(long)]
        inactive: bool,
    },
    /// List alias domains
    List,
    /// Remove an alias domain (and its domain row when it holds nothing else)
    Delete {
        /// The alias domain
        alias_domain: String,
    },
}

/// An alias-domain mapping as printed.
#[derive(Debug, Serialize)]
pub struct AliasDomainView {
    alias_domain: String,
    target_domain: String,
    active: bool,
    created: String,
}

impl From<AliasDomainRow> for AliasDomainView {
    fn from(r: AliasDomainRow) -> Self {
        AliasDomainView {
            created: db_to_rfc3339(&r.created),
            alias_domain: r.alias_domain,
            target_domain: r.target_domain,
            active: r.active,
        }
    }
}

struct AliasDomainList(Vec<AliasDomainView>);

impl Serialize for AliasDomainList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for AliasDomainList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no alias domains".into();
        }
        table(
            &["ALIAS DOMAIN", "TARGET DOMAIN", "ACTIVE"],
            self.0.iter().map(|a| {
                vec![
                    a.alias_domain.clone(),
                    a.target_domain.clone(),
                    yes_no(a.active),
                ]
            }),
        )
    }
}

/// Runs an alias-domain subcommand.
pub async fn run(ctx: &Ctx, cmd: AliasDomainCmd) -> Result<()> {
    let store = ctx.store().await?;
    let mut tx = match cmd {
        AliasDomainCmd::List => store.begin().await?,
        _ => store.begin_write().await?,
    };
    match cmd {
        AliasDomainCmd::Add {
            alias_domain,
            target_domain,
            inactive,
        } => {
            let alias: DomainName = parse(&alias_domain)?;
            let target: DomainName = parse(&target_domain)?;
            let (row, created) =
                provision::add_alias_domain(&mut tx, &alias, &target, !inactive).await?;
            tx.commit().await?;
            let extra = if created {
                format!(" (created domain {alias} for it)")
            } else {
                String::new()
            };
            ctx.out.done(
                &AliasDomainView::from(row),
                format!("added alias domain {alias} -> {target}{extra}"),
            );
        }
        AliasDomainCmd::List => {
            let rows = tx.alias_domains().await?;
            ctx.out
                .emit(&AliasDomainList(rows.into_iter().map(Into::into).collect()));
        }
        AliasDomainCmd::Delete { alias_domain } => {
            let alias: DomainName = parse(&alias_domain)?;
            let removed_domain = provision::delete_alias_domain(&mut tx, &alias).await?;
            tx.commit().await?;
            let extra = if removed_domain {
                " and its empty domain row"
            } else {
                ""
            };
            ctx.out.done(
                &serde_json::json!({ "deleted": alias.as_str(), "domain_row_removed": removed_domain }),
                format!("deleted alias domain {alias}{extra}"),
            );
        }
    }
    Ok(())
}
