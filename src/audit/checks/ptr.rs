//! Per-IP identity, as a receiving server checks the connecting IP: for every MX address and every outbound IP
//! (`--ip`, else `server.public_ips`), the IP has reverse DNS, the reverse name resolves back to the same IP, and
//! the name does not look like an ISP's name for a dial-up or pool address. IPv6 addresses are checked in nibble
//! form under `ip6.arpa`, never skipped. Every IP is checked concurrently.
//!
//! Ids:
//! - `ptr.exists`: the IP has a PTR record. FAIL on NXDOMAIN or no data; UNKNOWN when DNS did not answer.
//! - `ptr.fcrdns`: a PTR name resolves (A for IPv4, AAAA for IPv6) back to the same IP (forward-confirmed
//!   reverse DNS). FAIL when none does; UNKNOWN when the forward lookup got no answer.
//! - `ptr.generic`: WARN when the PTR name looks generic: it holds the IP's digits (dotted, dashed, reversed,
//!   zero-padded or hex) or a word such as `dynamic`, `dyn`, `pool`, `dsl`, `dhcp`, `cable`, `customer`,
//!   `broadband`, `static-ip` or a label starting `ip-`; PASS otherwise.
//!
//! The subject is `HOST (IP)` for an MX address and the bare IP for an outbound IP that is not also an MX address.
//! `fcrdns` and `generic` are reported only when a PTR exists.
//!
//! A loopback address (127.0.0.0/8, ::1) gets one `ptr.exists` INFO and nothing else: receivers never see it,
//! and the resolver (hickory, following RFC 6761) answers its reverse name itself with `localhost.` without
//! asking any server, so there is nothing to test.

use std::net::IpAddr;

use futures_util::future::join_all;

use crate::audit::{Context, Finding, Status};
use crate::dns::reverse_name;
use crate::dns::{Answer, RData, RecordType, Resolver};
use crate::model::DomainName;
use crate::records::TTL;

/// One IP whose identity receivers check, with the MX host it belongs to (`None` for an outbound-only IP).
#[derive(Debug, Clone)]
pub struct Target {
    /// The address.
    pub ip: IpAddr,
    /// The MX host with this address, if any.
    pub host: Option<String>,
}

impl Target {
    /// `HOST (IP)` for an MX address, the bare IP otherwise.
    pub fn subject(&self) -> String {
        match &self.host {
            Some(host) => format!("{host} ({})", self.ip),
            None => self.ip.to_string(),
        }
    }
}

/// Every MX address, then every outbound IP not already among them; each IP once (shared with the DNSBL check).
pub fn targets(ctx: &Context<'_>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mx = ctx
        .mx
        .addresses()
        .into_iter()
        .map(|(host, ip)| (Some(host), ip));
    let outbound = ctx.options.ips.iter().map(|ip| (None, *ip));
    for (host, ip) in mx.chain(outbound) {
        if !out.iter().any(|t| t.ip == ip) {
            out.push(Target { ip, host });
        }
    }
    out
}

/// The name an outbound IP's PTR should carry: `server.hostname`, else the first MX host, else `mail.DOMAIN`.
fn outbound_name(ctx: &Context<'_>, domain: &DomainName) -> String {
    ctx.known
        .hostname
        .clone()
        .or_else(|| ctx.mx.hosts.first().map(|h| h.name.clone()))
        .unwrap_or_else(|| format!("mail.{domain}"))
}

/// Checks every target IP concurrently.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let fallback = outbound_name(ctx, domain);
    let targets = targets(ctx);
    let checks = targets
        .iter()
        .map(|t| check_ip(ctx.resolver, t, t.host.as_deref().unwrap_or(&fallback)));
    join_all(checks).await.into_iter().flatten().collect()
}

/// The PTR record that fixes `ip`, with where it must be set.
fn ptr_fix(ip: &IpAddr, host: &str) -> String {
    format!(
        "{} {TTL} IN PTR {}. (set by whoever owns the IP, usually your hosting provider, not in your zone)",
        reverse_name(ip),
        host.trim_end_matches('.')
    )
}

async fn check_ip(resolver: &Resolver, target: &Target, host: &str) -> Vec<Finding> {
    let subject = target.subject();
    let ip = target.ip;
    if ip.is_loopback() {
        return vec![Finding::new(
            "ptr.exists",
            Status::Info,
            subject,
            "a loopback address: receivers never see it, and the resolver answers its reverse name itself \
             (RFC 6761), so it is not checked",
        )];
    }
    let reverse = reverse_name(&ip);
    let names: Vec<String> = match resolver.query(&reverse, RecordType::PTR).await {
        Answer::Failed(e) => {
            let what = format!("PTR {reverse}");
            return vec![Finding::unknown_dns("ptr.exists", subject, &what, &e)];
        }
        Answer::NxDomain | Answer::NoData => Vec::new(),
        Answer::Records { data, .. } => data
            .iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(p.0.to_string().trim_end_matches('.').to_lowercase()),
                _ => None,
            })
            .collect(),
    };
    if names.is_empty() {
        return vec![
            Finding::new(
                "ptr.exists",
                Status::Fail,
                subject,
                format!(
                    "no PTR record at {reverse}: many receivers reject mail from an IP without reverse DNS"
                ),
            )
            .fix(ptr_fix(&ip, host)),
        ];
    }
    let mut findings = vec![Finding::new(
        "ptr.exists",
        Status::Pass,
        subject.clone(),
        format!("PTR {}", names.join(", ")),
    )];
    findings.push(fcrdns(resolver, ip, &names, &subject, host).await);
    findings.push(match names.iter().find_map(|n| generic_reason(n, &ip)) {
        Some(reason) => Finding::new(
            "ptr.generic",
            Status::Warn,
            subject,
            format!(
                "the PTR name looks like an ISP's generic name ({reason}): many receivers score or refuse mail \
                 from such hosts"
            ),
        )
        .fix(ptr_fix(&ip, host)),
        None => Finding::new(
            "ptr.generic",
            Status::Pass,
            subject,
            format!("{} does not look generic", names.join(", ")),
        ),
    });
    findings
}

