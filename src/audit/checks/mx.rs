//! MX: records exist (a null MX means the domain takes no mail), each host has an address, none is a CNAME or an
//! IP literal. Ids: `mx.present`, `mx.address`, `mx.cname`, `mx.ip_literal`.

use std::net::IpAddr;

use crate::audit::{Finding, MxFacts, MxHost, Status};
use crate::dns::{Answer, RData, RecordType, Resolver};
use crate::model::DomainName;

fn fix_mx(domain: &DomainName) -> String {
    format!("{domain}. 3600 IN MX 10 mail.{domain}.")
}

/// Looks the MX records up and resolves every host (concurrently).
pub async fn check(resolver: &Resolver, domain: &DomainName) -> (Vec<Finding>, MxFacts) {
    let subject = domain.to_string();
    let mut findings = Vec::new();
    let mut facts = MxFacts::default();
    let mut records: Vec<(u16, String)> = match resolver
        .query(domain.as_str(), RecordType::MX)
        .await
    {
        Answer::Failed(e) => {
            findings.push(Finding::unknown_dns("mx.present", subject, "MX", &e));
            return (findings, facts);
        }
        Answer::NxDomain => {
            findings.push(
                Finding::new(
                    "mx.present",
                    Status::Fail,
                    subject,
                    "the domain does not exist in DNS (NXDOMAIN)",
                )
                .fix(fix_mx(domain)),
            );
            return (findings, facts);
        }
        Answer::NoData => {
            findings.push(
                Finding::new(
                    "mx.present",
                    Status::Fail,
                    subject,
                    "no MX records: senders fall back to the domain's own address, most receivers' spam filters \
                     distrust that",
                )
                .fix(fix_mx(domain)),
            );
            return (findings, facts);
        }
        Answer::Records { data, .. } => data
            .iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_string().trim_end_matches('.').to_string(),
                )),
                _ => None,
            })
            .collect(),
    };
    records.sort();
    // A hostile or broken zone must not make the auditor resolve (and later probe) hundreds of hosts.
    const MAX_HOSTS: usize = 10;
    let skipped = records.len().saturating_sub(MAX_HOSTS);
    records.truncate(MAX_HOSTS.max(1));
    if records.len() == 1 && (records[0].1.is_empty() || records[0].1 == ".") {
        facts.null_mx = true;
        findings.push(Finding::new(
            "mx.present",
            Status::Info,
            subject,
            "null MX (RFC 7505): the domain accepts no mail",
        ));
        return (findings, facts);
    }
    let listed: Vec<String> = records.iter().map(|(p, h)| format!("{p} {h}")).collect();
    findings.push(Finding::new(
        "mx.present",
        Status::Pass,
        subject,
        format!("MX: {}", listed.join(", ")),
    ));
    if skipped > 0 {
        findings.push(Finding::new(
            "mx.present",
            Status::Info,
            domain.to_string(),
            format!("{skipped} more MX hosts (lowest preference) were not checked"),
        ));
    }
    let lookups = records
        .iter()
        .map(|(pref, host)| resolve_host(resolver, *pref, host));
    for (host, host_findings) in futures_util::future::join_all(lookups).await {
        findings.extend(host_findings);
        if let Some(h) = host {
            facts.hosts.push(h);
        }
    }
    (findings, facts)
}

async fn resolve_host(
    resolver: &Resolver,
    preference: u16,
    host: &str,
) -> (Option<MxHost>, Vec<Finding>) {
    let mut findings = Vec::new();
    if host.parse::<IpAddr>().is_ok()
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
    {
        findings.push(
            Finding::new(
                "mx.ip_literal",
                Status::Fail,
                host,
                "an MX must name a host, not an IP address (RFC 5321 5.1); many senders will not deliver",
            )
            .fix(format!("point the MX at a host name with A/AAAA records for {host}")),
        );
        return (None, findings);
    }
    let (v4, v6) = futures_util::future::join(
        resolver.query(host, RecordType::A),
        resolver.query(host, RecordType::AAAA),
    )
    .await;
    let mut ips = Vec::new();
    let mut failed = None;
    let mut cname = None;
    for (family, answer) in [("A", &v4), ("AAAA", &v6)] {
        match answer {
            Answer::Records { data, cname: c } => {
                cname = cname.or(c.clone());
                ips.extend(data.iter().filter_map(RData::ip_addr));
            }
            Answer::Failed(e) => failed = Some((family, e.clone())),
            Answer::NxDomain | Answer::NoData => {}
        }
    }
    // One family answered, the other did not: its addresses (and their PTR, blocklist and SMTP checks) are
    // unknown, which must show rather than pass silently.
    if let (false, Some((family, e))) = (ips.is_empty(), &failed) {
        findings.push(Finding::unknown_dns("mx.address", host, family, e));
    }
    if let Some(target) = &cname {
        findings.push(
            Finding::new(
                "mx.cname",
                Status::Fail,
                host,
                format!("the MX host is an alias (CNAME to {target}); RFC 5321 forbids it and some senders refuse"),
            )
            .fix(format!("point the MX straight at {}", target.trim_end_matches('.'))),
        );
    }
    if ips.is_empty() {
        let finding = match failed {
            Some((_, e)) => Finding::unknown_dns("mx.address", host, "A/AAAA", &e),
            None => Finding::new(
                "mx.address",
                Status::Fail,
                host,
                "the MX host has no A or AAAA record",
            )
            .fix(format!("{host}. 3600 IN A <your server's IPv4 address>")),
        };
        findings.push(finding);
        return (None, findings);
    }
    let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
    findings.push(Finding::new(
        "mx.address",
        Status::Pass,
        host,
        format!("preference {preference}, addresses {}", shown.join(", ")),
    ));
    (
        Some(MxHost {
            name: host.to_string(),
            preference,
            ips,
        }),
        findings,
    )
}
