//! DNS blocklists, queried as receivers query them: every MX address and outbound IP (the targets of
//! [`super::ptr`]) against the IP lists (`--rbl`; default zen.spamhaus.org, bl.spamcop.net,
//! b.barracudacentral.org, psbl.surriel.com) as an A query at the reversed IP under the list's zone (IPv4
//! octets, IPv6 nibbles), and the domain against the domain lists (`--dbl`; default dbl.spamhaus.org) as an A
//! query at `DOMAIN.ZONE`. A listing's TXT record at the same name gives the list's reason.
//!
//! Each list's health is checked first, with the test entries of RFC 5782 section 5: an IP list must list
//! 127.0.0.2 and must not list 127.0.0.1; a domain list must list `test` (or Spamhaus' documented `dbltest.com`)
//! and must not list `invalid`. A list failing that is reported and not used, so a dead list that answers
//! everything never reads as "listed everywhere". The health lookups repeat per domain; the run's shared cache
//! makes the repeats free.
//!
//! IPv6 targets are looked up only on lists that cover IPv6: many (SpamCop, Barracuda, PSBL) hold no IPv6 data
//! and answer NXDOMAIN for every IPv6 name, which would read as "not listed". Per RFC 5782 section 5 an
//! IPv6-capable list lists `::FFFF:7F00:2` and does not list `::FFFF:7F00:1` (looked up in nibble form); this is
//! checked, only when the domain has an IPv6 target, on every list that passed its IPv4 health check.
//!
//! At most [`MAX_TARGETS`] (20) IPs are looked up per domain, MX addresses first; the rest are named in one
//! `dnsbl.listed` INFO whose subject is the domain.
//!
//! An answer in 127.255.255.0/24 is the list refusing this resolver (Spamhaus refuses public resolvers and
//! over-quota users); like a timeout, it is "could not test", never "listed".
//!
//! Ids:
//! - `dnsbl.health`: WARN for a list that failed its health check (it is then not used). INFO "does not cover
//!   IPv6" for a list without the IPv6 test entry (it is then not used for IPv6 targets), WARN for one listing
//!   `::FFFF:7F00:1`. Healthy lists are not reported, to keep the output short.
//! - `dnsbl.listed`: per IP. FAIL per list that lists it, with the return code, its meaning (Spamhaus codes on
//!   Spamhaus zones, "listed" elsewhere), the list's TXT reason, and its delisting advice as the fix. UNKNOWN per
//!   list that could not be asked (DNS failure, refusal, odd answer, health entries unanswered). PASS naming
//!   every list that does not list it. INFO for a loopback address, which is not looked up, for an IPv6 address
//!   when no list covers IPv6, and for the IPs beyond [`MAX_TARGETS`].
//! - `dnsbl.domain`: the same for the domain on the domain lists.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::future::{join, join_all};

use crate::audit::{Context, Finding, Status};
use crate::dns::Resolver;
use crate::dns::reverse_name;
use crate::model::DomainName;

mod health;

use health::{Health, Kind, Lookup, health, health_finding, ip_health, lookup, refusal};

/// At most this many IPs are looked up per domain.
pub const MAX_TARGETS: usize = 20;

fn is_spamhaus(zone: &str) -> bool {
    zone.ends_with(".spamhaus.org") || zone.ends_with(".spamhaus.net")
}

/// What a return code means. Spamhaus documents its codes; other lists return 127.0.0.2 or a list-specific code.
fn meaning(zone: &str, code: Ipv4Addr) -> &'static str {
    if !is_spamhaus(zone) {
        return "listed";
    }
    match code.octets() {
        [127, 0, 0, 2] => "SBL: a known spam source or spam operation",
        [127, 0, 0, 3] => "SBL CSS: automatically detected low-reputation mail",
        [127, 0, 0, 4..=7] => "XBL/CBL: the host is exploited (malware, botnet, open proxy)",
        [127, 0, 0, 9] => "DROP: a hijacked or criminal network",
        [127, 0, 0, 10] => "PBL (set by the ISP): this range should not send mail directly",
        [127, 0, 0, 11] => "PBL (set by Spamhaus): this range should not send mail directly",
        [127, 0, 0, 30] => "BCL: a botnet controller",
        [127, 0, 1, 2] => "DBL: a low-reputation (spam) domain",
        [127, 0, 1, 4] => "DBL: a phishing domain",
        [127, 0, 1, 5] => "DBL: a malware domain",
        [127, 0, 1, 6] => "DBL: a botnet C&C domain",
        [127, 0, 1, 102..=106] => "DBL: an abused legitimate domain",
        _ => "listed",
    }
}

