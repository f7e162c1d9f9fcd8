//! `mailctl alias add|list|show|update|delete`

use clap::Subcommand;
use serde::Serialize;

use super::{ActiveFlags, Ctx, parse};
use crate::error::{Error, Result};
use crate::model::{Address, AliasAddress, DomainName};
use crate::output::{Render, key_values, table, yes_no};
use crate::provision;
use crate::store::AliasRow;
use crate::time::db_to_rfc3339;

/// Alias subcommands.
#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Add an alias forwarding to one or more destinations; @domain makes a catch-all
    Add {
        /// Alias address (local@domain), or @domain for a catch-all
        address: String,
        /// Destination addresses (local or external)
        #[arg(required = true, value_name = "DEST")]
        destinations: Vec<String>,
        /// Create it inactive
        #[arg(long)]
        inactive: bool,
    },
    /// List aliases, all or of one domain
    List {
        /// Only this domain
        domain: Option<String>,
        /// Also list mailboxes' own alias rows (address = destination)
        #[arg(long)]
        all: bool,
    },
    /// Show one alias
    Show {
        /// Alias address or @domain
        address: String,
    },
    /// Replace an alias's destinations and/or switch it on or off
    Update {
        /// Alias address or @domain
        address: String,
        /// New destinations (replace the current list)
        #[arg(value_name = "DEST")]
        destinations: Vec<String>,
        #[command(flatten)]
        active: ActiveFlags,
    },
    /// Delete an alias
    Delete {
        /// Alias address or @domain
        address: String,
    },
}

/// An alias as printed (`--json` field names are stable).
#[derive(Debug, Serialize)]
pub struct AliasView {
    address: String,
    domain: String,
    destinations: Vec<String>,
    catch_all: bool,
    active: bool,
    created: String,
    modified: String,
}

impl AliasView {
    fn new(row: AliasRow) -> Self {
        AliasView {
            destinations: row.targets(),
            catch_all: row.address.starts_with('@'),
            created: db_to_rfc3339(&row.created),
            modified: db_to_rfc3339(&row.modified),
            address: row.address,
            domain: row.domain,
            active: row.active,
        }
    }
}

impl Render for AliasView {
    fn render(&self) -> String {
        key_values(vec![
            ("address", self.address.clone()),
            ("destinations", self.destinations.join("\n")),
            ("catch-all", yes_no(self.catch_all)),
            ("active", yes_no(self.active)),
            ("created", self.created.clone()),
        ])
    }
}

struct AliasList(Vec<AliasView>);

impl Serialize for AliasList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for AliasList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no aliases".into();
        }
        table(
            &["ADDRESS", "DESTINATIONS", "ACTIVE"],
            self.0.iter().map(|a| {
                vec![
                    a.address.clone(),
                    a.destinations.join(", "),
                    yes_no(a.active),
                ]
            }),
        )
    }
}

fn destinations(list: &[String]) -> Result<Vec<Address>> {
    list.iter()
        .flat_map(|d| d.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(parse::<Address>)
        .collect()
}

/// Runs an alias subcommand.
pub async fn run(ctx: &Ctx, cmd: AliasCmd) -> Result<()> {
    let store = ctx.store().await?;
    let mut tx = match cmd {
        AliasCmd::List { .. } | AliasCmd::Show { .. } => store.begin().await?,
        _ => store.begin_write().await?,
    };
    match cmd {
        AliasCmd::Add {
            address,
            destinations: dest,
            inactive,
        } => {
            let addr: AliasAddress = parse(&address)?;
            let goto = destinations(&dest)?;
            let row = provision::add_alias(&mut tx, &addr, &goto, !inactive).await?;
            tx.commit().await?;
            let msg = format!("added alias {addr} -> {}", row.targets().join(", "));
            ctx.out.done(&AliasView::new(row), msg);
        }
        AliasCmd::List { domain, all } => {
            let domain = domain.map(|d| parse::<DomainName>(&d)).transpose()?;
            if let Some(d) = &domain {
                provision::require_domain(&mut tx, d).await?;
            }
            let rows = tx
                .aliases(domain.as_ref().map(DomainName::as_str), all)
                .await?;
            ctx.out
                .emit(&AliasList(rows.into_iter().map(AliasView::new).collect()));
        }
        AliasCmd::Show { address } => {
            let addr: AliasAddress = parse(&address)?;
            let row = tx
                .alias(&addr.to_string())
                .await?
                .ok_or_else(|| Error::not_found("alias", &addr))?;
            ctx.out.emit(&AliasView::new(row));
        }
        AliasCmd::Update {
            address,
            destinations: dest,
            active,
        } => {
            let addr: AliasAddress = parse(&address)?;
            let goto = destinations(&dest)?;
            if goto.is_empty() && active.value().is_none() {
                return Err(Error::usage(
                    "nothing to change: give new destinations, --active or --inactive",
                ));
            }
            let goto = (!goto.is_empty()).then_some(goto.as_slice());
            let row = provision::update_alias(&mut tx, &addr, goto, active.value()).await?;
            tx.commit().await?;
            let msg = format!("updated alias {addr} -> {}", row.targets().join(", "));
            ctx.out.done(&AliasView::new(row), msg);
        }
        AliasCmd::Delete { address } => {
            let addr: AliasAddress = parse(&address)?;
            provision::delete_alias(&mut tx, &addr).await?;
            tx.commit().await?;
            ctx.out.done(
                &serde_json::json!({ "deleted": addr.to_string() }),
                format!("deleted alias {addr}"),
            );
        }
    }
    Ok(())
}
