//! `mailctl dkim generate|list|show|rotate|activate|retire|export|import|sign|verify`

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::{Ctx, parse};
use crate::dkim::{self, KeyAlgorithm, KeyPair, KeySpec, Published};
use crate::dns::Resolver;
use crate::error::{Error, Result};
use crate::model::{DomainName, Selector};
use crate::provision::dkim as rules;
use crate::store::DkimKeyRow;

mod message;
mod view;

use view::{KeyList, KeyView};

/// DKIM subcommands.
#[derive(Debug, Subcommand)]
pub enum DkimCmd {
    /// Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record
    Generate(GenerateArgs),
    /// List keys with their state; --check-dns also asks DNS whether each key is published
    List {
        /// Only this domain
        domain: Option<String>,
        /// Look each key's record up in DNS and compare it with the key
        #[arg(long)]
        check_dns: bool,
        /// Ask this nameserver (IP or IP:PORT) instead of the system resolver
        #[arg(long, value_name = "IP[:PORT]")]
        nameserver: Option<String>,
    },
    /// Print a key's DNS record (the active key unless --selector)
    Show {
        /// Domain
        domain: String,
        /// Selector [default: the active key]
        #[arg(long)]
        selector: Option<String>,
        /// zone: BIND syntax, split in 255-byte strings; plain: name and value on two lines; json
        #[arg(long, value_enum)]
        format: Option<ShowFormat>,
    },
    /// Generate a new pending key to replace the active one; publish it, then `dkim activate`
    Rotate(GenerateArgs),
    /// Make a key the signing key once DNS serves it; the previous key becomes retiring
    Activate {
        /// Domain
        domain: String,
        /// Selector of the key to activate
        selector: String,
        /// Activate without checking DNS
        #[arg(long)]
        force: bool,
        /// Ask this nameserver (IP or IP:PORT) instead of the system resolver
        #[arg(long, value_name = "IP[:PORT]")]
        nameserver: Option<String>,
    },
    /// Delete a pending or retiring key (its record can then leave DNS)
    Retire {
        /// Domain
        domain: String,
        /// Selector
        selector: String,
    },
    /// Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd
    Export {
        /// Domain
        domain: String,
        /// Selector
        selector: String,
        /// File to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)
    Import {
        /// Domain
        domain: String,
        /// Selector under which the key is published
        selector: String,
        /// PEM file
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Sign a message from standard input and write it, signed, to standard output (CRLF line ends)
    Sign(message::SignArgs),
    /// Verify every DKIM-Signature of a message from standard input through DNS
    Verify(message::VerifyArgs),
}

/// Options of `generate` and `rotate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Domain
    domain: String,
    /// Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]
    #[arg(long)]
    selector: Option<String>,
    /// Key type
    #[arg(long, value_enum, default_value = "rsa2048")]
    algorithm: KeySpec,
}

/// Output formats of `dkim show`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    /// BIND zone syntax
    Zone,
    /// JSON document
    Json,
    /// Record name and value on two lines
    Plain,
}

async fn generate_pair(spec: KeySpec) -> Result<KeyPair> {
    tokio::task::spawn_blocking(move || dkim::keys::generate(spec))
        .await
        .map_err(|e| Error::refused(format!("key generation failed: {e}")))?
        .map_err(Error::refused)
}

/// Checks what DNS publishes for a key.
async fn published(resolver: &Resolver, row: &DkimKeyRow) -> Result<Published> {
    let name = format!("{}._domainkey.{}.", row.selector, row.domain);
    Ok(dkim::compare_published(
        &resolver.txt(&name).await?,
        &row.public_key,
    ))
}

fn announce_new(ctx: &Ctx, row: &DkimKeyRow, verb: &str) -> Result<()> {
    let view = KeyView::new(row)?;
    let mut msg = format!(
        "{verb} {} key {} for {} ({})\npublish this TXT record:\n{}",
        row.algorithm,
        row.selector,
        row.domain,
        row.state,
        view.zone_line()
    );
    if row.state == rules::state::PENDING {
        msg.push_str(&format!(
            "\nonce DNS serves it: mailctl dkim activate {} {}",
            row.domain, row.selector
        ));
    }
    if row.state == rules::state::ACTIVE && row.algorithm == KeyAlgorithm::Ed25519.signing_name() {
        ctx.out.note(
            "note: receivers that do not implement RFC 8463 ignore Ed25519 signatures; for now prefer an RSA \
             key as the active signing key",
        );
    }
    ctx.out.done(&view, msg);
    Ok(())
}

async fn generate(ctx: &Ctx, args: GenerateArgs, rotate: bool) -> Result<()> {
    let domain: DomainName = parse(&args.domain)?;
    let given = args
        .selector
        .as_deref()
        .map(parse::<Selector>)
        .transpose()?;
    let store = ctx.store().await?;
    // Validate before the (slow) key generation, and generate outside any transaction; add_key checks again
    // under the domain lock.
    {
        let mut tx = store.begin().await?;
        rules::require_active_domain(&mut tx, &domain).await?;
        if rotate && rules::active_key(&mut tx, &domain).await?.is_none() {
            return Err(Error::refused(format!(
                "domain {domain} has no active DKIM key to rotate; run: mailctl dkim generate {domain}"
            )));
        }
        if let Some(s) = &given {
            rules::require_unused(&mut tx, &domain, s).await?;
        }
        tx.rollback().await?;
    }
    let pair = generate_pair(args.algorithm).await?;
    let mut tx = store.begin_write().await?;
    let row = rules::add_key(&mut tx, &domain, given.as_ref(), &pair, rotate).await?;
    tx.commit().await?;
    announce_new(ctx, &row, "generated")
}

