//! The message-facing DKIM commands: `sign`, `verify`, and `export` of a private key.

use std::io::{Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::cli::{Ctx, parse};
use crate::dkim::{self, verify::SignatureResult};
use crate::dns::Resolver;
use crate::error::{Error, Result};
use crate::model::{DomainName, Selector};
use crate::output::{Render, table};
use crate::provision::dkim as rules;

/// Options of `dkim sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Domain whose key signs (d=)
    #[arg(long)]
    domain: String,
    /// Selector of the key [default: the active key]
    #[arg(long)]
    selector: Option<String>,
}

/// Options of `dkim verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Ask this nameserver (IP or IP:PORT) instead of the system resolver
    #[arg(long, value_name = "IP[:PORT]")]
    nameserver: Option<String>,
}

/// Messages larger than this are refused rather than read into memory.
const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

fn read_message() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut buf)
        .map_err(|source| Error::File {
            action: "cannot read the message from",
            path: "standard input".into(),
            source,
        })?;
    if buf.len() as u64 > MAX_MESSAGE {
        return Err(Error::refused("the message is larger than 64 MiB"));
    }
    if buf.is_empty() {
        return Err(Error::refused("no message on standard input"));
    }
    Ok(buf)
}

/// `dkim sign`: reads the message, signs it with the stored key, writes it with the signature prepended.
pub async fn sign(ctx: &Ctx, args: SignArgs) -> Result<()> {
    let domain: DomainName = parse(&args.domain)?;
    let selector = args
        .selector
        .as_deref()
        .map(parse::<Selector>)
        .transpose()?;
    let message = read_message()?;
    let from_domain =
        dkim::sign::check_message(&dkim::sign::to_crlf(&message)).map_err(Error::refused)?;
    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    rules::require_active_domain(&mut tx, &domain).await?;
    let row = rules::find_key(&mut tx, &domain, selector.as_ref()).await?;
    tx.rollback().await?;
    let aligned = from_domain == domain.as_str() || from_domain.ends_with(&format!(".{domain}"));
    if !aligned {
        ctx.out.note(format!(
            "note: the From domain {from_domain} is not {domain} or below it: DMARC will not count this \
             signature as aligned"
        ));
    }
    let pair = dkim::keys::from_stored(&row.private_key)
        .map_err(|e| Error::refused(format!("DKIM key {} of {domain}: {e}", row.selector)))?;
    let selector: Selector = parse(&row.selector)?;
    let signed =
        tokio::task::spawn_blocking(move || dkim::sign::sign(&message, &domain, &selector, &pair))
            .await
            .map_err(|e| Error::refused(format!("signing failed: {e}")))?
            .map_err(Error::refused)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&signed)
        .and_then(|()| out.flush())
        .map_err(|source| Error::File {
            action: "cannot write the signed message to",
            path: "standard output".into(),
            source,
        })
}

#[derive(Serialize)]
struct Verified {
    signatures: Vec<SignatureResult>,
    pass: bool,
}

impl Render for Verified {
    fn render(&self) -> String {
        table(
            &["DOMAIN", "SELECTOR", "RESULT", "REASON"],
            self.signatures.iter().map(|s| {
                vec![
                    s.domain.clone(),
                    s.selector.clone(),
                    s.result.to_string(),
                    s.reason.clone().unwrap_or_default(),
                ]
            }),
        )
    }
}

/// `dkim verify`: one result per signature; success only when one passes and none is broken.
pub async fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<()> {
    let message = dkim::sign::to_crlf(&read_message()?);
    let resolver = Resolver::from_config(&ctx.config, args.nameserver.as_deref())?;
    let results = dkim::verify::verify(&resolver, &message)
        .await
        .ok_or_else(|| Error::refused("the message cannot be parsed as RFC 5322"))?;
    let signatures: Vec<SignatureResult> =
        results.into_iter().filter(|r| r.result != "none").collect();
    if signatures.is_empty() {
        return Err(Error::refused("the message has no DKIM-Signature header"));
    }
    let passed = signatures.iter().filter(|s| s.passed()).count();
    let broken = signatures.len() - passed;
    let unanswered = signatures.iter().all(|s| s.result == "temperror");
    let verdict = Verified {
        pass: passed > 0 && broken == 0,
        signatures,
    };
    ctx.out.emit(&verdict);
    if verdict.pass {
        Ok(())
    } else if unanswered {
        // Nothing was decided: DNS did not answer. That is "backend unreachable", not a failed signature.
        Err(Error::Dns {
            name: "the DKIM key records".into(),
            reason: "no signature could be checked (temperror)".into(),
        })
    } else {
        Err(Error::refused(format!(
            "DKIM verification failed: {passed} of {} signatures pass",
            passed + broken
        )))
    }
}

/// `dkim export`: the private key as PEM, readable only by its owner.
pub async fn export(
    ctx: &Ctx,
    domain: &str,
    selector: &str,
    out: &Path,
    force: bool,
) -> Result<()> {
    let domain: DomainName = parse(domain)?;
    let selector: Selector = parse(selector)?;
    let store = ctx.store().await?;
    let mut tx = store.begin().await?;
    let row = rules::find_key(&mut tx, &domain, Some(&selector)).await?;
    tx.rollback().await?;
    write_private(out, row.private_key.as_bytes(), force)?;
    ctx.out.done(
        &serde_json::json!({"domain": domain, "selector": selector, "written_to": out}),
        format!(
            "wrote the private key of {selector} for {domain} to {} (mode 0600)",
            out.display()
        ),
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |action, source| Error::File {
        action,
        path: path.to_path_buf(),
        source,
    };
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::refused(format!(
            "{} exists; use --force to overwrite it",
            path.display()
        )));
    }
    // Written beside the target with mode 0600 from the first byte, then renamed over it: an existing file or
    // symlink at the target is replaced, never written through.
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let tmp = path.with_file_name(format!(".{file_name}.mailctl-{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err("cannot write", e));
    }
    Ok(())
}
