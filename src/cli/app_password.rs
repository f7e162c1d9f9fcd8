//! `mailctl mailbox app-password add|list|revoke`: the passwords a mailbox gives its mail clients (postfixadmin's
//! `mailbox_app_password`). Submission AUTH takes them as it takes the main password; a mailbox with TOTP on
//! takes only them (see `mailctl mailbox totp`).

use clap::Subcommand;
use serde::Serialize;

use super::password_input::PasswordArgs;
use super::{Ctx, parse};
use crate::error::{Error, Result};
use crate::model::Address;
use crate::output::{Render, table};
use crate::provision;
use crate::store::AppPasswordRow;

/// App password subcommands.
#[derive(Debug, Subcommand)]
pub enum AppPasswordCmd {
    /// Add an app password (one with the same description is replaced)
    Add {
        /// Address of the mailbox
        address: String,
        /// What it is for, like "phone" or "laptop"
        #[arg(long)]
        description: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List a mailbox's app passwords (never the passwords)
    List {
        /// Address of the mailbox
        address: String,
    },
    /// Revoke an app password by its id (from `list`)
    Revoke {
        /// The id
        id: i64,
    },
}

/// A new app password as printed; the generated password only once, here.
#[derive(Debug, Serialize)]
struct Added {
    #[serde(flatten)]
    row: AppPasswordRow,
    replaced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<String>,
}

/// `list`.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Listed(Vec<AppPasswordRow>);

impl Render for Listed {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no app passwords".into();
        }
        table(
            &["ID", "DESCRIPTION"],
            self.0
                .iter()
                .map(|r| vec![r.id.to_string(), r.description.clone()]),
        )
    }
}

/// Runs an app password subcommand.
pub async fn run(ctx: &Ctx, cmd: AppPasswordCmd) -> Result<()> {
    match cmd {
        AppPasswordCmd::Add {
            address,
            description,
            password,
        } => {
            let addr = parse::<Address>(&address)?;
            provision::free_text("--description", &description)?;
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            provision::require_mailbox(&mut tx, &addr).await?;
            tx.rollback().await?;
            // Read and hash the password with no transaction open.
            let pw = password.obtain(ctx, &addr).await?;
            let mut tx = store.begin_write().await?;
            let (row, replaced) =
                provision::add_app_password(&mut tx, &addr, &description, &pw.hash).await?;
            tx.commit().await?;
            let verb = if replaced { "replaced" } else { "added" };
            let mut message = format!(
                "{verb} app password {} ({:?}) of {addr}",
                row.id, row.description
            );
            if let Some(p) = &pw.generated {
                if ctx.out.quiet && !ctx.out.json {
                    // Shown exactly once: -q must not swallow it.
                    crate::output::print_line(p);
                    return Ok(());
                }
                message = format!("{message}\npassword: {p}");
            }
            ctx.out.done(
                &Added {
                    row,
                    replaced,
                    generated_password: pw.generated,
                },
                message,
            );
        }
        AppPasswordCmd::List { address } => {
            let addr = parse::<Address>(&address)?;
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            provision::require_mailbox(&mut tx, &addr).await?;
            let rows = tx.app_passwords(&addr.to_string()).await?;
            tx.rollback().await?;
            ctx.out.emit(&Listed(rows));
        }
        AppPasswordCmd::Revoke { id } => {
            if id <= 0 {
                return Err(Error::usage(format!(
                    "'{id}' is not an app password id (see app-password list)"
                )));
            }
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            let row = provision::revoke_app_password(&mut tx, id).await?;
            tx.commit().await?;
            let message = format!(
                "revoked app password {} ({:?}) of {}",
                row.id, row.description, row.username
            );
            ctx.out.done(&row, message);
        }
    }
    Ok(())
}
