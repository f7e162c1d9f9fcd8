//! When to ask the CA, and what to do with the answer: [`due`] decides, [`attempt`] issues and records the
//! outcome in `state.json`, [`run`] is the daemon's task (a check at start, then every [`RECHECK`] and on
//! each `mailctl cert renew` request, polled every [`REQUEST_POLL`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::names::{self, Names};
use super::settings::AcmeSettings;
use super::store::{PLACEHOLDER_CN, Request, Store, unix_now};
use crate::dns::Resolver;
use crate::smtp::inbound::Context;
use crate::tls::leaf::Leaf;

/// How often the daemon looks again (names of new domains, expiry) when nothing is due.
pub const RECHECK: Duration = Duration::from_secs(3600);
/// How often the daemon looks for a `mailctl cert renew` request.
pub const REQUEST_POLL: Duration = Duration::from_secs(2);
/// The first retry after a failure; it doubles with each failure in a row, up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(600);
/// The longest wait between failed attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(12 * 3600);

/// Whether a certificate is needed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Yes, for this reason.
    Now(String),
    /// At this time.
    At(SystemTime),
}

/// Whether the certificate `leaf` (the one in use) must be replaced now to cover `names` and stay valid.
pub fn due(settings: &AcmeSettings, leaf: Option<&Leaf>, names: &[String], now: SystemTime) -> Due {
    let Some(leaf) = leaf else {
        return Due::Now("there is no certificate yet".into());
    };
    if leaf.subject.contains(PLACEHOLDER_CN) {
        return Due::Now("the self-signed placeholder is in use".into());
    }
    let mut have: Vec<&str> = leaf.names.iter().map(String::as_str).collect();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    if have != want {
        let added: Vec<&str> = want.iter().filter(|n| !have.contains(n)).copied().collect();
        let removed: Vec<&str> = have.iter().filter(|n| !want.contains(n)).copied().collect();
        return Due::Now(format!(
            "the names changed (new: {}; gone: {})",
            list(&added),
            list(&removed)
        ));
    }
    let lifetime = leaf
        .not_after
        .duration_since(leaf.not_before)
        .unwrap_or_default();
    let at = leaf.not_after - settings.renew_before(lifetime);
    if now >= at {
        return Due::Now(format!(
            "it expires on {}",
            crate::time::date(leaf.not_after)
        ));
    }
    Due::At(at)
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Issues for `names` and records the outcome in `state.json`.
pub async fn attempt(
    settings: &AcmeSettings,
    store: &Store,
    resolver: &Resolver,
    names: &Names,
    challenges: &super::challenge::Challenges,
) -> Result<Leaf, String> {
    let result = super::order::issue(settings, store, resolver, &names.names, challenges).await;
    let mut state = store.state();
    state.last_attempt = Some(unix_now());
    state.skipped = names.skipped.clone();
    match &result {
        Ok(_) => {
            state.last_success = state.last_attempt;
            state.last_error = None;
            state.failures = 0;
        }
        Err(e) => {
            state.last_error = Some(e.clone());
            state.failures += 1;
        }
    }
    if let Err(e) = store.save_state(&state) {
        tracing::warn!(target: "mailctl::acme", "{e}");
    }
    result
}

/// The daemon's task, until it stops.
pub async fn run(server: Arc<Context>, settings: AcmeSettings, resolver: Resolver) {
    let store = Store::new(&settings.dir);
    let mut shutdown = server.shutdown.clone();
    let mut next = Instant::now();
    let mut loaded = store.leaf().map(|l| l.serial);
    loop {
        let request = store.take_request();
        if request.is_some() || Instant::now() >= next {
            // A certificate replaced on disk by `mailctl cert renew` run without the daemon's port.
            let on_disk = store.leaf().map(|l| l.serial);
            if on_disk != loaded {
                reload(&server);
            }
            let wait = check(&server, &settings, &store, &resolver, request.as_ref()).await;
            loaded = store.leaf().map(|l| l.serial);
            next = Instant::now() + wait;
        }
        if shutdown.is_shutdown() {
            return;
        }
        tokio::select! {
            () = shutdown.recv() => return,
            () = tokio::time::sleep(REQUEST_POLL) => {}
        }
    }
}

/// One look: issues when due (or asked with `--force`); returns how long to wait before the next look.
async fn check(
    server: &Context,
    settings: &AcmeSettings,
    store: &Store,
    resolver: &Resolver,
    request: Option<&Request>,
) -> Duration {
    let https = server.settings.https.is_some();
    let hostname = &server.settings.hostname;
    let names = match names::wanted(
        hostname,
        https,
        &server.store,
        resolver,
        &settings.public_ips,
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(target: "mailctl::acme", error = %e, "cannot list the hosted domains; trying again later");
            return FIRST_RETRY;
        }
    };
    let reason = match due(
        settings,
        store.leaf().as_ref(),
        &names.names,
        SystemTime::now(),
    ) {
        Due::Now(reason) => reason,
        Due::At(_) if request.is_some_and(|r| r.force) => {
            "renewal forced (mailctl cert renew --force)".into()
        }
        Due::At(at) => {
            handled(store, request, Some(&names));
            return RECHECK.min(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    };
    for skipped in &names.skipped {
        tracing::warn!(target: "mailctl::acme", "left out of the certificate: {skipped}");
    }
    tracing::info!(target: "mailctl::acme", names = %names.names.join(","), "requesting a certificate: {reason}");
    let result = attempt(settings, store, resolver, &names, &server.challenges).await;
    if result.is_ok() {
        reload(server);
    }
    // Only now: `mailctl cert renew` reports once the listeners serve the new certificate.
    handled(store, request, None);
    match result {
        Ok(leaf) => {
            tracing::info!(target: "mailctl::acme", names = %leaf.names.join(","), issuer = %leaf.issuer,
                expires = %crate::time::date(leaf.not_after), "certificate obtained");
            RECHECK
        }
        Err(e) => {
            let failures = store.state().failures.max(1);
            let wait = FIRST_RETRY
                .saturating_mul(1 << (failures - 1).min(10))
                .min(MAX_RETRY);
            tracing::error!(target: "mailctl::acme", error = %e, retry_in_s = wait.as_secs(),
                "the certificate could not be obtained; the one in use stays");
            wait
        }
    }
}

/// Records that `request` (if any) was handled, with the names left out when they were judged.
fn handled(store: &Store, request: Option<&Request>, names: Option<&Names>) {
    let Some(r) = request else {
        return;
    };
    let mut state = store.state();
    state.handled_request = Some(r.id.clone());
    if let Some(n) = names {
        state.skipped = n.skipped.clone();
    }
    if let Err(e) = store.save_state(&state) {
        tracing::warn!(target: "mailctl::acme", "{e}");
    }
}

/// Swaps the stored certificate into the listeners (as SIGHUP does).
fn reload(server: &Context) {
    if let Some(tls) = &server.tls {
        match tls.reload() {
            Ok(()) => tracing::info!(target: "mailctl::acme", "TLS certificate reloaded"),
            Err(e) => tracing::error!(target: "mailctl::acme", error = %e,
                "TLS reload failed, keeping the previous certificate"),
        }
    }
}
