//! The lookups a receiver makes for an `a`, `mx` or `exists` term, replayed for `spf.lookups`: which of them
//! are void (NXDOMAIN or no data, RFC 7208 4.6.4) and whether an `mx` term names more than 10 MX hosts.
//!
//! Address family: a receiver looks up only the family of the connecting IP (A for an IPv4 client, AAAA for
//! an IPv6 one), but this walk is static and does not know the client. It keeps it simple: a name with
//! neither A nor AAAA is void (void for every client); a name with only one family counts as answered. That
//! undercounts for clients of the other family, but never flags a host that is reachable over IPv4 only (the
//! common, healthy case) as void.

use futures_util::future::{join, join_all};

use super::syntax::Kind;
use super::tree::normalize;
use crate::dns::{Answer, RData, RecordType, Resolver};

/// RFC 7208 4.6.4: an `mx` term may lead to at most 10 address lookups, one per MX host.
pub const MAX_MX_HOSTS: usize = 10;

/// What one term's lookups came to, beyond "answered".
#[derive(Debug)]
pub enum Probe {
    /// A void lookup, described by the term and the name that gave nothing.
    Void(String),
    /// A lookup that got no answer (timeout, SERVFAIL).
    Failed(String),
    /// The term makes receivers return permerror: (term, why).
    Permerror(String, String),
}

/// Looks up an `a`, `mx` or `exists` target the way a receiver would; answered lookups give nothing.
pub async fn probe(resolver: &Resolver, kind: Kind, term: &str, target: &str) -> Vec<Probe> {
    let name = normalize(target);
    match kind {
        Kind::Mx => mx(resolver, term, &name).await,
        Kind::A => addresses(resolver, &name)
            .await
            .map(|why| why.into_probe(term, &name))
            .into_iter()
            .collect(),
        _ => match resolver.query(&name, RecordType::A).await {
            Answer::Records { .. } => Vec::new(),
            Answer::Failed(e) => vec![Probe::Failed(format!("{term}: A {name}: {e}"))],
            Answer::NxDomain => vec![Probe::Void(format!("{term} ({name} does not exist)"))],
            Answer::NoData => vec![Probe::Void(format!("{term} ({name} has no address)"))],
        },
    }
}

/// Why an address lookup gave nothing usable.
enum Empty {
    Missing,
    NoAddress,
    Failed(String),
}

impl Empty {
    /// `subject` is the name looked up, as the detail should call it.
    fn into_probe(self, term: &str, subject: &str) -> Probe {
        match self {
            Empty::Missing => Probe::Void(format!("{term} ({subject} does not exist)")),
            Empty::NoAddress => Probe::Void(format!("{term} ({subject} has no address)")),
            Empty::Failed(e) => Probe::Failed(format!("{term}: {subject}: {e}")),
        }
    }
}

/// `None` when `name` has an A or an AAAA record (see the module doc for why either will do).
async fn addresses(resolver: &Resolver, name: &str) -> Option<Empty> {
    let (v4, v6) = join(
        resolver.query(name, RecordType::A),
        resolver.query(name, RecordType::AAAA),
    )
    .await;
    let answers = [v4, v6];
    if answers.iter().any(|a| matches!(a, Answer::Records { .. })) {
        return None;
    }
    if let Some(e) = answers.iter().find_map(|a| match a {
        Answer::Failed(e) => Some(e.clone()),
        _ => None,
    }) {
        return Some(Empty::Failed(e));
    }
    if answers.iter().any(|a| matches!(a, Answer::NxDomain)) {
        Some(Empty::Missing)
    } else {
        Some(Empty::NoAddress)
    }
}

/// The MX query, then (at most 10 hosts) one address lookup per host, each host without address a void lookup.
async fn mx(resolver: &Resolver, term: &str, name: &str) -> Vec<Probe> {
    let data = match resolver.query(name, RecordType::MX).await {
        Answer::Records { data, .. } => data,
        Answer::Failed(e) => return vec![Probe::Failed(format!("{term}: MX {name}: {e}"))],
        Answer::NxDomain => return vec![Probe::Void(format!("{term} ({name} does not exist)"))],
        Answer::NoData => return vec![Probe::Void(format!("{term} ({name} has no MX record)"))],
    };
    let hosts: Vec<String> = data
        .iter()
        .filter_map(|d| match d {
            RData::MX(mx) => Some(normalize(&mx.exchange.to_string())),
            _ => None,
        })
        .collect();
    if hosts.len() > MAX_MX_HOSTS {
        return vec![Probe::Permerror(
            term.to_string(),
            format!(
                "{term}: {} MX hosts at {name}, more than {MAX_MX_HOSTS}: receivers return permerror (RFC 7208 4.6.4)",
                hosts.len()
            ),
        )];
    }
    let lookups = hosts.iter().map(|host| async move {
        if host.is_empty() {
            // Null MX (RFC 7505): the exchange "." has no address.
            return Some(Probe::Void(format!("{term} ({name} has a null MX)")));
        }
        let subject = format!("MX host {host}");
        addresses(resolver, host)
            .await
            .map(|why| why.into_probe(term, &subject))
    });
    join_all(lookups).await.into_iter().flatten().collect()
}
