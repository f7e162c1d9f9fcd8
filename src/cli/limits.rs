//! `mailctl limits set|show|delete|usage`: the sending limits of logged-in users ([`crate::provision::limits`]),
//! for `default`, a domain or an address, kept in the database so every `serve` node enforces the same ones.

use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse};
use crate::error::{Error, Result};
use crate::model::Address;
use crate::output::{Render, key_values, table};
use crate::provision::limits::{self, Limit, Limits, Scope};
use crate::store::SendLimitRow;
use crate::time::db_to_rfc3339;

/// A limit on the command line: a number, or `none` to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitArg(Option<i64>);

fn limit_arg(text: &str) -> std::result::Result<LimitArg, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(LimitArg(None));
    }
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(LimitArg(Some(n))),
        _ => Err(format!("'{text}' is not a number of 0 or more, or none")),
    }
}

/// Limits subcommands.
#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// Set the sending limits of default, a domain or an address (only the kinds given change; none removes
    /// one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the
    /// breaker turns SMTP off for the mailbox
    Set {
        /// default, a hosted domain, or a mailbox
        scope: String,
        /// Messages per hour
        #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
        messages_per_hour: Option<String>,
        /// Recipients per day
        #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
        recipients_per_day: Option<String>,
        /// Recipients the sender never wrote to before, per day
        #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
        new_recipients_per_day: Option<String>,
        /// Recipients other servers may refuse as unknown per day; beyond it the breaker turns SMTP off
        #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
        unknown_recipients_per_day: Option<String>,
    },
    /// Show the limits set for every scope
    Show,
    /// Remove every limit of default, a domain or an address
    Delete {
        /// default, a domain, or an address
        scope: String,
    },
    /// What a mailbox sent this hour and today, against the limits in force and where each comes from
    Usage {
        /// The mailbox
        address: String,
    },
}

/// A limit row as printed.
#[derive(Debug, Serialize)]
struct LimitView {
    scope: String,
    messages_per_hour: Option<i64>,
    recipients_per_day: Option<i64>,
    new_recipients_per_day: Option<i64>,
    unknown_recipients_per_day: Option<i64>,
    modified: String,
}

impl From<SendLimitRow> for LimitView {
    fn from(r: SendLimitRow) -> Self {
        LimitView {
            modified: db_to_rfc3339(&r.modified),
            scope: r.scope,
            messages_per_hour: r.messages_per_hour,
            recipients_per_day: r.recipients_per_day,
            new_recipients_per_day: r.new_recipients_per_day,
            unknown_recipients_per_day: r.unknown_recipients_per_day,
        }
    }
}

fn shown(n: Option<i64>) -> String {
    n.map_or_else(|| "-".to_string(), |n| n.to_string())
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct LimitList(Vec<LimitView>);

impl Render for LimitList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no sending limits (mailctl limits set default --messages-per-hour N ...)"
                .into();
        }
        table(
            &[
                "SCOPE",
                "MESSAGES/HOUR",
                "RECIPIENTS/DAY",
                "NEW RECIPIENTS/DAY",
            ],
            self.0.iter().map(|r| {
                vec![
                    r.scope.clone(),
                    shown(r.messages_per_hour),
                    shown(r.recipients_per_day),
                    shown(r.new_recipients_per_day),
                ]
            }),
        )
    }
}

/// One counter against its limit.
#[derive(Debug, Serialize)]
struct Counter {
    used: i64,
    limit: Option<Limit>,
}

/// `limits usage`.
#[derive(Debug, Serialize)]
struct UsageView {
    address: String,
    smtp_active: bool,
    messages_this_hour: Counter,
    refused_this_hour: i64,
    recipients_today: Counter,
    new_recipients_today: Counter,
    unknown_recipients_today: Counter,
}

impl Render for UsageView {
    fn render(&self) -> String {
        let counter = |c: &Counter| match &c.limit {
            Some(l) => format!("{} of {} (limit of {})", c.used, l.value, l.from),
            None => format!("{} (no limit)", c.used),
        };
        key_values(vec![
            ("address", self.address.clone()),
            (
                "smtp",
                if self.smtp_active {
                    "on".to_string()
                } else {
                    "off (mailctl mailbox update ADDRESS --smtp true)".to_string()
                },
            ),
            ("messages this hour", counter(&self.messages_this_hour)),
            ("refused this hour", self.refused_this_hour.to_string()),
            ("recipients today", counter(&self.recipients_today)),
            ("new recipients today", counter(&self.new_recipients_today)),
            (
                "refused as unknown today",
                counter(&self.unknown_recipients_today),
            ),
        ])
    }
}

