//! Where mail for a domain goes (RFC 5321 5.1, RFC 7505): the MX hosts by preference, each with its IPv4 and
//! IPv6 addresses, or a verdict the queue acts on without connecting anywhere.
//!
//! - MX records: their hosts, lowest preference first; hosts of equal preference in random order so load
//!   spreads over them (the randomness is injectable: [`route_with_rng`]).
//! - A null MX (`0 .`, the only MX record): [`Route::NullMx`], bounce at once (556 5.1.10).
//! - No MX records (NODATA): the domain itself is the implicit MX, preference 0, with its own A/AAAA records.
//! - The domain does not exist (NXDOMAIN): a permanent failure. DNS did not answer: a temporary one.
//! - MX hosts whose names resolve to nothing are skipped; when none is left the failure is temporary if a DNS
//!   error was involved, permanent if every name simply has no address.
//! - MX names that are aliases (CNAME) or look like IP literals are queried as they are and what the resolver
//!   returns is used, leniently, as Postfix does; names with characters no host name has are skipped.
//! - At most [`RouteOptions::max_hosts`] hosts are tried, so a hostile zone cannot make one delivery resolve
//!   and connect to hundreds of hosts.
//! - Loops: when this server's own host name is among the MX hosts, it and every host of equal or worse
//!   preference are dropped (they would hand the mail back to us); if nothing better remains, the mail
//!   "loops back to myself" (5.4.6), as Postfix says. Only the name is compared; addresses are not.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::dns::{Answer, RData, RecordType, Resolver};

/// How many MX hosts one delivery attempt considers at most (after sorting by preference).
pub const MAX_MX_HOSTS: usize = 10;

/// Enhanced status of a null MX (RFC 7505 4.2: reply 556, status 5.1.10).
pub const STATUS_NULL_MX: &str = "5.1.10";
/// Enhanced status when the recipient domain does not exist (RFC 3463: bad destination system address).
pub const STATUS_NO_SUCH_DOMAIN: &str = "5.1.2";
/// Enhanced status when the domain exists but no host to deliver to has an address (unable to route).
pub const STATUS_UNROUTABLE: &str = "5.4.4";
/// Enhanced status when DNS did not answer (directory server failure); the queue retries.
pub const STATUS_DNS_FAILURE: &str = "4.4.3";
/// Enhanced status when the best MX is this server itself (routing loop detected).
pub const STATUS_LOOP: &str = "5.4.6";

/// One host to connect to, with what DNS said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// The MX host name (lowercase ASCII, no trailing dot), for EHLO logs, TLS SNI and certificate checks.
    pub name: String,
    /// Its MX preference (0 for the implicit MX).
    pub preference: u16,
    /// Its IPv4 addresses (from A records), in random order.
    pub ipv4: Vec<Ipv4Addr>,
    /// Its IPv6 addresses (from AAAA records), in random order.
    pub ipv6: Vec<Ipv6Addr>,
    /// True when the domain has no MX records and this is the domain itself (RFC 5321 5.1 implicit MX).
    pub implicit: bool,
}

impl MxHost {
    /// Every address of the host, IPv4 first: IPv4 is what most receivers' reputation, PTR and blocklist
    /// checks are set up for; the delivery code may reorder.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.ipv6.iter().map(|a| IpAddr::V6(*a)))
    }
}

/// Why a domain has no usable route, with the enhanced status code the DSN or log carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// RFC 3463 enhanced status code, e.g. `5.1.2` or `4.4.3`.
    pub status: &'static str,
    /// A human explanation for logs and the DSN's diagnostic text (names come from DNS; escape before use
    /// in headers).
    pub reason: String,
}

/// Where mail for one domain goes, as decided by DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Hosts to try in this order (never empty), each with at least one address.
    Hosts(Vec<MxHost>),
    /// The domain publishes a null MX: it accepts no mail; fail the recipients at once with 556 5.1.10.
    NullMx,
    /// The mail cannot be delivered, ever: fail the recipients now.
    Permanent(RouteError),
    /// DNS could not tell: keep the mail queued and retry later.
    Temporary(RouteError),
}

impl Route {
    /// The hosts to try, empty for every verdict other than [`Route::Hosts`].
    pub fn hosts(&self) -> &[MxHost] {
        match self {
            Route::Hosts(hosts) => hosts,
            _ => &[],
        }
    }
}