/// Reads a PEM key file, refusing anything larger than a key could be (a 16384-bit RSA PEM is about 13 KiB).
fn read_key_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let io = |source| Error::File {
        action: "cannot read key file",
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024 + 1).read_to_string(&mut text))
        .map_err(io)?;
    if text.len() > 64 * 1024 {
        return Err(Error::refused(format!(
            "{}: larger than 64 KiB, not a private key",
            path.display()
        )));
    }
    Ok(text)
}

/// Runs a dkim subcommand.
pub async fn run(ctx: &Ctx, cmd: DkimCmd) -> Result<()> {
    match cmd {
        DkimCmd::Generate(args) => generate(ctx, args, false).await,
        DkimCmd::Rotate(args) => generate(ctx, args, true).await,
        DkimCmd::Sign(args) => message::sign(ctx, args).await,
        DkimCmd::Verify(args) => message::verify(ctx, args).await,
        DkimCmd::List {
            domain,
            check_dns,
            nameserver,
        } => {
            let domain = domain.as_deref().map(parse::<DomainName>).transpose()?;
            let resolver = if check_dns {
                Some(Resolver::from_config(&ctx.config, nameserver.as_deref())?)
            } else {
                None
            };
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            if let Some(d) = &domain {
                crate::provision::require_domain(&mut tx, d).await?;
            }
            let rows = tx
                .dkim_keys(domain.as_ref().map(DomainName::as_str))
                .await?;
            tx.rollback().await?;
            let mut views = Vec::new();
            for row in &rows {
                let mut view = KeyView::new(row)?;
                if let Some(r) = &resolver {
                    view.dns = Some(published(r, row).await?);
                }
                views.push(view);
            }
            ctx.out.emit(&KeyList(views, check_dns));
            Ok(())
        }
        DkimCmd::Show {
            domain,
            selector,
            format,
        } => {
            let domain: DomainName = parse(&domain)?;
            let selector = selector.as_deref().map(parse::<Selector>).transpose()?;
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            crate::provision::require_domain(&mut tx, &domain).await?;
            let row = rules::find_key(&mut tx, &domain, selector.as_ref()).await?;
            let view = KeyView::new(&row)?;
            match format {
                Some(ShowFormat::Json) => crate::output::Output {
                    json: true,
                    ..ctx.out
                }
                .emit(&view),
                Some(ShowFormat::Plain) if !ctx.out.json => {
                    crate::output::print_line(&format!(
                        "{}\n{}",
                        view.record_name, view.record_value
                    ));
                }
                _ => ctx.out.emit(&view),
            }
            Ok(())
        }
        DkimCmd::Activate {
            domain,
            selector,
            force,
            nameserver,
        } => {
            let domain: DomainName = parse(&domain)?;
            let selector: Selector = parse(&selector)?;
            let store = ctx.store().await?;
            if !force {
                let mut tx = store.begin().await?;
                let row = rules::find_key(&mut tx, &domain, Some(&selector)).await?;
                tx.rollback().await?;
                let resolver = Resolver::from_config(&ctx.config, nameserver.as_deref())?;
                let name = selector.record_name(&domain);
                match published(&resolver, &row).await? {
                    Published::Matches => {}
                    Published::Missing => {
                        return Err(Error::refused(format!(
                            "DNS does not serve {name} yet (no TXT record); publish it, wait for the TTL, \
                             or use --force"
                        )));
                    }
                    Published::Mismatch(why) => {
                        return Err(Error::refused(format!(
                            "DNS record {name} does not match the key: {why}; fix the record or use --force"
                        )));
                    }
                }
            }
            let mut tx = store.begin_write().await?;
            let previous = rules::activate(&mut tx, &domain, &selector).await?;
            tx.commit().await?;
            let mut msg =
                format!("activated DKIM key {selector} of {domain}: new mail is signed with it");
            if let Some(p) = &previous {
                msg.push_str(&format!(
                    "\nkey {p} is now retiring: keep its record until mail signed with it has been delivered \
                     (a few days), then run: mailctl dkim retire {domain} {p}"
                ));
            }
            ctx.out.done(
                &serde_json::json!({"domain": domain, "activated": selector, "retiring": previous}),
                msg,
            );
            Ok(())
        }
        DkimCmd::Retire { domain, selector } => {
            let domain: DomainName = parse(&domain)?;
            let selector: Selector = parse(&selector)?;
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            rules::retire(&mut tx, &domain, &selector).await?;
            tx.commit().await?;
            ctx.out.done(
                &serde_json::json!({"domain": domain, "retired": selector}),
                format!(
                    "retired DKIM key {selector} of {domain}; its record {} can now be removed from DNS",
                    selector.record_name(&domain)
                ),
            );
            Ok(())
        }
        DkimCmd::Export {
            domain,
            selector,
            out,
            force,
        } => message::export(ctx, &domain, &selector, &out, force).await,
        DkimCmd::Import {
            domain,
            selector,
            key,
        } => {
            let domain: DomainName = parse(&domain)?;
            let selector: Selector = parse(&selector)?;
            let pem = read_key_file(&key)?;
            let pair = dkim::keys::from_pem(&pem)
                .map_err(|e| Error::refused(format!("{}: {e}", key.display())))?;
            let store = ctx.store().await?;
            let mut tx = store.begin_write().await?;
            let row = rules::add_key(&mut tx, &domain, Some(&selector), &pair, false).await?;
            tx.commit().await?;
            announce_new(ctx, &row, "imported")
        }
    }
}