/// Forward-confirms the PTR names: PASS when one of them has `ip` among its A (IPv4) or AAAA (IPv6) records.
async fn fcrdns(
    resolver: &Resolver,
    ip: IpAddr,
    names: &[String],
    subject: &str,
    host: &str,
) -> Finding {
    let rtype = if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    let answers = join_all(names.iter().map(|n| resolver.query(n, rtype))).await;
    let mut seen = Vec::new();
    let mut failed = None;
    for (name, answer) in names.iter().zip(answers) {
        match answer {
            Answer::Records { data, .. } => {
                let ips: Vec<IpAddr> = data.iter().filter_map(RData::ip_addr).collect();
                if ips.contains(&ip) {
                    return Finding::new(
                        "ptr.fcrdns",
                        Status::Pass,
                        subject,
                        format!("{name} resolves back to {ip}"),
                    );
                }
                let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
                seen.push(format!("{name} resolves to {}", shown.join(", ")));
            }
            Answer::NxDomain => seen.push(format!("{name} does not exist")),
            Answer::NoData => seen.push(format!("{name} has no {rtype} record")),
            Answer::Failed(e) => failed = Some((name, e)),
        }
    }
    if let Some((name, e)) = failed {
        return Finding::unknown_dns("ptr.fcrdns", subject, &format!("{rtype} {name}"), &e);
    }
    let first = names.first().map(String::as_str).unwrap_or(host);
    Finding::new(
        "ptr.fcrdns",
        Status::Fail,
        subject,
        format!(
            "the PTR name does not resolve back to {ip} ({}): receivers treat the reverse DNS as forged",
            seen.join("; ")
        ),
    )
    .fix(format!(
        "{first}. {TTL} IN {rtype} {ip} (in the zone of {first}), or point the PTR at a name that resolves to {ip}"
    ))
}

/// Words ISPs put in the reverse names of dial-up, DSL, cable and pool addresses (matched as whole words).
const GENERIC_WORDS: &[&str] = &[
    "dynamic",
    "dyn",
    "dynip",
    "pool",
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "dhcp",
    "cable",
    "customer",
    "cust",
    "broadband",
    "dialup",
    "dial",
    "ppp",
    "pppoe",
    "residential",
    "unassigned",
];

/// Why a PTR name looks generic, or `None` when it looks like a mail server's own name.
pub fn generic_reason(name: &str, ip: &IpAddr) -> Option<String> {
    let name = name.to_ascii_lowercase();
    if let Some(form) = ip_forms(ip).into_iter().find(|f| name.contains(f.as_str())) {
        return Some(format!("it contains the IP's digits as '{form}'"));
    }
    let words = name
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    for word in words {
        if GENERIC_WORDS.contains(&word) {
            return Some(format!("it contains '{word}'"));
        }
    }
    if name.contains("static-ip") {
        return Some("it contains 'static-ip'".into());
    }
    if name.split('.').any(|label| label.starts_with("ip-")) {
        return Some("a label starts with 'ip-'".into());
    }
    None
}

/// The ways an IP's digits show up in generic reverse names.
fn ip_forms(ip: &IpAddr) -> Vec<String> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let mut forms = Vec::new();
            for order in [[o[0], o[1], o[2], o[3]], [o[3], o[2], o[1], o[0]]] {
                for sep in ["-", ".", "_"] {
                    let parts: Vec<String> = order.iter().map(ToString::to_string).collect();
                    forms.push(parts.join(sep));
                }
                forms.push(order.iter().map(|b| format!("{b:03}")).collect());
            }
            forms.push(format!("{:08x}", u32::from(*v4)));
            forms
        }
        IpAddr::V6(v6) => {
            let full: String = v6.segments().iter().map(|s| format!("{s:04x}")).collect();
            let dashed: Vec<String> = v6.segments().iter().map(|s| format!("{s:x}")).collect();
            vec![full, dashed.join("-"), v6.to_string().replace(':', "-")]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(name: &str, ip: &str) -> bool {
        generic_reason(name, &ip.parse().unwrap()).is_some()
    }

    #[test]
    fn generic_names_are_recognised() {
        assert!(generic("192-0-2-30.example.net", "192.0.2.30"));
        assert!(generic("30.2.0.192.static.example.net", "192.0.2.30"));
        assert!(generic("host192000002030.example.net", "192.0.2.30"));
        assert!(generic("c000021e.example.net", "192.0.2.30"));
        assert!(generic("mx.dynamic.example.net", "192.0.2.30"));
        assert!(generic("adsl-7.example.net", "192.0.2.30"));
        assert!(generic("ip-10-1-1-1.example.net", "192.0.2.30"));
        assert!(generic("2001-db8--25.example.net", "2001:db8::25"));
    }

    #[test]
    fn mail_server_names_are_not_generic() {
        assert!(!generic("mx.example.org", "192.0.2.30"));
        assert!(!generic("mail.liverpool.example", "192.0.2.30"));
        assert!(!generic("smtp2.example.org", "192.0.2.30"));
        assert!(!generic("mx.example.org", "2001:db8::25"));
    }
}
