//! The MTA-STS policy of a recipient domain as a sending MTA applies it (RFC 8461 3.3, 5.1), cached in memory.
//!
//! For each delivery the `_mta-sts.DOMAIN` TXT record is read (the resolver caches it). When it carries a
//! valid `v=STSv1` record whose `id` differs from the cached policy's (or nothing is cached), the policy is
//! fetched over verified HTTPS ([`crate::mta_sts::fetch_policy`]) and cached for its `max_age`. When the
//! record is absent or invalid, DNS fails, or the fetch fails, a cached policy that has not expired still
//! applies (so an attacker who blocks DNS or HTTPS cannot strip it); without one the domain has no policy and
//! delivery is opportunistic.
//!
//! The HTTPS port is 443 unless `[server.outbound] mta_sts_port` says otherwise ([`Policies::set_port`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dns::Resolver;
use crate::model::DomainName;
use crate::mta_sts::{FetchOptions, Mode, Policy, StsTxt, fetch_policy, sts_txt};

use crate::tls::Trust;

/// Most domains whose policy is remembered; beyond it expired entries go first, then arbitrary ones.
const MAX_CACHED: usize = 10_000;

/// A policy as cached.
struct Cached {
    id: String,
    policy: Policy,
    expires: Instant,
}

/// The policies of recipient domains, fetched on demand and cached per domain for their `max_age`.
pub struct Policies {
    cache: Mutex<HashMap<String, Cached>>,
    port: u16,
    trust: Trust,
    timeout: Duration,
}

impl Policies {
    /// An empty cache fetching on port 443 with `trust`'s roots, `timeout` per step.
    pub fn new(trust: Trust, timeout: Duration) -> Policies {
        Policies {
            cache: Mutex::new(HashMap::new()),
            port: 443,
            trust,
            timeout,
        }
    }

    /// Fetches policies from `port` instead.
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// Uses `trust` for the policy fetch (tests with their own CA).
    pub fn set_trust(&mut self, trust: Trust) {
        self.trust = trust;
    }

    /// The policy that applies to `domain` now, if any (a policy in mode `none` is returned as such).
    pub async fn lookup(&self, resolver: &Resolver, domain: &str) -> Option<Policy> {
        let name: DomainName = domain.parse().ok()?;
        let cached = self.cached(name.as_str());
        let id = match sts_txt(resolver, &name).await {
            StsTxt::Valid { id, .. } => id,
            StsTxt::Absent | StsTxt::Invalid(_) | StsTxt::Failed(_) => {
                return cached.map(|(_, policy)| policy);
            }
        };
        if let Some((cached_id, policy)) = &cached
            && *cached_id == id
        {
            return Some(policy.clone());
        }
        let options = FetchOptions {
            port: self.port,
            roots: self.trust.roots(),
            timeout: self.timeout,
            user_agent: "mailctl",
        };
        match fetch_policy(resolver, name.as_str(), &options).await {
            Ok(policy) => {
                self.store(name.as_str(), id, &policy);
                Some(policy)
            }
            Err(e) => {
                tracing::warn!(target: "mailctl::outbound", domain = name.as_str(),
                    "MTA-STS policy fetch failed: {e}");
                cached.map(|(_, policy)| policy)
            }
        }
    }

    /// The cached policy of `domain` and its id, unless expired.
    fn cached(&self, domain: &str) -> Option<(String, Policy)> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(domain)
            .filter(|c| c.expires > Instant::now())
            .map(|c| (c.id.clone(), c.policy.clone()))
    }

    fn store(&self, domain: &str, id: String, policy: &Policy) {
        let now = Instant::now();
        let expires = now + Duration::from_secs(policy.max_age);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(domain) {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= MAX_CACHED
                && let Some(victim) = cache.keys().next().cloned()
            {
                cache.remove(&victim);
            }
        }
        cache.insert(
            domain.to_string(),
            Cached {
                id,
                policy: policy.clone(),
                expires,
            },
        );
    }
}

/// What a policy asks of delivery to one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No policy (or mode `none`): opportunistic TLS to any MX.
    None,
    /// Mode `testing`: deliver as without a policy, but log what `enforce` would have refused.
    Testing(Policy),
    /// Mode `enforce`: only MX hosts the policy names, over verified TLS.
    Enforce(Policy),
}

impl Requirement {
    /// The requirement of an optional policy.
    pub fn of(policy: Option<Policy>) -> Requirement {
        match policy {
            Some(p) if p.mode == Mode::Enforce => Requirement::Enforce(p),
            Some(p) if p.mode == Mode::Testing => Requirement::Testing(p),
            _ => Requirement::None,
        }
    }
}
