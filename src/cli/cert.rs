//! `mailctl cert status|renew`: the listeners' certificate. `status` shows the one in use (from `[server.acme]`
//! or `[server.tls]`) and the last ACME attempt; `renew` obtains a new one from the ACME CA when due (or with
//! `--force`): through the running `serve`, which answers the CA's challenge on its own listener, or, when no
//! daemon holds the challenge port, by answering it itself.

use std::time::{Duration, SystemTime};

use clap::Subcommand;
use serde::Serialize;

use super::Ctx;
use crate::acme::challenge::{self, Challenges};
use crate::acme::manager::{self, Due};
use crate::acme::names;
use crate::acme::settings::{AcmeSettings, Challenge};
use crate::acme::store::{PLACEHOLDER_CN, Request, Store, unix_now};
use crate::dns::Resolver;
use crate::error::{Error, Result};
use crate::output::Render;
use crate::smtp::settings::Settings;
use crate::tls::leaf::Leaf;

/// cert subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Show the certificate in use: names, issuer, validity, renewal date, its key's TLSA 3 1 1 value, and the
    /// last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)
    Status {
        /// DNS server for the name checks, IP[:PORT] [default: config dns.nameserver, else the system's]
        #[arg(long)]
        nameserver: Option<String>,
    },
    /// Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of
    /// expiry), through the running serve or, when none holds the challenge port, directly
    Renew {
        /// Renew even when the certificate is not due
        #[arg(long)]
        force: bool,
        /// DNS server for the name checks and the CA, IP[:PORT] [default: config dns.nameserver]
        #[arg(long)]
        nameserver: Option<String>,
        /// Seconds to wait for the running serve to finish the renewal
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
}

/// What `status` shows.
#[derive(Debug, Serialize)]
struct CertView {
    path: String,
    source: String,
    names: Vec<String>,
    issuer: String,
    serial: String,
    not_before: String,
    not_after: String,
    days_left: i64,
    placeholder: bool,
    /// `3 1 1` TLSA data of the key.
    tlsa_3_1_1: String,
    renewal: Option<String>,
    renewal_due: bool,
    last_attempt: Option<String>,
    last_success: Option<String>,
    last_error: Option<String>,
    skipped: Vec<String>,
}

impl Render for CertView {
    fn render(&self) -> String {
        let mut rows = vec![
            ("certificate", self.path.clone()),
            ("source", self.source.clone()),
            ("names", self.names.join(", ")),
            ("issuer", self.issuer.clone()),
            (
                "valid",
                format!(
                    "{} to {} ({} days left)",
                    &self.not_before[..10],
                    &self.not_after[..10],
                    self.days_left
                ),
            ),
            ("key", format!("TLSA 3 1 1 {}", self.tlsa_3_1_1)),
        ];
        if let Some(r) = &self.renewal {
            rows.push(("renewal", r.clone()));
        }
        if let Some(a) = &self.last_attempt {
            let outcome = match &self.last_error {
                Some(e) => format!("failed: {e}"),
                None => "certificate obtained".into(),
            };
            rows.push(("last attempt", format!("{a}: {outcome}")));
        }
        for s in &self.skipped {
            rows.push(("left out", s.clone()));
        }
        crate::output::table(
            &["", ""],
            rows.into_iter().map(|(k, v)| vec![k.to_string(), v]),
        )
    }
}

/// Runs a cert subcommand.
pub async fn run(ctx: &Ctx, cmd: CertCmd) -> Result<()> {
    let settings = Settings::from_config(&ctx.config, &[])?;
    match cmd {
        CertCmd::Status { nameserver } => status(ctx, &settings, nameserver.as_deref()).await,
        CertCmd::Renew {
            force,
            nameserver,
            wait,
        } => {
            let Some(acme) = settings.acme.clone() else {
                return Err(Error::usage(
                    "[server.acme] is not configured: the certificate comes from the server.tls files",
                ));
            };
            let resolver = Resolver::from_config(&ctx.config, nameserver.as_deref())?;
            renew(
                ctx,
                &settings,
                &acme,
                &resolver,
                force,
                Duration::from_secs(wait),
            )
            .await
        }
    }
}

