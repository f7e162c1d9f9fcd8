//! The DNS records a mail domain must publish, built from what mailctl knows (DKIM keys, IPs, host name).
//!
//! Rendered as a BIND zone fragment (which a real DNS server loads), JSON, or a table. Records that belong to
//! another zone (the PTR of each IP, an MX host outside the domain) are listed with a note, and in zone format
//! as comments, since they are published elsewhere: the PTR by whoever owns the IP, usually the hosting provider.

use std::net::IpAddr;

use serde::Serialize;

use crate::dkim::{self, KeyAlgorithm};
use crate::dns::reverse_name;
use crate::model::{DomainName, RecordName, Selector};

/// TTL of every generated record.
pub const TTL: u32 = 3600;

/// What the records are built from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The mail domain.
    pub domain: DomainName,
    /// The MX host (the server's host name).
    pub mx_host: DomainName,
    /// Public IPs of the server.
    pub ips: Vec<IpAddr>,
    /// Published DKIM keys: selector, algorithm, public key, state.
    pub dkim: Vec<(Selector, KeyAlgorithm, String, String)>,
    /// DMARC `p=`.
    pub dmarc_policy: String,
    /// Aggregate report address for DMARC and TLS-RPT.
    pub report_address: String,
    /// MTA-STS mode: `testing` or `enforce`.
    pub mta_sts_mode: String,
    /// The relay host the domain's mail leaves through, if any.
    pub relay: Option<Relayed>,
    /// Where mail clients connect (`[server.https]`, `[server.listen]`).
    pub clients: Clients,
}

/// Where mail clients connect, for the SRV records (RFC 6186, RFC 8314).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clients {
    /// The IMAP server, when it is not the MX host.
    pub imap_host: Option<DomainName>,
    /// Its implicit-TLS port.
    pub imap_port: u16,
    /// The submission port (STARTTLS).
    pub submission_port: u16,
    /// The implicit-TLS submission port, when that listener runs.
    pub submissions_port: Option<u16>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            imap_host: None,
            imap_port: 993,
            submission_port: 587,
            submissions_port: Some(465),
        }
    }
}

/// How a domain's outbound mail reaches the world when it goes through a relay host (smarthost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The relay's URL, as configured (no credentials).
    pub url: String,
    /// Its host name or IP address.
    pub host: String,
    /// Whether the host is on this machine (a local relay sends from this machine's addresses).
    pub local: bool,
    /// The provider's SPF `include:` domain, if configured.
    pub spf_include: Option<RecordName>,
}

/// One record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Absolute owner name, with the trailing dot.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: &'static str,
    /// TTL in seconds.
    pub ttl: u32,
    /// The value (TXT values unsplit).
    pub value: String,
    /// What it is for, or where it must be set.
    pub note: String,
    /// Whether the record belongs in the domain's own zone.
    pub in_zone: bool,
}

/// Everything a domain must publish.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSet {
    /// The domain.
    pub domain: String,
    /// The records.
    pub records: Vec<Record>,
    /// Body of `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
    pub mta_sts_policy: String,
    /// Things the admin must know (missing IPs ...).
    pub notes: Vec<String>,
}

/// The MTA-STS policy file of a domain whose MX is `mx_host` (what `dns records` prints and `serve` serves at
/// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`).
pub fn mta_sts_policy(mode: &str, mx_host: &str) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: {mx_host}\nmax_age: 604800\n")
}

/// A `mailto:` URI for DMARC/TLS-RPT: characters that mean something in a URI (or to DMARC: `!` size limits,
/// `,` lists) are percent-encoded (RFC 6068).
pub fn mailto(address: &str) -> String {
    let encoded: String = address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~+@".contains(c) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32)
            }
        })
        .collect();
    format!("mailto:{encoded}")
}

/// Addresses that cannot be a mail server's public address: receivers would never see mail from them.
fn not_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn in_domain(name: &str, domain: &DomainName) -> bool {
    let apex = format!("{domain}.");
    name == apex || name.ends_with(&format!(".{apex}"))
}

