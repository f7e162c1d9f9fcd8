//! `mailctl relay set|list|delete`: the relay host (smarthost) of each sender domain's outbound mail, kept in
//! the database so every `serve` node agrees. A domain without a route uses `[server.outbound.relay]`, if any,
//! else the recipients' MX hosts. Passwords come from standard input and are never printed.

use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse, password_input};
use crate::error::{Error, Result};
use crate::model::{DomainName, RecordName};
use crate::output::{Render, table};
use crate::smtp::outbound::relay::{Relay, RelayUrl, parse_tls};
use crate::store::RelayRouteRow;
use crate::time::db_to_rfc3339;

/// Relay subcommands.
#[derive(Debug, Subcommand)]
pub enum RelayCmd {
    /// Send DOMAIN's outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port
    /// 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain's route
    Set {
        /// A hosted domain (the sender domain)
        domain: String,
        /// The relay's URL
        url: String,
        /// "required" (a verified certificate for HOST) or "none" (a relay on this machine only)
        #[arg(long, default_value = "required")]
        tls: String,
        /// Log in as this user (AUTH PLAIN or LOGIN; the password is read from standard input)
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        /// Read the AUTH password from the first line of standard input
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// The provider's SPF include: domain, which `dns records` adds to the domain's SPF record
        #[arg(long, value_name = "DOMAIN")]
        spf_include: Option<String>,
    },
    /// List the routes (passwords are never shown)
    List,
    /// Send DOMAIN's mail as configured again ([server.outbound.relay] or the recipients' MX hosts)
    Delete {
        /// The sender domain
        domain: String,
    },
}

/// A route as printed: never the password.
#[derive(Debug, Serialize)]
pub struct RouteView {
    domain: String,
    url: String,
    tls: String,
    username: Option<String>,
    password: bool,
    spf_include: Option<String>,
    created: String,
    modified: String,
}

impl From<RelayRouteRow> for RouteView {
    fn from(r: RelayRouteRow) -> Self {
        RouteView {
            created: db_to_rfc3339(&r.created),
            modified: db_to_rfc3339(&r.modified),
            password: r.password.is_some(),
            domain: r.domain,
            url: r.url,
            tls: r.tls,
            username: r.username,
            spf_include: r.spf_include,
        }
    }
}

struct RouteList(Vec<RouteView>);

impl Serialize for RouteList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for RouteList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no relay routes (mail goes through [server.outbound.relay] if set, else to the MX hosts)"
                .into();
        }
        table(
            &["DOMAIN", "RELAY", "TLS", "LOGIN", "SPF INCLUDE"],
            self.0.iter().map(|r| {
                vec![
                    r.domain.clone(),
                    r.url.clone(),
                    r.tls.clone(),
                    r.username.clone().unwrap_or_default(),
                    r.spf_include.clone().unwrap_or_default(),
                ]
            }),
        )
    }
}

/// Runs a relay subcommand.
pub async fn run(ctx: &Ctx, cmd: RelayCmd) -> Result<()> {
    match cmd {
        RelayCmd::Set {
            domain,
            url,
            tls,
            username,
            password_stdin,
            spf_include,
        } => {
            let domain: DomainName = parse(&domain)?;
            let url = RelayUrl::parse(&url).map_err(|why| Error::usage(format!("URL: {why}")))?;
            let tls = parse_tls(&tls).map_err(|why| Error::usage(format!("--tls: {why}")))?;
            let spf_include = match spf_include {
                Some(d) => Some(
                    d.parse::<RecordName>()
                        .map_err(|why| Error::usage(format!("--spf-include: {why}")))?
                        .to_string(),
                ),
                None => None,
            };
            let password = match password_stdin {
                true => Some(password_input::read_stdin_line()?),
                false => None,
            };
            if password.as_deref() == Some("") {
                return Err(Error::usage("the password on standard input is empty"));
            }
            let relay = Relay {
                url: url.clone(),
                tls,
                login: username.clone().zip(password.clone()),
            };
            relay.check("relay").map_err(|why| {
                Error::usage(why.replacen("relay.tls", "--tls", 1).replacen(
                    "relay.username",
                    "--username",
                    1,
                ))
            })?;
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            if tx.domain(domain.as_str()).await?.is_none() {
                return Err(Error::not_found("domain", &domain));
            }
            let now = crate::time::now_db();
            let row = RelayRouteRow {
                domain: domain.to_string(),
                url: url.to_string(),
                tls: match tls {
                    crate::smtp::outbound::relay::RelayTls::Required => "required".into(),
                    crate::smtp::outbound::relay::RelayTls::None => "none".into(),
                },
                username,
                password,
                spf_include,
                created: now.clone(),
                modified: now,
            };
            tx.set_relay_route(&row).await?;
            let stored = tx.relay_route(domain.as_str()).await?;
            tx.commit().await?;
            let view = RouteView::from(stored.unwrap_or(row));
            ctx.out
                .done(&view, format!("mail from {domain} now goes through {url}"));
        }
        RelayCmd::List => {
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            let rows = tx.relay_routes().await?;
            tx.rollback().await?;
            ctx.out
                .emit(&RouteList(rows.into_iter().map(Into::into).collect()));
        }
        RelayCmd::Delete { domain } => {
            let domain: DomainName = parse(&domain)?;
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            if !tx.delete_relay_route(domain.as_str()).await? {
                return Err(Error::not_found("relay route of", &domain));
            }
            tx.commit().await?;
            ctx.out.done(
                &serde_json::json!({ "domain": domain.to_string(), "deleted": true }),
                format!("mail from {domain} goes out as configured again"),
            );
        }
    }
    Ok(())
}
