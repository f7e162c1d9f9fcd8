//! `mailctl mailbox add|list|show|update|passwd|enable|disable|delete|app-password|totp` (alias `mailctl user`)

use clap::Subcommand;
use serde::Serialize;

use super::password_input::PasswordArgs;
use super::{ActiveFlags, Ctx, parse};
use crate::error::{Error, Result};
use crate::model::{Address, DomainName};
use crate::output::{Render, key_values, table, yes_no};
use crate::password;
use crate::provision::{self, MB, MailboxSettings};
use crate::store::MailboxRow;
use crate::time::{db_to_local, db_to_rfc3339};

/// Mailbox subcommands.
#[derive(Debug, Subcommand)]
pub enum MailboxCmd {
    /// Add a mailbox (and its self-alias row, as postfixadmin does)
    Add {
        /// Address, like alice@example.org
        address: String,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        /// Quota in MB (0 unlimited) [default: the domain's max quota per mailbox]
        #[arg(long, value_name = "MB")]
        quota_mb: Option<i64>,
        /// Create it inactive
        #[arg(long)]
        inactive: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List mailboxes, all or of one domain
    List {
        /// Only this domain
        domain: Option<String>,
    },
    /// Show one mailbox
    Show {
        /// Address
        address: String,
    },
    /// Change a mailbox's name, quota or flags
    Update {
        /// Address
        address: String,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        /// Quota in MB (0 unlimited)
        #[arg(long, value_name = "MB")]
        quota_mb: Option<i64>,
        #[command(flatten)]
        active: ActiveFlags,
        /// Allow (true) or refuse (false) SMTP AUTH for this mailbox
        #[arg(long, value_name = "BOOL")]
        smtp: Option<bool>,
    },
    /// Set a new password
    Passwd {
        /// Address
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Let the mailbox receive mail and log in again
    Enable {
        /// Address
        address: String,
    },
    /// Stop delivery and logins for the mailbox, keeping its mail
    Disable {
        /// Address
        address: String,
    },
    /// Delete the mailbox's rows (its Maildir on disk is left for the admin to archive or remove)
    Delete {
        /// Address
        address: String,
    },
    /// Passwords for mail clients, several per mailbox (postfixadmin's app passwords)
    #[command(subcommand)]
    AppPassword(super::app_password::AppPasswordCmd),
    /// Restrict mail logins to app passwords (postfixadmin's TOTP rule)
    #[command(subcommand)]
    Totp(super::totp::TotpCmd),
}

fn quota_bytes(mb: Option<i64>) -> Result<Option<i64>> {
    match mb {
        Some(m) if m < 0 => Err(Error::usage(format!(
            "--quota-mb must not be negative, got {m}"
        ))),
        Some(m) => m
            .checked_mul(MB)
            .map(Some)
            .ok_or_else(|| Error::usage(format!("--quota-mb {m} is too large"))),
        None => Ok(None),
    }
}

/// A mailbox as printed (`--json` field names are stable). The hash is never shown, only its scheme.
#[derive(Debug, Serialize)]
pub struct MailboxView {
    address: String,
    name: String,
    domain: String,
    maildir: String,
    quota_bytes: i64,
    active: bool,
    smtp_active: bool,
    password_scheme: &'static str,
    created: String,
    modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<String>,
}

impl MailboxView {
    fn new(row: MailboxRow) -> Self {
        MailboxView {
            password_scheme: password::scheme_of(&row.password),
            created: db_to_rfc3339(&row.created),
            modified: db_to_rfc3339(&row.modified),
            address: row.username,
            name: row.name,
            domain: row.domain,
            maildir: row.maildir,
            quota_bytes: row.quota,
            active: row.active,
            smtp_active: row.smtp_active,
            generated_password: None,
        }
    }
}

fn quota_text(bytes: i64) -> String {
    if bytes == 0 {
        "unlimited".into()
    } else {
        format!("{} MB", bytes / MB)
    }
}

impl Render for MailboxView {
    fn render(&self) -> String {
        key_values(vec![
            ("address", crate::model::shown_with_unicode(&self.address)),
            ("name", self.name.clone()),
            ("maildir", self.maildir.clone()),
            ("quota", quota_text(self.quota_bytes)),
            ("active", yes_no(self.active)),
            ("smtp auth", yes_no(self.smtp_active)),
            ("password scheme", self.password_scheme.to_string()),
            (
                "created",
                db_to_local(&self.created.replace('T', " ").replace('Z', "")),
            ),
            (
                "modified",
                db_to_local(&self.modified.replace('T', " ").replace('Z', "")),
            ),
        ])
    }
}

struct MailboxList(Vec<MailboxView>);

impl Serialize for MailboxList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for MailboxList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no mailboxes".into();
        }
        table(
            &["ADDRESS", "NAME", "QUOTA", "ACTIVE", "SMTP AUTH"],
            self.0.iter().map(|m| {
                vec![
                    crate::model::shown_with_unicode(&m.address),
                    m.name.clone(),
                    quota_text(m.quota_bytes),
                    yes_no(m.active),
                    yes_no(m.smtp_active),
                ]
            }),
        )
    }
}

/// Runs a mailbox subcommand.
pub async fn run(ctx: &Ctx, cmd: MailboxCmd) -> Result<()> {
    match cmd {
        MailboxCmd::AppPassword(c) => super::app_password::run(ctx, c).await,
        MailboxCmd::Totp(c) => super::totp::run(ctx, c).await,
        other => rows(ctx, other).await,
    }
}