fn rfc3339_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::time::rfc3339_secs(secs)
}

/// The view of the certificate in `settings`' files; `due` is the ACME verdict, when ACME is on.
fn view(settings: &Settings, leaf: &Leaf, due: Option<&Due>, store: Option<&Store>) -> CertView {
    let path = settings
        .tls
        .as_ref()
        .map(|(c, _)| c.display().to_string())
        .unwrap_or_default();
    let source = match &settings.acme {
        Some(a) => format!("ACME {} ({})", a.directory, a.challenge.name()),
        None => "server.tls files".into(),
    };
    let days_left = leaf
        .not_after
        .duration_since(SystemTime::now())
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(-1);
    let state = store.map(Store::state).unwrap_or_default();
    let (renewal, renewal_due) = match due {
        Some(Due::Now(reason)) => (Some(format!("due now: {reason}")), true),
        Some(Due::At(at)) => (Some(format!("on {}", crate::time::date(*at))), false),
        None => (None, false),
    };
    CertView {
        path,
        source,
        names: leaf.names.clone(),
        issuer: leaf.issuer.clone(),
        serial: leaf.serial.clone(),
        not_before: rfc3339_time(leaf.not_before),
        not_after: rfc3339_time(leaf.not_after),
        days_left,
        placeholder: leaf.subject.contains(PLACEHOLDER_CN),
        tlsa_3_1_1: leaf.spki_sha256.clone(),
        renewal,
        renewal_due,
        last_attempt: state.last_attempt.map(crate::time::rfc3339_secs),
        last_success: state.last_success.map(crate::time::rfc3339_secs),
        last_error: state.last_error,
        skipped: state.skipped,
    }
}

/// The names wanted now and whether the stored certificate is due.
async fn judge(
    ctx: &Ctx,
    settings: &Settings,
    acme: &AcmeSettings,
    resolver: &Resolver,
    store: &Store,
) -> Result<(names::Names, Due)> {
    let db = ctx.store().await?;
    let wanted = manager::names_now(
        acme,
        &settings.hostname,
        settings.https.is_some(),
        &db,
        resolver,
        store,
    )
    .await?;
    let due = manager::due(
        acme,
        store.leaf().as_ref(),
        &wanted.names,
        SystemTime::now(),
    );
    Ok((wanted, due))
}

async fn status(ctx: &Ctx, settings: &Settings, nameserver: Option<&str>) -> Result<()> {
    let Some((cert, _)) = &settings.tls else {
        return Err(Error::usage(
            "no certificate is configured: set [server.acme] or server.tls cert and key",
        ));
    };
    let pem = std::fs::read(cert).map_err(|e| match &settings.acme {
        Some(_) if e.kind() == std::io::ErrorKind::NotFound => Error::refused(format!(
            "{}: no certificate yet (serve makes one at its first start)",
            cert.display()
        )),
        _ => Error::File {
            action: "cannot read",
            path: cert.clone(),
            source: e,
        },
    })?;
    let leaf =
        Leaf::from_pem(&pem).map_err(|e| Error::refused(format!("{}: {e}", cert.display())))?;
    let (due, store) = match &settings.acme {
        Some(acme) => {
            let store = Store::new(&acme.dir);
            let resolver = Resolver::from_config(&ctx.config, nameserver)?;
            let (_, due) = judge(ctx, settings, acme, &resolver, &store).await?;
            (Some(due), Some(store))
        }
        None => (None, None),
    };
    let shown = view(settings, &leaf, due.as_ref(), store.as_ref());
    ctx.out.emit(&shown);
    if shown.placeholder {
        return Err(Error::refused(
            "the placeholder certificate is in use: no certificate was obtained from the CA yet",
        ));
    }
    if shown.days_left < 0 {
        return Err(Error::refused(format!(
            "the certificate expired on {}",
            &shown.not_after[..10]
        )));
    }
    if let Some(Due::Now(reason)) = &due
        && let Some(e) = &shown.last_error
    {
        return Err(Error::refused(format!(
            "renewal is due ({reason}) and the last attempt failed: {e}"
        )));
    }
    Ok(())
}