/// Builds the record set.
pub fn build(i: &Inputs) -> RecordSet {
    let d = &i.domain;
    let apex = format!("{d}.");
    let mx = format!("{}.", i.mx_host);
    let mut records = Vec::new();
    let mut push = |name: String, rtype, value: String, note: &str| {
        let in_zone = in_domain(&name, d);
        records.push(Record {
            name,
            rtype,
            ttl: TTL,
            value,
            note: note.to_string(),
            in_zone,
        });
    };
    push(
        apex.clone(),
        "MX",
        format!("10 {mx}"),
        "where other servers deliver mail for the domain",
    );
    for ip in &i.ips {
        let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
        push(mx.clone(), rtype, ip.to_string(), "the MX host's address");
    }
    let ip_terms: String = i
        .ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!(" ip4:{v4}"),
            IpAddr::V6(v6) => format!(" ip6:{v6}"),
        })
        .collect();
    let include = i.relay.as_ref().and_then(|r| r.spf_include.as_ref());
    match include {
        Some(include) => push(
            apex.clone(),
            "TXT",
            format!("v=spf1 mx{ip_terms} include:{include} -all"),
            "SPF: this server and the relay host's provider may send mail from the domain",
        ),
        None => push(
            apex.clone(),
            "TXT",
            format!("v=spf1 mx{ip_terms} -all"),
            "SPF: only this server may send mail from the domain",
        ),
    }
    if mx != apex {
        let helo = if i.ips.is_empty() {
            "v=spf1 a -all".to_string()
        } else {
            format!("v=spf1{ip_terms} -all")
        };
        push(
            mx.clone(),
            "TXT",
            helo,
            "SPF for the HELO name, checked on bounces (RFC 7208 2.3)",
        );
    }
    for (selector, algorithm, public, state) in &i.dkim {
        push(
            selector.record_name(d),
            "TXT",
            dkim::txt_value(*algorithm, public),
            &match state.as_str() {
                "pending" => {
                    "DKIM key (pending: publish it, then `mailctl dkim activate`)".to_string()
                }
                "retiring" => {
                    "DKIM key (retiring: keep until mail signed with it is delivered)".to_string()
                }
                _ => "DKIM key (active: signs new mail)".to_string(),
            },
        );
    }
    push(
        format!("_dmarc.{apex}"),
        "TXT",
        format!(
            "v=DMARC1; p={}; rua={}",
            i.dmarc_policy,
            mailto(&i.report_address)
        ),
        "DMARC policy and aggregate reports",
    );
    let policy = mta_sts_policy(&i.mta_sts_mode, i.mx_host.as_str());
    let id: String = crate::tls::leaf::sha256_hex(policy.as_bytes())[..20].to_string();
    push(
        format!("_mta-sts.{apex}"),
        "TXT",
        format!("v=STSv1; id={id}"),
        "MTA-STS: the id changes whenever the policy does",
    );
    for ip in &i.ips {
        let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
        push(
            format!("mta-sts.{apex}"),
            rtype,
            ip.to_string(),
            "serves the MTA-STS policy over HTTPS",
        );
    }
    for ip in &i.ips {
        let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
        push(
            format!("autoconfig.{apex}"),
            rtype,
            ip.to_string(),
            "mail client setup (Thunderbird autoconfig) over HTTPS",
        );
    }
    // Where mail clients find the servers (RFC 6186, RFC 8314: implicit TLS preferred).
    let c = &i.clients;
    let imap = c.imap_host.as_ref().unwrap_or(&i.mx_host);
    if let Some(port) = c.submissions_port {
        push(
            format!("_submissions._tcp.{apex}"),
            "SRV",
            format!("0 1 {port} {}.", i.mx_host),
            "mail clients: submission over TLS (RFC 8314)",
        );
    }
    push(
        format!("_submission._tcp.{apex}"),
        "SRV",
        format!("1 1 {} {}.", c.submission_port, i.mx_host),
        "mail clients: submission with STARTTLS (RFC 6186)",
    );
    push(
        format!("_imaps._tcp.{apex}"),
        "SRV",
        format!("0 1 {} {imap}.", c.imap_port),
        "mail clients: IMAP over TLS (RFC 6186)",
    );
    push(
        format!("_smtp._tls.{apex}"),
        "TXT",
        format!("v=TLSRPTv1; rua={}", mailto(&i.report_address)),
        "TLS-RPT: where receivers report TLS failures",
    );
    let ptr_note = match &i.relay {
        None => "set by whoever owns the IP (your hosting provider), not in your zone",
        Some(_) => {
            "set by whoever owns the IP, not in your zone; with the relay host, receivers see the relay's IP, \
             so this PTR only matters for mail this server sends itself"
        }
    };
    for ip in &i.ips {
        push(reverse_name(ip), "PTR", mx.clone(), ptr_note);
    }
    let mut notes = Vec::new();
    if let Some(relay) = &i.relay {
        notes.push(format!(
            "mail from {d} leaves through the relay host {}: receivers check the relay's IP (SPF, PTR, \
             blocklists), not this server's",
            relay.url
        ));
        if relay.spf_include.is_none() {
            notes.push(format!(
                "no SPF include for the relay: set spf_include ([server.outbound.relay] or `mailctl relay set \
                 {d} URL --spf-include DOMAIN`) to the SPF domain the provider documents, or receivers' SPF \
                 check of {d} fails for relayed mail"
            ));
        }
    }
    if i.ips.is_empty() {
        notes.push(format!(
            "no IPs known: pass --ip or set server.public_ips to get A/AAAA, SPF ip terms and PTR for {}",
            i.mx_host
        ));
    }
    for ip in i.ips.iter().filter(|ip| not_public(ip)) {
        notes.push(format!(
            "{ip} is not a public address: receivers will see your server under another IP"
        ));
    }
    if let Some((_, report_domain)) = i.report_address.rsplit_once('@')
        && !in_domain(&format!("{report_domain}."), d)
    {
        notes.push(format!(
            "reports go to {report_domain}, outside {d}: that domain must publish \
             {d}._report._dmarc.{report_domain}. TXT \"v=DMARC1\" to accept them (RFC 7489 7.1)"
        ));
    }
    if !in_domain(&mx, d) {
        notes.push(format!(
            "the MX host {} is outside {d}: publish its A/AAAA records in its own zone",
            i.mx_host
        ));
    }
    RecordSet {
        domain: d.to_string(),
        records,
        mta_sts_policy: policy,
        notes,
    }
}

