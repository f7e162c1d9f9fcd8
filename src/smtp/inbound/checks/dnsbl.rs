//! DNS blocklists (RFC 5782): the client IP, reversed, under each configured zone, all zones at once.
//!
//! A listing is an A record in 127.0.0.0/8. Answers in 127.255.255.0/24 are not listings but Spamhaus's way of
//! refusing the query (public resolver, over quota, ...); they and answers outside 127/8 (a lapsed list whose
//! domain now points somewhere) are noted and otherwise ignored, as are timeouts and SERVFAIL: a list that
//! cannot be asked never blocks mail.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::future::join_all;

use crate::dns::{Answer, RData, RecordType, Resolver};

/// What one zone said about the client IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Not listed (NXDOMAIN or no A record).
    Clean,
    /// Listed, with the return code (its meaning is the list's own).
    Listed(Ipv4Addr),
    /// The list answered with an error code (127.255.255.x) or an address outside 127/8: not a listing.
    Refused(Ipv4Addr),
    /// No usable answer in time (timeout, SERVFAIL, REFUSED).
    TempError,
}

/// One zone's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneResult {
    /// The blocklist zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// What it said.
    pub listing: Listing,
}

/// The answers of every configured zone, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dnsbl {
    /// One entry per zone.
    pub zones: Vec<ZoneResult>,
}

impl Dnsbl {
    /// The first zone that lists the client, if any.
    pub fn listed_zone(&self) -> Option<&str> {
        self.zones
            .iter()
            .find(|z| matches!(z.listing, Listing::Listed(_)))
            .map(|z| z.zone.as_str())
    }

    /// For the log: `clean`, or the zones that did not answer "clean", e.g. `listed:bl.example,temperror:b.example`
    /// (`refused:ZONE/127.255.255.254` for an error code).
    pub fn summary(&self) -> String {
        let notes: Vec<String> = self
            .zones
            .iter()
            .filter_map(|z| match &z.listing {
                Listing::Clean => None,
                Listing::Listed(_) => Some(format!("listed:{}", z.zone)),
                Listing::Refused(code) => Some(format!("refused:{}/{code}", z.zone)),
                Listing::TempError => Some(format!("temperror:{}", z.zone)),
            })
            .collect();
        if notes.is_empty() {
            "clean".to_string()
        } else {
            notes.join(",")
        }
    }
}

/// The query name's prefix for `ip`: reversed octets for IPv4 (`2.0.0.127`), reversed nibbles for IPv6 (32
/// labels), as RFC 5782 section 2 specifies.
pub fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

/// Classifies the A records a zone returned for the client.
fn classify(data: &[RData]) -> Listing {
    let mut refused = None;
    for record in data {
        if let RData::A(a) = record {
            let addr: Ipv4Addr = a.0;
            let [first, second, third, _] = addr.octets();
            if first != 127 || (second == 255 && third == 255) {
                refused.get_or_insert(addr);
            } else {
                return Listing::Listed(addr);
            }
        }
    }
    refused.map_or(Listing::Clean, Listing::Refused)
}

/// Asks one zone about `ip`, giving up after `timeout`.
async fn ask(resolver: &Resolver, ip: IpAddr, zone: &str, timeout: Duration) -> ZoneResult {
    let name = format!("{}.{}", reversed(ip), zone.trim_end_matches('.'));
    let listing = match tokio::time::timeout(timeout, resolver.query(&name, RecordType::A)).await {
        Ok(Answer::Records { data, .. }) => classify(&data),
        Ok(Answer::NxDomain | Answer::NoData) => Listing::Clean,
        Ok(Answer::Failed(_)) | Err(_) => Listing::TempError,
    };
    ZoneResult {
        zone: zone.to_string(),
        listing,
    }
}

/// Asks every zone about `ip` concurrently; each zone gets at most `timeout`.
pub async fn check(resolver: &Resolver, ip: IpAddr, zones: &[String], timeout: Duration) -> Dnsbl {
    Dnsbl {
        zones: join_all(zones.iter().map(|z| ask(resolver, ip, z, timeout))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::proto::rr::rdata::A;

    #[test]
    fn ips_are_reversed_as_octets_and_nibbles() {
        assert_eq!(reversed("192.0.2.10".parse().unwrap()), "10.2.0.192");
        assert_eq!(
            reversed("2001:db8::66".parse().unwrap()),
            "6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn only_127_slash_8_outside_the_error_range_is_a_listing() {
        let a = |s: &str| RData::A(A(s.parse().unwrap()));
        assert_eq!(classify(&[]), Listing::Clean);
        assert_eq!(
            classify(&[a("127.0.0.2")]),
            Listing::Listed("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            classify(&[a("127.255.255.254")]),
            Listing::Refused("127.255.255.254".parse().unwrap())
        );
        assert_eq!(
            classify(&[a("198.51.100.7")]),
            Listing::Refused("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            classify(&[a("127.255.255.252"), a("127.0.0.4")]),
            Listing::Listed("127.0.0.4".parse().unwrap())
        );
    }

    #[test]
    fn the_summary_names_every_zone_that_was_not_clean() {
        let zone = |z: &str, listing| ZoneResult {
            zone: z.into(),
            listing,
        };
        let clean = Dnsbl {
            zones: vec![zone("a.example", Listing::Clean)],
        };
        assert_eq!(clean.summary(), "clean");
        assert_eq!(clean.listed_zone(), None);
        let mixed = Dnsbl {
            zones: vec![
                zone("a.example", Listing::TempError),
                zone("b.example", Listing::Listed("127.0.0.2".parse().unwrap())),
                zone(
                    "c.example",
                    Listing::Refused("127.255.255.254".parse().unwrap()),
                ),
            ],
        };
        assert_eq!(
            mixed.summary(),
            "temperror:a.example,listed:b.example,refused:c.example/127.255.255.254"
        );
        assert_eq!(mixed.listed_zone(), Some("b.example"));
    }
}