async fn renew(
    ctx: &Ctx,
    settings: &Settings,
    acme: &AcmeSettings,
    resolver: &Resolver,
    force: bool,
    wait: Duration,
) -> Result<()> {
    let store = Store::new(&acme.dir);
    let (wanted, due) = judge(ctx, settings, acme, resolver, &store).await?;
    if let (Due::At(at), false) = (&due, force) {
        let leaf = store.leaf();
        ctx.out.done(
            &serde_json::json!({"renewed": false, "due": rfc3339_time(*at)}),
            format!(
                "not due: the certificate for {} is renewed on {} (--force renews now)",
                leaf.map(|l| l.names.join(", ")).unwrap_or_default(),
                crate::time::date(*at)
            ),
        );
        return Ok(());
    }
    let leaf = if store.daemon_running() {
        through_daemon(&store, force, wait).await?
    } else {
        let listen = acme.challenge.listen();
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            Error::refused(format!(
                "cannot answer the CA's {} challenge on {listen}: {e} (no serve manages {}; start it, or run \
                 this as root)",
                acme.challenge.name(),
                acme.dir.display()
            ))
        })?;
        directly(settings, acme, resolver, &store, &wanted, listener).await?
    };
    let Some(leaf) = leaf else {
        let at = store.leaf().map(|l| l.not_after);
        ctx.out.done(
            &serde_json::json!({"renewed": false}),
            format!(
                "not due: serve kept the certificate (valid until {})",
                at.map(crate::time::date).unwrap_or_default()
            ),
        );
        return Ok(());
    };
    let shown = view(settings, &leaf, None, Some(&store));
    ctx.out.done(
        &serde_json::json!({"renewed": true, "certificate": shown}),
        format!(
            "certificate for {} issued by {}, valid until {}",
            leaf.names.join(", "),
            leaf.issuer,
            crate::time::date(leaf.not_after)
        ),
    );
    Ok(())
}

/// No daemon manages the directory: answer the challenges here; the next start serves the result.
async fn directly(
    settings: &Settings,
    acme: &AcmeSettings,
    resolver: &Resolver,
    store: &Store,
    wanted: &names::Names,
    listener: tokio::net::TcpListener,
) -> Result<Option<Leaf>> {
    let owner = match (&settings.run_as, crate::sys::effective_ids().0) {
        (Some(r), 0) => Some((r.uid, r.gid)),
        _ => None,
    };
    store.prepare(&settings.hostname, owner)?;
    let challenges = std::sync::Arc::new(Challenges::default());
    let responder = match acme.challenge {
        Challenge::TlsAlpn(_) => {
            let (cert, key) = acme.files();
            let tls = std::sync::Arc::new(crate::tls::server::Tls::load(&cert, &key)?);
            tokio::spawn(challenge::serve_tls_alpn(listener, tls, challenges.clone()))
        }
        Challenge::Http(_) => {
            let (_stop, shutdown) = crate::smtp::shutdown::channel();
            let challenges = challenges.clone();
            tokio::spawn(async move {
                let _keep = _stop;
                challenge::serve_http(listener, challenges, shutdown).await;
            })
        }
    };
    let result = manager::attempt(acme, store, resolver, wanted, &challenges).await;
    responder.abort();
    if let Some((uid, gid)) = owner {
        store.prepare(&settings.hostname, Some((uid, gid)))?;
    }
    result.map(Some).map_err(Error::refused)
}

/// A running serve manages the directory (it holds `daemon.lock`): leave it a request and wait for its
/// answer, which comes once the listeners serve the new certificate.
async fn through_daemon(store: &Store, force: bool, wait: Duration) -> Result<Option<Leaf>> {
    let id = format!(
        "{}-{}",
        unix_now(),
        std::time::SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    store.request(&Request {
        id: id.clone(),
        force,
    })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(handled) = store.state().request.filter(|h| h.id == id) {
            return match (handled.renewed, handled.error) {
                (_, Some(e)) => Err(Error::refused(e)),
                (false, None) => Ok(None),
                (true, None) => store.leaf().map(Some).ok_or_else(|| {
                    Error::refused("serve reported a new certificate but none is stored")
                }),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            store.withdraw_request(&id);
            return Err(Error::refused(format!(
                "the running serve did not answer within {} s (its log says why)",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
