//! `mailctl dns records DOMAIN`: every record the domain must publish.

use std::net::IpAddr;

use clap::{Subcommand, ValueEnum};

use super::{Ctx, parse};
use crate::dkim::KeyAlgorithm;
use crate::error::{Error, Result};
use crate::model::{DomainName, Selector};
use crate::output::{Render, table};
use crate::records::{self, Inputs, RecordSet};
use crate::smtp::outbound::relay::relayed;

/// DNS subcommands.
#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain
    Records(RecordsArgs),
}

/// Options of `dns records`.
#[derive(Debug, clap::Args)]
pub struct RecordsArgs {
    /// Domain
    domain: String,
    /// zone: a BIND zone fragment; json; table
    #[arg(long, value_enum, default_value = "zone")]
    format: Format,
    /// MX host name [default: config server.hostname, else mail.DOMAIN]
    #[arg(long, value_name = "HOST")]
    mx_host: Option<String>,
    /// Public IP of the mail server (repeat for several) [default: config server.public_ips]
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// DMARC policy for mail that fails
    #[arg(long, value_enum, default_value = "quarantine")]
    dmarc_policy: DmarcPolicy,
    /// Address that receives DMARC and TLS-RPT reports [default: postmaster@DOMAIN]
    #[arg(long, value_name = "ADDRESS")]
    report_address: Option<String>,
    /// MTA-STS mode; start with testing, move to enforce once TLS reports are clean [default: [server.https]
    /// mta_sts_mode, else testing]
    #[arg(long, value_enum)]
    mta_sts_mode: Option<MtaStsMode>,
}

/// Output formats of `dns records`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// BIND zone fragment
    Zone,
    /// JSON document
    Json,
    /// Table
    Table,
}

/// DMARC `p=` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DmarcPolicy {
    /// Monitor only
    None,
    /// Failing mail goes to spam
    Quarantine,
    /// Failing mail is refused
    Reject,
}

/// MTA-STS modes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MtaStsMode {
    /// Senders report failures but still deliver
    Testing,
    /// Senders refuse to deliver without valid TLS
    Enforce,
}

struct Zone(RecordSet);

impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Zone {
    fn render(&self) -> String {
        records::to_zone(&self.0).trim_end().to_string()
    }
}

struct Table(RecordSet);

impl serde::Serialize for Table {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Table {
    /// One row per record. Fitted to the terminal (or `COLUMNS`): long values are cut with `…` and a note says
    /// how to get them whole; in a pipe every value is whole.
    fn render(&self) -> String {
        let width = crate::output::width();
        let records = &self.0.records;
        let name_w = records
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let type_w = records
            .iter()
            .map(|r| r.rtype.len())
            .max()
            .unwrap_or(4)
            .max(4);
        // Each column is padded by one space on both sides.
        let (value_max, note_max) = match width {
            Some(w) => {
                let room = w.saturating_sub(name_w + type_w + 6 + 4);
                let note = (room / 3).max(12);
                (room.saturating_sub(note + 2).max(16), note)
            }
            None => (usize::MAX, usize::MAX),
        };
        let mut shortened = false;
        let mut cut = |text: &str, max: usize| {
            let cut = crate::output::ellipsis(text, max);
            shortened |= cut.len() != text.len();
            cut
        };
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.rtype.to_string(),
                    cut(&r.value, value_max),
                    cut(&r.note, note_max),
                ]
            })
            .collect();
        let mut out = table(&["NAME", "TYPE", "VALUE", "NOTE"], rows);
        let mut notes: Vec<String> = self.0.notes.clone();
        if shortened {
            notes.push("long values are shortened to fit; --format zone prints them whole".into());
        }
        for note in notes {
            out.push('\n');
            out.push_str(&wrap(&format!("note: {note}"), width, "      "));
        }
        out
    }
}

/// `text` wrapped at spaces to `width` (None: one line), continuation lines indented with `indent`.
fn wrap(text: &str, width: Option<usize>, indent: &str) -> String {
    let Some(width) = width else {
        return text.to_string();
    };
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("one line at least");
        if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(format!("{indent}{word}"));
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// Runs a dns subcommand.
pub async fn run(ctx: &Ctx, cmd: DnsCmd) -> Result<()> {
    let DnsCmd::Records(args) = cmd;
    let domain: DomainName = parse(&args.domain)?;
    let mx_host: DomainName = match args.mx_host.as_deref().or(ctx.config.hostname.as_deref()) {
        Some(h) => parse(h).map_err(|e| Error::usage(format!("MX host: {e}")))?,
        None => parse(&format!("mail.{domain}"))?,
    };
    let report_address = match &args.report_address {
        Some(a) => parse::<crate::model::Address>(a)?.to_string(),
        None => format!("postmaster@{domain}"),
    };
    let ips = if args.ips.is_empty() {
        ctx.config.public_ips.clone()
    } else {
        args.ips.clone()
    };
    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    crate::provision::dkim::require_active_domain(&mut tx, &domain).await?;
    let mut dkim = Vec::new();
    for key in tx.dkim_keys(Some(domain.as_str())).await? {
        let (Some(algorithm), Ok(selector)) = (
            KeyAlgorithm::from_signing_name(&key.algorithm),
            key.selector.parse::<Selector>(),
        ) else {
            continue;
        };
        dkim.push((selector, algorithm, key.public_key, key.state));
    }
    let route = tx.relay_route(domain.as_str()).await?;
    tx.rollback().await?;
    let relay = relayed(route.as_ref(), ctx.config.server.outbound.relay.as_ref())?;
    let lower = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    let set = records::build(&Inputs {
        domain,
        mx_host,
        ips,
        dkim,
        dmarc_policy: lower(&args.dmarc_policy),
        report_address,
        // What serve's HTTPS endpoint serves, unless asked otherwise: the id printed must be the policy served.
        mta_sts_mode: match &args.mta_sts_mode {
            Some(mode) => lower(mode),
            None => match ctx.config.server.https.mta_sts_mode.as_deref() {
                None => "testing".into(),
                Some(m @ ("testing" | "enforce")) => m.to_string(),
                Some(other) => {
                    return Err(Error::usage(format!(
                        "server.https.mta_sts_mode: '{other}' is neither testing nor enforce"
                    )));
                }
            },
        },
        relay,
        clients: clients(&ctx.config),
    });
    let format = if ctx.out.json {
        Format::Json
    } else {
        args.format
    };
    match format {
        Format::Json => crate::output::Output {
            json: true,
            ..ctx.out
        }
        .emit(&Zone(set)),
        Format::Zone => ctx.out.emit(&Zone(set)),
        Format::Table => ctx.out.emit(&Table(set)),
    }
    Ok(())
}

/// Where mail clients connect, from `[server.https]` and `[server.listen]`: the SRV records name these.
fn clients(config: &crate::config::Config) -> records::Clients {
    let https = &config.server.https;
    let port = |listen: &Option<String>, default: u16| -> Option<u16> {
        match listen.as_deref() {
            Some("off") => None,
            Some(addr) => addr
                .parse::<std::net::SocketAddr>()
                .map(|a| a.port())
                .ok()
                .or(Some(default)),
            None => Some(default),
        }
    };
    let d = records::Clients::default();
    records::Clients {
        imap_host: https
            .imap_host
            .as_deref()
            .and_then(|h| h.parse::<DomainName>().ok()),
        imap_port: https.imap_port.unwrap_or(d.imap_port),
        submission_port: https.submission_port.unwrap_or(d.submission_port),
        submissions_port: port(&config.server.listen.submissions, 465),
    }
}