/// The subcommands on the mailbox row itself.
async fn rows(ctx: &Ctx, cmd: MailboxCmd) -> Result<()> {
    // Validate names and read the password before touching the database: a typo costs nothing.
    let address = match &cmd {
        MailboxCmd::List { .. } | MailboxCmd::AppPassword(_) | MailboxCmd::Totp(_) => None,
        MailboxCmd::Add { address, .. }
        | MailboxCmd::Show { address }
        | MailboxCmd::Update { address, .. }
        | MailboxCmd::Passwd { address, .. }
        | MailboxCmd::Enable { address }
        | MailboxCmd::Disable { address }
        | MailboxCmd::Delete { address } => Some(parse::<Address>(address)?),
    };
    let store = ctx.store().await?;
    // Ask for a password only once the target is known to be valid, and never while a transaction is open.
    let new_password = match (&cmd, &address) {
        (MailboxCmd::Add { password, .. }, Some(a)) => {
            let mut tx = store.begin().await?;
            provision::require_domain(&mut tx, &a.domain).await?;
            if tx.mailbox(&a.to_string()).await?.is_some() {
                return Err(Error::exists("mailbox", a));
            }
            tx.rollback().await?;
            Some(password.obtain(ctx, a).await?)
        }
        (MailboxCmd::Passwd { password, .. }, Some(a)) => {
            let mut tx = store.begin().await?;
            provision::require_mailbox(&mut tx, a).await?;
            tx.rollback().await?;
            Some(password.obtain(ctx, a).await?)
        }
        _ => None,
    };
    let mut tx = match cmd {
        MailboxCmd::List { .. } | MailboxCmd::Show { .. } => store.begin().await?,
        _ => store.begin_write().await?,
    };
    let new_password = || new_password.ok_or_else(|| Error::usage("a password is required"));
    let addr = || {
        address
            .clone()
            .ok_or_else(|| Error::usage("an address is required"))
    };
    match cmd {
        MailboxCmd::Add {
            name,
            quota_mb,
            inactive,
            ..
        } => {
            let addr = addr()?;
            let pw = new_password()?;
            let settings = MailboxSettings {
                name,
                quota_bytes: quota_bytes(quota_mb)?,
                active: Some(!inactive),
                smtp_active: None,
            };
            let row = provision::add_mailbox(&mut tx, &addr, pw.hash, &settings).await?;
            tx.commit().await?;
            announce(ctx, row, pw.generated, format!("added mailbox {addr}"));
        }
        MailboxCmd::List { domain } => {
            let domain = domain.map(|d| parse::<DomainName>(&d)).transpose()?;
            if let Some(d) = &domain {
                provision::require_domain(&mut tx, d).await?;
            }
            let rows = tx
                .mailboxes(domain.as_ref().map(DomainName::as_str))
                .await?;
            ctx.out.emit(&MailboxList(
                rows.into_iter().map(MailboxView::new).collect(),
            ));
        }
        MailboxCmd::Show { .. } => {
            let row = provision::require_mailbox(&mut tx, &addr()?).await?;
            ctx.out.emit(&MailboxView::new(row));
        }
        MailboxCmd::Update {
            name,
            quota_mb,
            active,
            smtp,
            ..
        } => {
            let addr = addr()?;
            let settings = MailboxSettings {
                name,
                quota_bytes: quota_bytes(quota_mb)?,
                active: active.value(),
                smtp_active: smtp,
            };
            let row = provision::update_mailbox(&mut tx, &addr, &settings).await?;
            tx.commit().await?;
            announce(ctx, row, None, format!("updated mailbox {addr}"));
        }
        MailboxCmd::Passwd { .. } => {
            let addr = addr()?;
            let pw = new_password()?;
            let row = provision::set_password(&mut tx, &addr, pw.hash).await?;
            tx.commit().await?;
            announce(
                ctx,
                row,
                pw.generated,
                format!("changed the password of {addr}"),
            );
        }
        MailboxCmd::Enable { .. } | MailboxCmd::Disable { .. } => {
            let addr = addr()?;
            let enable = matches!(cmd, MailboxCmd::Enable { .. });
            let settings = MailboxSettings {
                active: Some(enable),
                ..Default::default()
            };
            let row = provision::update_mailbox(&mut tx, &addr, &settings).await?;
            tx.commit().await?;
            let verb = if enable { "enabled" } else { "disabled" };
            announce(ctx, row, None, format!("{verb} mailbox {addr}"));
        }
        MailboxCmd::Delete { .. } => {
            let addr = addr()?;
            let still = provision::delete_mailbox(&mut tx, &addr).await?;
            tx.commit().await?;
            if !still.is_empty() {
                ctx.out.note(format!(
                    "note: these aliases still forward to {addr}: {}",
                    still.join(", ")
                ));
            }
            #[derive(Serialize)]
            struct Deleted {
                deleted: String,
                still_referenced_by: Vec<String>,
            }
            ctx.out.done(
                &Deleted {
                    deleted: addr.to_string(),
                    still_referenced_by: still,
                },
                format!("deleted mailbox {addr} (its Maildir on disk was left in place)"),
            );
        }
        MailboxCmd::AppPassword(_) | MailboxCmd::Totp(_) => {
            // Dispatched by `run` before a transaction is opened.
            tx.rollback().await?;
        }
    }
    Ok(())
}

fn announce(ctx: &Ctx, row: MailboxRow, generated: Option<String>, message: String) {
    let mut view = MailboxView::new(row);
    let message = match &generated {
        Some(p) => format!("{message}\npassword: {p}"),
        None => message,
    };
    view.generated_password = generated;
    if view.generated_password.is_some() && ctx.out.quiet && !ctx.out.json {
        // The generated password is shown exactly once; -q must not swallow it.
        crate::output::print_line(view.generated_password.as_deref().unwrap_or_default());
        return;
    }
    ctx.out.done(&view, message);
}