/// Settings of a route lookup that come from the server's configuration.
#[derive(Debug, Clone)]
pub struct RouteOptions<'a> {
    /// This server's own host name (`server.hostname`): an MX naming it would loop back to us.
    pub local_hostname: &'a str,
    /// The most MX hosts to consider ([`MAX_MX_HOSTS`] by default).
    pub max_hosts: usize,
}

impl<'a> RouteOptions<'a> {
    /// Defaults for a server called `local_hostname`.
    pub fn new(local_hostname: &'a str) -> RouteOptions<'a> {
        RouteOptions {
            local_hostname,
            max_hosts: MAX_MX_HOSTS,
        }
    }
}

/// Looks up where mail for `domain` goes, shuffling equal preferences with a fresh random generator.
pub async fn route(resolver: &Resolver, domain: &str, options: &RouteOptions<'_>) -> Route {
    let mut rng = StdRng::from_entropy();
    route_with_rng(resolver, domain, options, &mut rng).await
}

/// [`route`] with the random generator supplied, so tests can make the shuffle of equal preferences (and of
/// each host's addresses) deterministic.
pub async fn route_with_rng<R: Rng + ?Sized>(
    resolver: &Resolver,
    domain: &str,
    options: &RouteOptions<'_>,
    rng: &mut R,
) -> Route {
    let domain = match ascii_domain(domain) {
        Ok(d) => d,
        Err(reason) => {
            return permanent(STATUS_NO_SUCH_DOMAIN, reason);
        }
    };
    let mut candidates: Vec<(u16, String)> = match resolver.query(&domain, RecordType::MX).await {
        Answer::Failed(e) => {
            return temporary(format!("MX lookup for {domain} failed: {e}"));
        }
        Answer::NxDomain => {
            return permanent(
                STATUS_NO_SUCH_DOMAIN,
                format!("the domain {domain} does not exist (NXDOMAIN)"),
            );
        }
        Answer::NoData => Vec::new(),
        Answer::Records { data, .. } => {
            let records: Vec<(u16, String, bool)> = data
                .iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some((
                        mx.preference,
                        normalize(&mx.exchange.to_ascii()),
                        mx.exchange.is_root(),
                    )),
                    _ => None,
                })
                .collect();
            // RFC 7505 3: a null MX is the only MX record. A "." among real hosts cannot be connected to and
            // is skipped; a zone with nothing but "." records takes no mail either.
            if !records.is_empty() && records.iter().all(|(_, _, root)| *root) {
                return Route::NullMx;
            }
            let mut seen = HashSet::new();
            let mut hosts: Vec<(u16, String)> = records
                .into_iter()
                .filter(|(_, _, root)| !root)
                .map(|(pref, name, _)| (pref, name))
                .collect();
            // Shuffle, then sort stably: equal preferences keep the random order.
            hosts.shuffle(rng);
            hosts.sort_by_key(|(pref, _)| *pref);
            // The same host listed twice is tried once, at its best preference.
            hosts.retain(|(_, name)| seen.insert(name.clone()));
            hosts
        }
    };
    let implicit = candidates.is_empty();
    if implicit {
        candidates.push((0, domain.clone()));
    }

    let local = normalize(options.local_hostname);
    if let Some(own) = candidates
        .iter()
        .find(|(_, name)| *name == local)
        .map(|c| c.0)
    {
        candidates.retain(|(pref, _)| *pref < own);
        if candidates.is_empty() {
            return permanent(
                STATUS_LOOP,
                format!("mail for {domain} loops back to myself ({local})"),
            );
        }
    }
    candidates.truncate(options.max_hosts.max(1));

    let lookups = candidates
        .iter()
        .map(|(_, name)| resolve_addresses(resolver, name));
    let resolved = futures_util::future::join_all(lookups).await;

    let mut hosts = Vec::new();
    let mut seen = HashSet::new();
    let mut dns_error = None;
    let mut unresolved = Vec::new();
    for ((preference, name), addresses) in candidates.into_iter().zip(resolved) {
        let (mut ipv4, mut ipv6) = match addresses {
            Ok(found) => found,
            Err(Lookup::Failed(e)) => {
                dns_error.get_or_insert(format!("{name}: {e}"));
                continue;
            }
            Err(Lookup::Missing) => {
                unresolved.push(name);
                continue;
            }
        };
        // An address already listed under a better host is the same server: trying it again gains nothing.
        ipv4.retain(|a| seen.insert(IpAddr::V4(*a)));
        ipv6.retain(|a| seen.insert(IpAddr::V6(*a)));
        if ipv4.is_empty() && ipv6.is_empty() {
            continue;
        }
        ipv4.shuffle(rng);
        ipv6.shuffle(rng);
        hosts.push(MxHost {
            name,
            preference,
            ipv4,
            ipv6,
            implicit,
        });
    }
    if !hosts.is_empty() {
        return Route::Hosts(hosts);
    }
    match dns_error {
        Some(e) => temporary(format!("no mail host of {domain} could be resolved: {e}")),
        None if implicit => permanent(
            STATUS_UNROUTABLE,
            format!("the domain {domain} has no MX and no A or AAAA records"),
        ),
        None => permanent(
            STATUS_UNROUTABLE,
            format!(
                "no MX host of {domain} has an A or AAAA record: {}",
                unresolved.join(", ")
            ),
        ),
    }
}

