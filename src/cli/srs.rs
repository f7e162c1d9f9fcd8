//! `mailctl srs rotate|list|forward|reverse`: the secrets of the Sender Rewriting Scheme that `serve` uses for
//! forwarded mail, kept in the database so every node signs and verifies alike. Secrets are never printed.

use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse, password_input};
use crate::error::{Error, Result};
use crate::model::DomainName;
use crate::output::{Render, table};
use crate::provision::srs as rules;
use crate::srs::{Bounces, Reversed, day};
use crate::time::{db_to_local, db_to_rfc3339};

/// SRS subcommands.
#[derive(Debug, Subcommand)]
pub enum SrsCmd {
    /// Add a new signing secret (random, or the first line of standard input, e.g. postsrsd's secret file);
    /// older secrets keep verifying until every address they signed has expired (21 days)
    Rotate {
        /// Read the secret from the first line of standard input instead of generating one
        #[arg(long)]
        secret_stdin: bool,
    },
    /// List the secrets by id and age (never the secrets themselves)
    List,
    /// Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN
    Forward {
        /// The original envelope sender
        sender: String,
        /// The forwarding (hosted) domain
        #[arg(long)]
        domain: String,
    },
    /// Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)
    Reverse {
        /// An SRS address (SRS0=...@DOMAIN or SRS1=...@DOMAIN)
        address: String,
    },
}

/// One secret as listed.
#[derive(Debug, Serialize)]
struct SecretView {
    id: i64,
    created: String,
    #[serde(skip)]
    created_local: String,
    signs: bool,
}

struct SecretList(Vec<SecretView>);

impl Serialize for SecretList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for SecretList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no SRS secrets (serve creates one at start; mailctl srs rotate adds one)"
                .into();
        }
        table(
            &["ID", "CREATED", "USE"],
            self.0.iter().map(|s| {
                vec![
                    s.id.to_string(),
                    s.created_local.clone(),
                    if s.signs {
                        "signs and verifies"
                    } else {
                        "verifies"
                    }
                    .to_string(),
                ]
            }),
        )
    }
}

/// One address and what it maps to (`forward`: the sender and its SRS address; `reverse`: the SRS address and
/// the original). The table form is the result alone, for scripts.
#[derive(Debug, Serialize)]
struct Mapped {
    from: String,
    to: String,
}

impl Render for Mapped {
    fn render(&self) -> String {
        self.to.clone()
    }
}

/// The day number of now.
fn today() -> u64 {
    day(chrono::Utc::now().timestamp().max(0) as u64)
}

/// Runs an srs subcommand.
pub async fn run(ctx: &Ctx, cmd: SrsCmd) -> Result<()> {
    let store = ctx.store().await?;
    match cmd {
        SrsCmd::Rotate { secret_stdin } => {
            let secret = match secret_stdin {
                true => Some(password_input::read_stdin_line()?),
                false => None,
            };
            let mut tx = store.begin_write().await?;
            let done = rules::rotate(&mut tx, secret, chrono::Utc::now()).await?;
            tx.commit().await?;
            ctx.out.done(
                &done,
                format!(
                    "SRS secret {} signs from now on; {} older kept for verification, {} removed",
                    done.id, done.kept, done.removed
                ),
            );
        }
        SrsCmd::List => {
            let mut tx = store.begin().await?;
            let rows = tx.srs_secrets().await?;
            tx.rollback().await?;
            let views = rows
                .iter()
                .enumerate()
                .map(|(i, r)| SecretView {
                    id: r.id,
                    created: db_to_rfc3339(&r.created),
                    created_local: db_to_local(&r.created),
                    signs: i == 0,
                })
                .collect();
            ctx.out.emit(&SecretList(views));
        }
        SrsCmd::Forward { sender, domain } => {
            // As the envelope holds it: the local part keeps its case (SRS hashes ignore case, the
            // address itself does not change it).
            let (local, host) = sender
                .rsplit_once('@')
                .filter(|(l, _)| {
                    !l.is_empty() && !l.chars().any(|c| c.is_whitespace() || c.is_control())
                })
                .ok_or_else(|| Error::usage(format!("{sender:?} is not an address")))?;
            let host: DomainName = parse(host)?;
            let sender = format!("{local}@{host}");
            let domain: DomainName = parse(&domain)?;
            let mut tx = store.begin().await?;
            let srs = rules::load(&mut tx).await?;
            tx.rollback().await?;
            let address = srs
                .forward(
                    &sender.to_string(),
                    domain.as_str(),
                    Bounces::Return,
                    today(),
                )
                .ok_or_else(|| {
                    Error::refused("there is no SRS secret yet: mailctl srs rotate creates one")
                })?;
            ctx.out.emit(&Mapped {
                from: sender,
                to: address,
            });
        }
        SrsCmd::Reverse { address } => {
            let (local, domain) = address
                .rsplit_once('@')
                .ok_or_else(|| Error::usage(format!("{address:?} is not an address")))?;
            let _: DomainName = parse(domain)?;
            let mut tx = store.begin().await?;
            let srs = rules::load(&mut tx).await?;
            tx.rollback().await?;
            match srs.reverse(local, today()) {
                Ok(Reversed::Address(original)) => ctx.out.emit(&Mapped {
                    from: address,
                    to: original,
                }),
                Ok(Reversed::Silent) => {
                    return Err(Error::refused(format!(
                        "{address} is valid, but its sender was not authenticated: bounces to it are refused"
                    )));
                }
                Err(e) => return Err(Error::refused(format!("{address}: {e}"))),
            }
        }
    }
    Ok(())
}
