//! List health (RFC 5782 section 5 test entries) and the classification of one blocklist answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::future::{join, join_all};

use super::reversed;

use crate::audit::{Finding, Status};
use crate::dns::{Answer, RData, RecordType, Resolver};

/// What one A query at a list told.
#[derive(Debug, Clone)]
pub(super) enum Lookup {
    /// NXDOMAIN or no data.
    NotListed,
    /// Return codes, all in 127.0.0.0/8.
    Listed(Vec<Ipv4Addr>),
    /// An answer in 127.255.255.0/24: the list refuses this resolver.
    Refused(Ipv4Addr),
    /// An answer outside 127.0.0.0/8, which no working list gives.
    Odd(IpAddr),
    /// DNS did not answer.
    Failed(String),
}

pub(super) async fn lookup(resolver: &Resolver, name: &str) -> Lookup {
    match resolver.query(name, RecordType::A).await {
        Answer::NxDomain | Answer::NoData => Lookup::NotListed,
        Answer::Failed(e) => Lookup::Failed(e),
        Answer::Records { data, .. } => {
            let mut codes = Vec::new();
            for ip in data.iter().filter_map(RData::ip_addr) {
                match ip {
                    IpAddr::V4(v4) if v4.octets()[..3] == [127, 255, 255] => {
                        return Lookup::Refused(v4);
                    }
                    IpAddr::V4(v4) if v4.octets()[0] == 127 => codes.push(v4),
                    other => return Lookup::Odd(other),
                }
            }
            if codes.is_empty() {
                Lookup::NotListed
            } else {
                Lookup::Listed(codes)
            }
        }
    }
}

/// Whether a list holds IPs or domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Ip,
    Domain,
}

/// The outcome of a list's health check.
#[derive(Debug, Clone)]
pub(super) enum Health {
    Healthy,
    /// Not used; reported once as `dnsbl.health`.
    Unhealthy(String),
    /// Could not be checked: every target is UNKNOWN on this list, for this reason.
    CannotTest(String),
    /// No IPv6 data (reported once as a `dnsbl.health` INFO): not used for IPv6 targets.
    NoIpv6(String),
}

impl Health {
    /// Whether the list is asked at all (a list that could not be checked is asked to report UNKNOWN).
    pub(super) fn usable(&self) -> bool {
        matches!(self, Health::Healthy | Health::CannotTest(_))
    }
}

pub(super) fn refusal(code: Ipv4Addr) -> String {
    let why = match code.octets()[3] {
        252 => "the query or zone name is malformed",
        254 => "queries through public or open resolvers are refused",
        255 => "this resolver sent too many queries",
        _ => "the list refuses this resolver",
    };
    format!(
        "the list answered {code} ({why}); ask through your own recursive resolver, or use the list's \
         registered access"
    )
}

pub(super) async fn health(resolver: &Resolver, zone: &str, kind: Kind) -> Health {
    let (listed, unlisted): (Vec<String>, String) = match kind {
        Kind::Ip => (
            vec![format!("2.0.0.127.{zone}")],
            format!("1.0.0.127.{zone}"),
        ),
        Kind::Domain => (
            vec![format!("test.{zone}"), format!("dbltest.com.{zone}")],
            format!("invalid.{zone}"),
        ),
    };
    let (positive, negative) = join(
        join_all(listed.iter().map(|n| lookup(resolver, n))),
        lookup(resolver, &unlisted),
    )
    .await;
    for answer in positive.iter().chain([&negative]) {
        if let Lookup::Refused(code) = answer {
            return Health::CannotTest(refusal(*code));
        }
    }
    let any_listed = positive.iter().any(|l| matches!(l, Lookup::Listed(_)));
    let failed = positive
        .iter()
        .zip(&listed)
        .filter(|_| !any_listed)
        .chain([(&negative, &unlisted)])
        .find_map(|(l, name)| match l {
            Lookup::Failed(e) => Some(format!(
                "DNS lookup of its test entry {name} failed after a retry ({e})"
            )),
            _ => None,
        });
    if let Some(reason) = failed {
        return Health::CannotTest(reason);
    }
    if matches!(negative, Lookup::Listed(_) | Lookup::Odd(_)) {
        return Health::Unhealthy(format!(
            "it lists {unlisted}, which no list may (RFC 5782): it answers for everything, so it is not used"
        ));
    }
    if !any_listed {
        return Health::Unhealthy(format!(
            "it does not list its test entry {} (RFC 5782): the list is dead or not a blocklist, so it is not used",
            listed.join(" or ")
        ));
    }
    Health::Healthy
}

/// RFC 5782 section 5 for IPv6: lists `::FFFF:7F00:2` and not `::FFFF:7F00:1`. Asked only of a list that passed
/// the IPv4 health check; `Unhealthy` and `NoIpv6` then mean "not used for IPv6 targets".
pub(super) async fn health_ipv6(resolver: &Resolver, zone: &str) -> Health {
    let entry = |last: u16| {
        let ip = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, last));
        format!("{}.{zone}", reversed(&ip))
    };
    let (listed, unlisted) = (entry(2), entry(1));
    let (positive, negative) = join(lookup(resolver, &listed), lookup(resolver, &unlisted)).await;
    match (positive, negative) {
        (Lookup::Refused(code), _) | (_, Lookup::Refused(code)) => {
            Health::CannotTest(refusal(code))
        }
        (Lookup::Failed(e), _) | (_, Lookup::Failed(e)) => Health::CannotTest(format!(
            "DNS lookup of its IPv6 test entries failed after a retry ({e})"
        )),
        (_, Lookup::Listed(_) | Lookup::Odd(_)) => Health::Unhealthy(format!(
            "it lists the IPv6 test address ::FFFF:7F00:1 ({unlisted}), which no list may (RFC 5782): it \
             answers for every IPv6 address, so it is not used for IPv6 addresses"
        )),
        (Lookup::Listed(_), _) => Health::Healthy,
        _ => Health::NoIpv6(format!(
            "does not cover IPv6: it does not list the IPv6 test address ::FFFF:7F00:2 ({listed}, RFC 5782), so \
             its \"not listed\" would mean nothing; it is not used for IPv6 addresses"
        )),
    }
}

/// An IP list's health for IPv4 and for IPv6 targets, both asked at once (the IPv6 test entries only when `v6`).
/// A list failing the IPv4 check is not used for IPv6 either, whatever its IPv6 entries say.
pub(super) async fn ip_health(resolver: &Resolver, zone: &str, v6: bool) -> (Health, Health) {
    let six = async {
        match v6 {
            true => Some(health_ipv6(resolver, zone).await),
            false => None,
        }
    };
    let (four, six) = join(health(resolver, zone, Kind::Ip), six).await;
    match (four, six) {
        (Health::Healthy, Some(six)) => (Health::Healthy, six),
        (four, _) => (four.clone(), four),
    }
}

pub(super) fn health_finding(zone: &str, health: &Health) -> Option<Finding> {
    let (status, why) = match health {
        Health::Unhealthy(why) => (Status::Warn, why),
        Health::NoIpv6(why) => (Status::Info, why),
        Health::Healthy | Health::CannotTest(_) => return None,
    };
    Some(Finding::new("dnsbl.health", status, zone, why.as_str()))
}