fn permanent(status: &'static str, reason: String) -> Route {
    Route::Permanent(RouteError { status, reason })
}

fn temporary(reason: String) -> Route {
    Route::Temporary(RouteError {
        status: STATUS_DNS_FAILURE,
        reason,
    })
}

/// Why a host has no addresses.
pub(super) enum Lookup {
    /// DNS did not answer (for a family that had no records either).
    Failed(String),
    /// NXDOMAIN or no A/AAAA records, or a name no host can have.
    Missing,
}

/// The A and AAAA records of `name`, looked up concurrently. One family failing while the other answers is
/// not an error: the addresses found are used.
pub(super) async fn resolve_addresses(
    resolver: &Resolver,
    name: &str,
) -> Result<(Vec<Ipv4Addr>, Vec<Ipv6Addr>), Lookup> {
    if !plausible_host(name) {
        return Err(Lookup::Missing);
    }
    let ips = resolver.addresses(name).await.map_err(Lookup::Failed)?;
    if ips.is_empty() {
        return Err(Lookup::Missing);
    }
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    for ip in ips {
        match ip {
            IpAddr::V4(a) => ipv4.push(a),
            IpAddr::V6(a) => ipv6.push(a),
        }
    }
    Ok((ipv4, ipv6))
}

/// Lowercase, without surrounding blanks or the trailing dot.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Letters, digits, `-`, `_` and dots, not empty: what a host name in an MX record can be.
fn plausible_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The recipient domain as DNS knows it: IDNA (punycode) for internationalized names, lowercase.
fn ascii_domain(domain: &str) -> Result<String, String> {
    let trimmed = domain.trim().trim_end_matches('.');
    let shown = crate::model::printable(trimmed);
    if trimmed.starts_with('[') {
        return Err(format!(
            "address literals are not delivered to by MX lookup: {shown}"
        ));
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed)
            .map_err(|_| format!("not a valid internationalized domain name: {shown}"))?
    };
    if !plausible_host(&ascii) || !ascii.contains('.') {
        return Err(format!("not a valid mail domain: {shown}"));
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalized_for_dns() {
        assert_eq!(ascii_domain("Example.ORG.").unwrap(), "example.org");
        assert_eq!(
            ascii_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert!(ascii_domain("[192.0.2.1]").is_err());
        assert!(ascii_domain("").is_err());
        assert!(ascii_domain("localhost").is_err());
        assert!(ascii_domain("a b.example").is_err());
        assert!(ascii_domain("evil.example\r\nX: y").is_err());
    }

    #[test]
    fn host_names_are_checked_before_lookup() {
        assert!(plausible_host("mx1.example.org"));
        assert!(plausible_host("192.0.2.1"));
        assert!(!plausible_host("mx\\032.example"));
        assert!(!plausible_host(""));
    }

    /// The queue spawns route lookups on the multi-threaded runtime: the future must be `Send`.
    #[allow(dead_code)]
    fn route_future_is_send(resolver: &Resolver) {
        fn send<T: Send>(_: &T) {}
        let options = RouteOptions::new("mail.example");
        send(&route(resolver, "example.org", &options));
        send(&route_with_rng(
            resolver,
            "example.org",
            &options,
            &mut StdRng::seed_from_u64(1),
        ));
    }

    #[test]
    fn addresses_list_ipv4_first() {
        let host = MxHost {
            name: "mx.example".into(),
            preference: 10,
            ipv4: vec!["192.0.2.1".parse().unwrap()],
            ipv6: vec!["2001:db8::1".parse().unwrap()],
            implicit: false,
        };
        let all: Vec<IpAddr> = host.addresses().collect();
        assert_eq!(all[0], "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(all[1], "2001:db8::1".parse::<IpAddr>().unwrap());
    }
}
