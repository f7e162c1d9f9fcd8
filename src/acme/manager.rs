//! When to ask the CA, and what to do with the answer: [`due`] decides, [`attempt`] issues and records the
//! outcome in `state.json`, [`run`] is the daemon's task (a check at start, then every [`RECHECK`] and on
//! each `mailctl cert renew` request, polled every [`REQUEST_POLL`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::names::{self, Names};
use super::settings::AcmeSettings;
use super::store::{Handled, PLACEHOLDER_CN, Request, Store, unix_now};
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

/// How long a name the CA refused stays out of the certificate before it is tried again.
pub const REFUSED_FOR: i64 = 86_400;

/// The names to request now: [`names::wanted`], less those the CA refused within [`REFUSED_FOR`] (listed as
/// left out, with when they are tried again).
pub async fn names_now(
    settings: &AcmeSettings,
    hostname: &str,
    https: bool,
    db: &crate::store::Store,
    resolver: &Resolver,
    store: &Store,
) -> crate::error::Result<Names> {
    let current = store.leaf().map(|l| l.names).unwrap_or_default();
    let mut names = names::wanted(
        hostname,
        https,
        db,
        resolver,
        &settings.public_ips,
        &current,
    )
    .await?;
    let now = unix_now();
    let refused: Vec<(String, i64)> = store
        .state()
        .refused
        .into_iter()
        .filter(|(_, at)| now - at < REFUSED_FOR)
        .collect();
    names.names.retain(|n| {
        let Some((_, at)) = refused.iter().find(|(r, _)| r == n) else {
            return true;
        };
        names.skipped.push(format!(
            "{n}: refused by the CA, tried again after {}",
            crate::time::rfc3339_secs(at + REFUSED_FOR)
        ));
        false
    });
    Ok(names)
}

/// Issues for `names` and records the outcome in `state.json`. When the CA refuses some of the hosted
/// domains' names (a CAA record, a name that points elsewhere) but not the host name, those are left out for
/// [`REFUSED_FOR`] and the order is made again without them, so one domain's DNS never keeps the server
/// without a certificate.
pub async fn attempt(
    settings: &AcmeSettings,
    store: &Store,
    resolver: &Resolver,
    names: &Names,
    challenges: &super::challenge::Challenges,
) -> Result<Leaf, String> {
    let mut names = names.clone();
    let mut newly_refused = Vec::new();
    let mut result = super::order::issue(settings, store, resolver, &names.names, challenges).await;
    if let Err(failure) = &result
        && !failure.refused.is_empty()
        && names.names.len() > failure.refused.len()
        && !failure
            .refused
            .iter()
            .any(|(n, _)| Some(n) == names.names.first())
    {
        for (name, why) in &failure.refused {
            tracing::warn!(target: "mailctl::acme", name = %name, "the CA refused a name; asking again without it: {why}");
            names.names.retain(|n| n != name);
            names
                .skipped
                .push(format!("{name}: refused by the CA ({why})"));
            newly_refused.push((name.clone(), unix_now()));
        }
        result = super::order::issue(settings, store, resolver, &names.names, challenges).await;
    }
    let mut state = store.state();
    state.last_attempt = Some(unix_now());
    state.skipped = names.skipped.clone();
    state
        .refused
        .retain(|(_, at)| unix_now() - at < REFUSED_FOR);
    state.refused.extend(newly_refused);
    match &result {
        Ok(_) => {
            state.last_success = state.last_attempt;
            state.last_error = None;
            state.failures = 0;
        }
        Err(e) => {
            state.last_error = Some(e.message.clone());
            state.failures += 1;
        }
    }
    if let Err(e) = store.save_state(&state) {
        tracing::warn!(target: "mailctl::acme", "{e}");
    }
    result.map_err(|e| e.message)
}