/// How to get off a list.
fn delisting(zone: &str, codes: &[Ipv4Addr]) -> String {
    let pbl = codes.iter().any(|c| matches!(c.octets()[3], 10 | 11));
    if is_spamhaus(zone) && pbl {
        "send through your provider's relay, or if this is your mail server's static IP, request removal \
         from the PBL at https://check.spamhaus.org/"
            .into()
    } else if is_spamhaus(zone) {
        "fix the cause (compromised account or host, open relay, bulk mail), then look the address up and \
         request removal at https://check.spamhaus.org/"
            .into()
    } else if zone.ends_with("spamcop.net") {
        "fix the cause; SpamCop listings expire about 24 hours after the last spam report \
         (https://www.spamcop.net/bl.shtml)"
            .into()
    } else if zone.ends_with("barracudacentral.org") {
        "fix the cause, then request removal at https://www.barracudacentral.org/rbl/removal-request".into()
    } else if zone.ends_with("surriel.com") {
        "fix the cause, then remove the address at https://psbl.org/remove".into()
    } else {
        format!(
            "fix the cause (compromised account or host, open relay, bulk mail), then request removal on \
             {zone}'s website (the TXT reason usually names the page)"
        )
    }
}

/// The name under a list's zone for an IP: reversed octets, or reversed nibbles for IPv6.
pub(super) fn reversed(ip: &IpAddr) -> String {
    let name = reverse_name(ip);
    let trimmed = name
        .strip_suffix(".in-addr.arpa.")
        .or_else(|| name.strip_suffix(".ip6.arpa."));
    trimmed.unwrap_or(&name).to_string()
}

/// Lists without trailing dots, lower-case, each once.
fn zones(lists: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for zone in lists {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if !zone.is_empty() && !out.contains(&zone) {
            out.push(zone);
        }
    }
    out
}

/// The `dnsbl.health` finding of a list, if it has one.
/// Checks every target IP and the domain against every healthy list, concurrently.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let resolver = ctx.resolver;
    let mut targets = super::ptr::targets(ctx);
    let total = targets.len();
    let skipped = targets.split_off(total.min(MAX_TARGETS));
    let v6 = targets
        .iter()
        .any(|t| t.ip.is_ipv6() && !t.ip.is_loopback());
    let ip_zones = zones(&ctx.options.ip_lists);
    let domain_zones = zones(&ctx.options.domain_lists);
    let (ip_health, domain_health) = join(
        join_all(ip_zones.iter().map(|z| ip_health(resolver, z, v6))),
        join_all(
            domain_zones
                .iter()
                .map(|z| health(resolver, z, Kind::Domain)),
        ),
    )
    .await;
    let mut findings = Vec::new();
    let (mut ip_lists, mut v6_lists) = (Vec::new(), Vec::new());
    for (zone, (four, six)) in ip_zones.into_iter().zip(ip_health) {
        findings.extend(health_finding(&zone, &four));
        if matches!(four, Health::Healthy) {
            findings.extend(health_finding(&zone, &six));
        }
        ip_lists.push((zone.clone(), four));
        v6_lists.push((zone, six));
    }
    let domain_lists: Vec<(String, Health)> = domain_zones.into_iter().zip(domain_health).collect();
    findings.extend(
        domain_lists
            .iter()
            .filter_map(|(zone, health)| health_finding(zone, health)),
    );
    let (ip_lists, v6_lists) = (&ip_lists, &v6_lists);
    let ip_checks = targets.iter().map(|t| {
        let key = reversed(&t.ip);
        async move {
            let lists = if t.ip.is_ipv6() { v6_lists } else { ip_lists };
            let why = if t.ip.is_loopback() {
                "a loopback address: receivers never see it, and 127.0.0.0/8 holds the lists' own test entries, \
                 so it is not looked up"
            } else if !lists.iter().any(|(_, h)| h.usable())
                && lists.iter().any(|(_, h)| matches!(h, Health::NoIpv6(_)))
            {
                "an IPv6 address, and none of the lists covers IPv6 (see dnsbl.health), so it is not looked up"
            } else {
                return check_key(resolver, "dnsbl.listed", t.subject(), &key, lists).await;
            };
            vec![Finding::new("dnsbl.listed", Status::Info, t.subject(), why)]
        }
    });
    let domain_check = check_key(
        resolver,
        "dnsbl.domain",
        domain.to_string(),
        domain.as_str(),
        &domain_lists,
    );
    let (ips, domain_findings) = join(join_all(ip_checks), domain_check).await;
    findings.extend(ips.into_iter().flatten());
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(|t| t.subject()).collect();
        findings.push(Finding::new(
            "dnsbl.listed",
            Status::Info,
            domain.to_string(),
            format!(
                "only the first {MAX_TARGETS} of {total} IPs are looked up (MX addresses first); not looked up: {}",
                names.join(", ")
            ),
        ));
    }
    findings.extend(domain_findings);
    findings
}