/// Renders a BIND zone fragment. Out-of-zone records and the MTA-STS policy are comments.
pub fn to_zone(set: &RecordSet) -> String {
    let mut out = format!(
        "; DNS records for {} generated by mailctl. Paste into the zone of {}.\n",
        set.domain, set.domain
    );
    for note in &set.notes {
        out.push_str(&format!("; NOTE: {note}\n"));
    }
    for r in &set.records {
        let rdata = if r.rtype == "TXT" {
            dkim::zone_txt_rdata(&r.value)
        } else {
            r.value.clone()
        };
        let line = format!("{}\t{}\tIN\t{}\t{}", r.name, r.ttl, r.rtype, rdata);
        out.push_str(&format!("; {}\n", r.note));
        if r.in_zone {
            out.push_str(&line);
        } else {
            out.push_str(&format!("; {}", line.replace('\n', "\n; ")));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "; MTA-STS policy: serve at https://mta-sts.{}/.well-known/mta-sts.txt with a valid certificate\n",
        set.domain
    ));
    for line in set.mta_sts_policy.lines() {
        out.push_str(&format!(";   {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_addresses_are_uri_encoded() {
        assert_eq!(mailto("dmarc+x@example.org"), "mailto:dmarc+x@example.org");
        assert_eq!(mailto("a?b!c@example.org"), "mailto:a%3Fb%21c@example.org");
    }

    #[test]
    fn private_and_mapped_addresses_are_not_public() {
        for ip in [
            "10.0.0.1",
            "127.0.0.1",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "::ffff:192.0.2.1",
        ] {
            assert!(not_public(&ip.parse().unwrap()), "{ip}");
        }
        assert!(!not_public(&"192.0.2.1".parse().unwrap()));
        assert!(!not_public(&"2001:db8::1".parse().unwrap()));
    }
}
