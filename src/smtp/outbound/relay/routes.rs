//! Which relay a message takes: its sender domain's route from the database (`mailctl relay set`), else the
//! configured relay (`[server.outbound.relay]`), else none (the recipients' MX hosts). Routes are read from
//! the database at most every [`REFRESH`] per domain, so a change reaches every node within that time without
//! a query per delivery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Relay, RelayUrl, parse_tls};
use crate::store::{RelayRouteRow, Store};

/// How long a domain's route (or its absence) is remembered.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Most domains whose route is remembered; beyond it the cache starts over.
const MAX_CACHED: usize = 10_000;

/// The routes of one daemon.
#[derive(Debug, Default)]
pub struct Routes {
    /// `[server.outbound.relay]`, with its password.
    configured: Option<Relay>,
    /// The database of `mailctl relay` routes, once the daemon has opened it.
    store: Option<Store>,
    /// Routes read recently, by sender domain.
    cache: Mutex<HashMap<String, (Instant, Option<Relay>)>>,
}

impl Routes {
    /// Routes with `configured` as the default relay and no database yet.
    pub fn new(configured: Option<Relay>) -> Routes {
        Routes {
            configured,
            ..Routes::default()
        }
    }

    /// Reads per-domain routes from `store` from now on.
    pub fn set_store(&mut self, store: Store) {
        self.store = Some(store);
    }

    /// The relay for mail from `sender` (empty for the null sender), or `None` for direct delivery. `Err`:
    /// the route could not be read or is unusable (the message is deferred, never sent another way).
    pub async fn for_sender(&self, sender: &str) -> Result<Option<Relay>, String> {
        let domain = sender
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .filter(|d| !d.is_empty());
        let (Some(store), Some(domain)) = (&self.store, domain) else {
            return Ok(self.configured.clone());
        };
        if let Some(route) = self.cached(&domain) {
            return Ok(route.or_else(|| self.configured.clone()));
        }
        let read = async {
            let mut tx = store.begin().await?;
            let row = tx.relay_route(&domain).await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(row)
        };
        let row = read
            .await
            .map_err(|e| format!("cannot read the relay route of {domain}: {e}"))?;
        let route = match row {
            Some(row) => Some(from_row(&row)?),
            None => None,
        };
        self.remember(&domain, route.clone());
        Ok(route.or_else(|| self.configured.clone()))
    }

    fn cached(&self, domain: &str) -> Option<Option<Relay>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(domain)
            .filter(|(at, _)| at.elapsed() < REFRESH)
            .map(|(_, route)| route.clone())
    }

    fn remember(&self, domain: &str, route: Option<Relay>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(domain.to_string(), (Instant::now(), route));
    }
}

/// A stored route as a relay, checked like the configured one.
pub fn from_row(row: &RelayRouteRow) -> Result<Relay, String> {
    let bad = |why: String| format!("the relay route of {} is unusable: {why}", row.domain);
    let relay = Relay {
        url: RelayUrl::parse(&row.url).map_err(bad)?,
        tls: parse_tls(&row.tls).map_err(bad)?,
        login: row.username.clone().zip(row.password.clone()),
    };
    relay.check("relay").map_err(bad)?;
    Ok(relay)
}