/// Asks every usable list about `key` (a reversed IP or a domain).
async fn check_key(
    resolver: &Resolver,
    id: &'static str,
    subject: String,
    key: &str,
    lists: &[(String, Health)],
) -> Vec<Finding> {
    let usable: Vec<&(String, Health)> = lists.iter().filter(|(_, h)| h.usable()).collect();
    let answers = join_all(usable.iter().map(|(zone, health)| async move {
        match health {
            Health::CannotTest(why) => Lookup::Failed(why.clone()),
            _ => lookup(resolver, &format!("{key}.{zone}")).await,
        }
    }))
    .await;
    let mut findings = Vec::new();
    let mut clean = Vec::new();
    for ((zone, health), answer) in usable.into_iter().zip(answers) {
        let name = format!("{key}.{zone}");
        let unknown = |detail: String| Finding::new(id, Status::Unknown, subject.as_str(), detail);
        match answer {
            Lookup::NotListed => clean.push(zone.as_str()),
            Lookup::Listed(codes) => {
                findings.push(listing(resolver, id, &subject, zone, &name, &codes).await)
            }
            Lookup::Refused(code) => findings.push(unknown(format!(
                "could not test on {zone}: {}",
                refusal(code)
            ))),
            Lookup::Odd(ip) => findings.push(unknown(format!(
                "could not test on {zone}: it answered {ip}, outside 127.0.0.0/8, which no working list does"
            ))),
            Lookup::Failed(why) if matches!(health, Health::CannotTest(_)) => {
                findings.push(unknown(format!("could not test on {zone}: {why}")))
            }
            Lookup::Failed(e) => {
                findings.push(Finding::unknown_dns(id, subject.as_str(), &format!("A {name}"), &e))
            }
        }
    }
    if !clean.is_empty() {
        findings.push(Finding::new(
            id,
            Status::Pass,
            subject,
            format!("not listed on {}", clean.join(", ")),
        ));
    }
    findings
}

/// The FAIL for a listing: codes and their meanings, and the list's TXT reason.
async fn listing(
    resolver: &Resolver,
    id: &'static str,
    subject: &str,
    zone: &str,
    name: &str,
    codes: &[Ipv4Addr],
) -> Finding {
    let reason = match resolver.txt(name).await {
        Ok(txt) if txt.is_empty() => "the list gives no reason (no TXT record)".to_string(),
        Ok(txt) => format!("reason: {}", txt.join(" | ")),
        Err(e) => format!("the list's reason could not be looked up ({e})"),
    };
    let shown: Vec<String> = codes
        .iter()
        .map(|c| format!("{c} ({})", meaning(zone, *c)))
        .collect();
    Finding::new(
        id,
        Status::Fail,
        subject,
        format!("listed on {zone}: {}; {reason}", shown.join(", ")),
    )
    .fix(delisting(zone, codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spamhaus_codes_have_meanings_and_other_lists_just_list() {
        let code = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(meaning("zen.spamhaus.org", code("127.0.0.2")).starts_with("SBL"));
        assert!(meaning("zen.spamhaus.org", code("127.0.0.4")).starts_with("XBL"));
        assert!(meaning("zen.spamhaus.org", code("127.0.0.11")).starts_with("PBL"));
        assert!(meaning("dbl.spamhaus.org", code("127.0.1.4")).contains("phishing"));
        assert_eq!(meaning("bl.spamcop.net", code("127.0.0.2")), "listed");
        assert!(delisting("zen.spamhaus.org", &[code("127.0.0.10")]).contains("PBL"));
    }

    #[test]
    fn ips_are_reversed_as_octets_and_nibbles() {
        assert_eq!(reversed(&"192.0.2.66".parse().unwrap()), "66.2.0.192");
        let v6 = reversed(&"2001:db8::1".parse().unwrap());
        assert!(
            v6.starts_with("1.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2"),
            "{v6}"
        );
    }
}
