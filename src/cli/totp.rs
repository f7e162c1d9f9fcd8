//! `mailctl mailbox totp enable|disable ADDRESS` and `mailctl mailbox totp exception add|list|delete`: the TOTP
//! rule as postfixadmin applies it to mail logins. A mailbox with a TOTP secret logs in to SMTP (and, with the
//! generated Dovecot configuration, to IMAP) with app passwords only, except from the exception addresses: a
//! stolen main password alone no longer sends mail.

use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse};
use crate::error::{Error, Result};
use crate::model::Address;
use crate::output::{Render, table};
use crate::provision;
use crate::store::TotpExceptionRow;

/// TOTP subcommands.
#[derive(Debug, Subcommand)]
pub enum TotpCmd {
    /// Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)
    Enable {
        /// Address of the mailbox
        address: String,
    },
    /// Remove the mailbox's TOTP secret: its main password works for mail logins again
    Disable {
        /// Address of the mailbox
        address: String,
    },
    /// Client addresses from which a TOTP mailbox may still log in with its main password
    #[command(subcommand)]
    Exception(ExceptionCmd),
}

/// TOTP exception subcommands.
#[derive(Debug, Subcommand)]
pub enum ExceptionCmd {
    /// Let IP use the main password: of one mailbox, of a domain's mailboxes, or (without --for) of all
    Add {
        /// Client IP address (IPv4 or IPv6)
        ip: String,
        /// A mailbox address or a domain
        #[arg(long = "for", value_name = "ADDRESS|DOMAIN")]
        whom: Option<String>,
        /// Why (e.g. "office webmail")
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the exceptions
    List,
    /// Delete an exception by its id (from `list`)
    Delete {
        /// The id
        id: i64,
    },
}

/// A new secret, shown once.
#[derive(Debug, Serialize)]
struct Enabled {
    address: String,
    secret: String,
    otpauth_uri: String,
}

/// `exception list`.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Exceptions(Vec<TotpExceptionRow>);

impl Render for Exceptions {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no TOTP exceptions".into();
        }
        table(
            &["ID", "IP", "FOR", "DESCRIPTION"],
            self.0.iter().map(|r| {
                vec![
                    r.id.to_string(),
                    r.ip.clone(),
                    r.username.clone().unwrap_or_else(|| "everyone".into()),
                    r.description.clone(),
                ]
            }),
        )
    }
}

/// Runs a TOTP subcommand.
pub async fn run(ctx: &Ctx, cmd: TotpCmd) -> Result<()> {
    let store = ctx.store().await?;
    match cmd {
        TotpCmd::Enable { address } => {
            let addr = parse::<Address>(&address)?;
            let mut tx = store.begin_write().await?;
            let secret = provision::enable_totp(&mut tx, &addr).await?;
            tx.commit().await?;
            let issuer = ctx
                .config
                .hostname
                .clone()
                .unwrap_or_else(|| addr.domain.to_string());
            let otpauth_uri = format!(
                "otpauth://totp/{}:{}?secret={secret}&issuer={}",
                uri_escape(&issuer),
                uri_escape(&addr.to_string()),
                uri_escape(&issuer)
            );
            let message = format!(
                "TOTP on for {addr}: mail logins now need an app password (mailctl mailbox app-password add)\n\
                 secret: {secret}\nuri: {otpauth_uri}"
            );
            ctx.out.done(
                &Enabled {
                    address: addr.to_string(),
                    secret,
                    otpauth_uri,
                },
                message,
            );
        }
        TotpCmd::Disable { address } => {
            let addr = parse::<Address>(&address)?;
            let mut tx = store.begin_write().await?;
            provision::disable_totp(&mut tx, &addr).await?;
            tx.commit().await?;
            #[derive(Serialize)]
            struct Disabled {
                address: String,
            }
            ctx.out.done(
                &Disabled {
                    address: addr.to_string(),
                },
                format!("TOTP off for {addr}: its main password works for mail logins again"),
            );
        }
        TotpCmd::Exception(ExceptionCmd::Add {
            ip,
            whom,
            description,
        }) => {
            let mut tx = store.begin_write().await?;
            let row =
                provision::add_totp_exception(&mut tx, &ip, whom.as_deref(), &description).await?;
            tx.commit().await?;
            let message = format!(
                "added TOTP exception {}: {} may use the main password of {}",
                row.id,
                row.ip,
                row.username.as_deref().unwrap_or("every mailbox")
            );
            ctx.out.done(&row, message);
        }
        TotpCmd::Exception(ExceptionCmd::List) => {
            let mut tx = store.begin().await?;
            let rows = tx.totp_exceptions().await?;
            tx.rollback().await?;
            ctx.out.emit(&Exceptions(rows));
        }
        TotpCmd::Exception(ExceptionCmd::Delete { id }) => {
            if id <= 0 {
                return Err(Error::usage(format!(
                    "'{id}' is not a TOTP exception id (see totp exception list)"
                )));
            }
            let mut tx = store.begin_write().await?;
            provision::delete_totp_exception(&mut tx, id).await?;
            tx.commit().await?;
            #[derive(Serialize)]
            struct Deleted {
                deleted: i64,
            }
            ctx.out.done(
                &Deleted { deleted: id },
                format!("deleted TOTP exception {id}"),
            );
        }
    }
    Ok(())
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for the otpauth URI.
fn uri_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