/// Runs a limits subcommand.
pub async fn run(ctx: &Ctx, cmd: LimitsCmd) -> Result<()> {
    match cmd {
        LimitsCmd::Set {
            scope,
            messages_per_hour,
            recipients_per_day,
            new_recipients_per_day,
            unknown_recipients_per_day,
        } => {
            let flag = |name: &str, text: Option<String>| {
                text.map(|t| limit_arg(&t).map_err(|e| Error::usage(format!("--{name}: {e}"))))
                    .transpose()
            };
            let messages_per_hour = flag("messages-per-hour", messages_per_hour)?;
            let recipients_per_day = flag("recipients-per-day", recipients_per_day)?;
            let new_recipients_per_day = flag("new-recipients-per-day", new_recipients_per_day)?;
            let unknown_recipients_per_day =
                flag("unknown-recipients-per-day", unknown_recipients_per_day)?;
            let scope = Scope::parse(&scope)?;
            if messages_per_hour.is_none()
                && recipients_per_day.is_none()
                && new_recipients_per_day.is_none()
                && unknown_recipients_per_day.is_none()
            {
                return Err(Error::usage(
                    "give at least one of --messages-per-hour, --recipients-per-day, --new-recipients-per-day, \
                     --unknown-recipients-per-day",
                ));
            }
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            scope.require(&mut tx).await?;
            let key = scope.key();
            let before = tx.send_limits_of(&[&key]).await?.pop();
            let keep = |given: Option<LimitArg>, old: Option<i64>| given.map_or(old, |g| g.0);
            let row = SendLimitRow {
                scope: key.clone(),
                messages_per_hour: keep(
                    messages_per_hour,
                    before.as_ref().and_then(|b| b.messages_per_hour),
                ),
                recipients_per_day: keep(
                    recipients_per_day,
                    before.as_ref().and_then(|b| b.recipients_per_day),
                ),
                new_recipients_per_day: keep(
                    new_recipients_per_day,
                    before.as_ref().and_then(|b| b.new_recipients_per_day),
                ),
                unknown_recipients_per_day: keep(
                    unknown_recipients_per_day,
                    before.as_ref().and_then(|b| b.unknown_recipients_per_day),
                ),
                modified: crate::time::now_db(),
            };
            if row.messages_per_hour.is_none()
                && row.recipients_per_day.is_none()
                && row.new_recipients_per_day.is_none()
                && row.unknown_recipients_per_day.is_none()
            {
                tx.delete_send_limit(&key).await?;
            } else {
                tx.set_send_limit(&row).await?;
            }
            tx.commit().await?;
            let view = LimitView::from(row);
            let message = format!(
                "sending limits of {key}: {} messages/hour, {} recipients/day, {} new recipients/day, {} \
                 refused as unknown/day",
                shown(view.messages_per_hour),
                shown(view.recipients_per_day),
                shown(view.new_recipients_per_day),
                shown(view.unknown_recipients_per_day)
            );
            ctx.out.done(&view, message);
        }
        LimitsCmd::Show => {
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            let rows = tx.send_limits().await?;
            tx.rollback().await?;
            ctx.out
                .emit(&LimitList(rows.into_iter().map(Into::into).collect()));
        }
        LimitsCmd::Delete { scope } => {
            let scope = Scope::parse(&scope)?;
            let key = scope.key();
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            if !tx.delete_send_limit(&key).await? {
                return Err(Error::not_found("sending limits of", &key));
            }
            tx.commit().await?;
            ctx.out.done(
                &serde_json::json!({ "scope": key, "deleted": true }),
                format!("no sending limits of {key} any more"),
            );
        }
        LimitsCmd::Usage { address } => {
            let address: Address = parse(&address)?;
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            let mailbox = crate::provision::require_mailbox(&mut tx, &address).await?;
            let Limits {
                messages_per_hour,
                recipients_per_day,
                new_recipients_per_day,
                unknown_recipients_per_day,
            } = limits::effective(&mut tx, &address).await?;
            let key = address.to_string().to_ascii_lowercase();
            let usage = limits::usage(&mut tx, &key, chrono::Utc::now()).await?;
            tx.rollback().await?;
            ctx.out.emit(&UsageView {
                address: key,
                smtp_active: mailbox.smtp_active,
                messages_this_hour: Counter {
                    used: usage.hour.messages,
                    limit: messages_per_hour,
                },
                refused_this_hour: usage.hour.refused,
                recipients_today: Counter {
                    used: usage.day.recipients,
                    limit: recipients_per_day,
                },
                new_recipients_today: Counter {
                    used: usage.day.new_recipients,
                    limit: new_recipients_per_day,
                },
                unknown_recipients_today: Counter {
                    used: usage.day.unknown,
                    limit: unknown_recipients_per_day,
                },
            });
        }
    }
    Ok(())
}
