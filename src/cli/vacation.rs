//! `mailctl vacation set|show|off ADDRESS`: out-of-office auto-replies in postfixadmin's `vacation` table,
//! sent by `serve` (RFC 3834) to the senders of the mail the mailbox receives while it is on.

use std::io::Read;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse};
use crate::error::{Error, Result};
use crate::model::Address;
use crate::output::{Render, key_values, yes_no};
use crate::provision::{self, VacationSettings};
use crate::store::VacationRow;
use crate::time::db_to_rfc3339;

/// Vacation subcommands.
#[derive(Debug, Subcommand)]
pub enum VacationCmd {
    /// Set (or replace) a mailbox's auto-reply; the senders it answered before hear it again
    Set {
        /// Address of the mailbox
        address: String,
        /// Subject of the reply
        #[arg(long)]
        subject: String,
        /// File with the reply's text (UTF-8); `-` reads standard input
        #[arg(long, value_name = "FILE")]
        body_file: PathBuf,
        /// First day of replies, YYYY-MM-DD (UTC) [default: now]
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Last day of replies, YYYY-MM-DD (UTC, through its end) [default: none]
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Days before the same sender is answered again; 0 answers each sender once per vacation
        #[arg(long, value_name = "DAYS", default_value_t = 0)]
        interval: i64,
    },
    /// Show a mailbox's auto-reply
    Show {
        /// Address of the mailbox
        address: String,
    },
    /// Switch a mailbox's auto-reply off
    Off {
        /// Address of the mailbox
        address: String,
    },
}

/// A vacation as printed.
#[derive(Debug, Serialize)]
struct View {
    address: String,
    active: bool,
    subject: String,
    body: String,
    from: String,
    until: String,
    interval_days: i64,
}

impl View {
    fn new(row: VacationRow) -> View {
        View {
            address: row.email,
            active: row.active,
            subject: row.subject,
            body: row.body,
            from: db_to_rfc3339(&row.activefrom),
            until: db_to_rfc3339(&row.activeuntil),
            interval_days: row.interval_time / 86_400,
        }
    }
}

impl Render for View {
    fn render(&self) -> String {
        let interval = match self.interval_days {
            0 => "once per sender".to_string(),
            d => format!("every {d} days per sender"),
        };
        let head = key_values(vec![
            ("address", self.address.clone()),
            ("active", yes_no(self.active)),
            ("from", self.from.clone()),
            ("until", self.until.clone()),
            ("replies", interval),
            ("subject", self.subject.clone()),
        ]);
        format!("{head}\n\n{}", self.body.trim_end())
    }
}

fn date(flag: &str, value: Option<String>) -> Result<Option<NaiveDate>> {
    value
        .map(|v| {
            NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                .map_err(|_| Error::usage(format!("{flag} '{v}' is not a date like 2026-12-24")))
        })
        .transpose()
}

/// Runs a vacation subcommand.
pub async fn run(ctx: &Ctx, cmd: VacationCmd) -> Result<()> {
    match cmd {
        VacationCmd::Set {
            address,
            subject,
            body_file,
            from,
            until,
            interval,
        } => {
            let addr = parse::<Address>(&address)?;
            let settings = VacationSettings {
                subject,
                body: read_body(&body_file)?,
                from: date("--from", from)?,
                until: date("--until", until)?,
                interval_days: interval,
            };
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            let row = provision::set_vacation(&mut tx, &addr, &settings).await?;
            tx.commit().await?;
            let message = format!(
                "vacation on for {addr} from {} until {}",
                db_to_rfc3339(&row.activefrom),
                db_to_rfc3339(&row.activeuntil)
            );
            ctx.out.done(&View::new(row), message);
        }
        VacationCmd::Show { address } => {
            let addr = parse::<Address>(&address)?;
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            let row = provision::vacation(&mut tx, &addr).await?;
            tx.rollback().await?;
            ctx.out.emit(&View::new(row));
        }
        VacationCmd::Off { address } => {
            let addr = parse::<Address>(&address)?;
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            provision::vacation_off(&mut tx, &addr).await?;
            tx.commit().await?;
            #[derive(Serialize)]
            struct Off {
                address: String,
                active: bool,
            }
            ctx.out.done(
                &Off {
                    address: addr.to_string(),
                    active: false,
                },
                format!("vacation off for {addr}"),
            );
        }
    }
    Ok(())
}

/// The reply text from `path` (`-`: standard input), as UTF-8.
fn read_body(path: &PathBuf) -> Result<String> {
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    read.map_err(|source| Error::File {
        action: "cannot read the reply text from",
        path: path.clone(),
        source,
    })?;
    String::from_utf8(bytes)
        .map_err(|_| Error::usage(format!("{} is not UTF-8 text", path.display())))
}