/// The daemon's task, until it stops. It holds `daemon.lock` while it runs, so `mailctl cert renew` leaves its
/// requests here rather than answering the CA itself.
pub async fn run(server: Arc<Context>, settings: AcmeSettings, resolver: Resolver) {
    let store = Store::new(&settings.dir);
    let _lock = match store.lock_daemon() {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::error!(target: "mailctl::acme", dir = %settings.dir.display(),
                "another serve manages this ACME directory; this one does not renew");
            return;
        }
        Err(e) => {
            tracing::error!(target: "mailctl::acme", error = %e, "cannot lock the ACME directory; no renewals");
            return;
        }
    };
    let mut shutdown = server.shutdown.clone();
    let mut next = Instant::now();
    let mut loaded = store.leaf().map(|l| l.serial);
    loop {
        let request = store.take_request();
        if request.is_some() || Instant::now() >= next {
            // A certificate replaced on disk by `mailctl cert renew` run while no daemon was there.
            let on_disk = store.leaf().map(|l| l.serial);
            if on_disk != loaded {
                let _ = reload(&server);
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
    let names = match names_now(settings, hostname, https, &server.store, resolver, store).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(target: "mailctl::acme", error = %e, "cannot list the hosted domains; trying again later");
            answer(
                store,
                request,
                false,
                Some(format!("cannot list the hosted domains: {e}")),
            );
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
            let mut state = store.state();
            state.skipped = names.skipped.clone();
            let _ = store.save_state(&state);
            answer(store, request, false, None);
            return RECHECK.min(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    };
    for skipped in &names.skipped {
        tracing::warn!(target: "mailctl::acme", "left out of the certificate: {skipped}");
    }
    tracing::info!(target: "mailctl::acme", names = %names.names.join(","), "requesting a certificate: {reason}");
    let result = attempt(settings, store, resolver, &names, &server.challenges).await;
    // `mailctl cert renew` hears of it only once the listeners serve the new certificate.
    let outcome = match &result {
        Ok(_) => {
            reload(server).map_err(|e| format!("the certificate was obtained but not loaded: {e}"))
        }
        Err(e) => Err(e.clone()),
    };
    answer(store, request, outcome.is_ok(), outcome.err());
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

/// Answers `request` (if any) in `state.json`.
fn answer(store: &Store, request: Option<&Request>, renewed: bool, error: Option<String>) {
    let Some(r) = request else {
        return;
    };
    let mut state = store.state();
    state.request = Some(Handled {
        id: r.id.clone(),
        renewed,
        error,
    });
    if let Err(e) = store.save_state(&state) {
        tracing::warn!(target: "mailctl::acme", "{e}");
    }
}

/// Swaps the stored certificate into the listeners (as SIGHUP does).
fn reload(server: &Context) -> Result<(), String> {
    let Some(tls) = &server.tls else {
        return Ok(());
    };
    match tls.reload() {
        Ok(()) => {
            tracing::info!(target: "mailctl::acme", "TLS certificate reloaded");
            Ok(())
        }
        Err(e) => {
            tracing::error!(target: "mailctl::acme", error = %e,
                "TLS reload failed, keeping the previous certificate");
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::settings::Challenge;

    fn settings() -> AcmeSettings {
        AcmeSettings {
            directory: "https://ca.example/dir".into(),
            contact: None,
            challenge: Challenge::Http("127.0.0.1:80".parse().unwrap()),
            dir: std::path::PathBuf::from("/nonexistent"),
            renew_days: 30,
            reuse_key: true,
            directory_ca: None,
            public_ips: Vec::new(),
        }
    }

    fn leaf(names: &[&str], subject: &str, from_days: i64, to_days: i64) -> Leaf {
        let at = |days: i64| {
            let now = SystemTime::now();
            let d = Duration::from_secs(days.unsigned_abs() * 86_400);
            if days < 0 { now - d } else { now + d }
        };
        Leaf {
            names: names.iter().map(|n| n.to_string()).collect(),
            not_before: at(from_days),
            not_after: at(to_days),
            issuer: "CN=Test CA".into(),
            subject: subject.into(),
            serial: "01".into(),
            spki_sha256: String::new(),
        }
    }

    #[test]
    fn what_makes_a_certificate_due() {
        let s = settings();
        let now = SystemTime::now();
        let names = vec![
            "mx.example.org".to_string(),
            "mta-sts.example.org".to_string(),
        ];
        let due_now = |d: Due| matches!(d, Due::Now(_));
        assert!(due_now(due(&s, None, &names, now)));
        let placeholder = leaf(&["mx.example.org"], &format!("CN={PLACEHOLDER_CN}"), -1, 29);
        assert!(due_now(due(&s, Some(&placeholder), &names, now)));
        // Fresh, the same names in another order: due 30 days before it expires.
        let fresh = leaf(&["mta-sts.example.org", "mx.example.org"], "", -1, 89);
        match due(&s, Some(&fresh), &names, now) {
            Due::At(at) => {
                let days = at.duration_since(now).unwrap().as_secs() / 86_400;
                assert!((58..=59).contains(&days), "{days}");
            }
            other => panic!("{other:?}"),
        }
        // A new hosted domain's name, or one gone: now, saying which.
        let more = [names.clone(), vec!["autoconfig.example.org".to_string()]].concat();
        match due(&s, Some(&fresh), &more, now) {
            Due::Now(why) => assert!(why.contains("new: autoconfig.example.org"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Within 30 days of expiry; and a 6-day certificate half-way through.
        assert!(due_now(due(
            &s,
            Some(&leaf(
                &["mx.example.org", "mta-sts.example.org"],
                "",
                -61,
                29
            )),
            &names,
            now
        )));
        let short = leaf(&["mx.example.org", "mta-sts.example.org"], "", -1, 5);
        assert!(!due_now(due(&s, Some(&short), &names, now)), "day 1 of 6");
        let later = leaf(&["mx.example.org", "mta-sts.example.org"], "", -4, 2);
        assert!(due_now(due(&s, Some(&later), &names, now)), "day 4 of 6");
    }
}
