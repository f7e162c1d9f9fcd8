//! The one DNS resolver of mailctl, built from configuration.
//!
//! Every lookup goes through [`Resolver`]: the system resolver by default, or one nameserver named with
//! `--nameserver IP[:PORT]` / `[dns] nameserver`, which is how tests point mailctl at their own authoritative
//! server on loopback. The resolver is mail-auth's, so DKIM/SPF/DMARC verification and mailctl's own lookups share
//! one cache. Lookups distinguish "the name has no such record" (an answer) from "DNS did not answer" (an
//! error, exit 3): a timeout is never reported as a missing record.
//!
//! [`txt`] holds the `tag=value` syntax TXT records of mail share; [`dmarc`] is DMARC policy discovery (the
//! RFC 9989 DNS tree walk, the organizational domain, the policy that applies), the one implementation the
//! audit and `mailctl serve` use.

pub mod dmarc;
pub mod txt;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
pub use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};

use crate::error::{Error, Result};

/// The reverse-DNS name of an IP: `4.3.2.1.in-addr.arpa.` or the nibble form under `ip6.arpa.`.
pub fn reverse_name(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s + "ip6.arpa."
        }
    }
}

/// A resolver shared by everything that looks names up during one run.
#[derive(Clone)]
pub struct Resolver {
    auth: Arc<MessageAuthenticator>,
}

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 when omitted).
pub fn parse_nameserver(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(Error::usage(format!(
        "invalid nameserver '{}': expected IP or IP:PORT",
        crate::model::printable(s)
    )))
}

/// The answer to one query, as a receiving server would classify it.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Records of the asked type (CNAMEs followed); `cname` is the first alias on the way, if any.
    Records {
        /// The records of the asked type.
        data: Vec<RData>,
        /// The name the queried name is an alias for.
        cname: Option<String>,
    },
    /// The name does not exist.
    NxDomain,
    /// The name exists but has no records of this type.
    NoData,
    /// No usable answer after the retry: timeout, SERVFAIL, REFUSED. Never to be read as "no record".
    Failed(String),
}

impl Answer {
    /// The records, empty for NXDOMAIN, NODATA and failures.
    pub fn data(&self) -> &[RData] {
        match self {
            Answer::Records { data, .. } => data,
            _ => &[],
        }
    }
}

/// hickory's account of a failed lookup, said once: `DNS error: error response: Query Refused` becomes
/// `the server answered Query Refused` (the callers already say it was a DNS lookup that failed).
fn failure_text(text: &str) -> String {
    let text = text.strip_prefix("DNS error: ").unwrap_or(text);
    match text.strip_prefix("error response: ") {
        Some(code) => format!("the server answered {code}"),
        None => text.to_string(),
    }
}

/// The TXT records among `data`, each with its character-strings joined (how DKIM, SPF and DMARC read them).
pub fn txt_strings(data: &[RData]) -> Vec<String> {
    data.iter()
        .filter_map(|d| match d {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// Default per-query timeout; with one retry a dead server costs twice this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl Resolver {
    /// The system resolver, or `nameserver` alone when given.
    pub fn new(nameserver: Option<&str>) -> Result<Resolver> {
        let servers: Vec<&str> = nameserver.into_iter().collect();
        Resolver::build(&servers, DEFAULT_TIMEOUT)
    }

    /// The system resolver when `nameservers` is empty, else exactly those servers; each query is tried twice
    /// (one retry) with `timeout` per try. `/etc/hosts` is never consulted.
    pub fn build(nameservers: &[&str], timeout: Duration) -> Result<Resolver> {
        let setup_error = |e: &dyn std::fmt::Display| Error::Dns {
            name: "(resolver setup)".into(),
            reason: e.to_string(),
        };
        let (config, mut opts) = if nameservers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| setup_error(&e))?
        } else {
            let mut servers = Vec::new();
            for ns in nameservers {
                let addr = parse_nameserver(ns)?;
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for conn in &mut server.connections {
                    conn.port = addr.port();
                }
                servers.push(server);
            }
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        // What the world sees is DNS, not this machine's /etc/hosts (which often names the server itself).
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = timeout;
        // `attempts` counts retries: one retry, so a dead server costs two timeouts.
        opts.attempts = 1;
        // DKIM keys exceed 512 bytes: EDNS0 lets them arrive over UDP without a TCP retry.
        opts.edns0 = true;
        let auth = MessageAuthenticator::new(config, opts).map_err(|e| setup_error(&e))?;
        Ok(Resolver {
            auth: Arc::new(auth),
        })
    }

    /// One query of `rtype` at `name`, classified (see [`Answer`]).
    pub async fn query(&self, name: &str, rtype: RecordType) -> Answer {
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        match self.auth.resolver().lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) => {
                let mut cname = None;
                let mut data = Vec::new();
                for r in lookup.answers() {
                    match &r.data {
                        RData::CNAME(c) if rtype != RecordType::CNAME => {
                            cname.get_or_insert_with(|| c.0.to_string());
                        }
                        d if d.record_type() == rtype => data.push(d.clone()),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records { data, cname }
                }
            }
            Err(e) if e.is_nx_domain() => Answer::NxDomain,
            Err(e) if e.is_no_records_found() => Answer::NoData,
            Err(e) => Answer::Failed(failure_text(&e.to_string())),
        }
    }

    /// The A and AAAA addresses of `name`, looked up concurrently, IPv4 first, each once. One family failing
    /// while the other answers is not an error (the addresses found are used); an empty list means the name has
    /// none; the error is the reason neither lookup got an answer.
    pub async fn addresses(&self, name: &str) -> std::result::Result<Vec<IpAddr>, String> {
        let (v4, v6) = futures_util::future::join(
            self.query(name, RecordType::A),
            self.query(name, RecordType::AAAA),
        )
        .await;
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut failed = None;
        for answer in [v4, v6] {
            match answer {
                Answer::Records { data, .. } => {
                    for ip in data.iter().filter_map(RData::ip_addr) {
                        if !ips.contains(&ip) {
                            ips.push(ip);
                        }
                    }
                }
                Answer::Failed(e) => failed = Some(e),
                Answer::NxDomain | Answer::NoData => {}
            }
        }
        match failed {
            Some(e) if ips.is_empty() => Err(e),
            _ => Ok(ips),
        }
    }

    /// The flag wins over `[dns] nameserver` in the config.
    pub fn from_config(config: &crate::config::Config, flag: Option<&str>) -> Result<Resolver> {
        Resolver::new(flag.or(config.nameserver.as_deref()))
    }

    /// mail-auth's authenticator over this resolver (for DKIM, SPF and DMARC checks).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// The TXT records at `name`, each with its strings joined. An empty list means the name has no TXT
    /// records (NXDOMAIN or no data); a timeout or server failure is an error.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>> {
        self.txt_or_reason(name).await.map_err(|reason| Error::Dns {
            name: name.to_string(),
            reason,
        })
    }

    /// [`Resolver::txt`] for callers that report a failed lookup rather than fail with it (the audit, the
    /// MTA-STS policy of a delivery): the error is the reason the lookup got no answer.
    pub async fn txt_or_reason(&self, name: &str) -> std::result::Result<Vec<String>, String> {
        match self.query(name, RecordType::TXT).await {
            Answer::Records { data, .. } => Ok(txt_strings(&data)),
            Answer::NxDomain | Answer::NoData => Ok(Vec::new()),
            Answer::Failed(reason) => Err(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_said_once() {
        assert_eq!(
            failure_text("DNS error: error response: Query Refused"),
            "the server answered Query Refused"
        );
        assert_eq!(failure_text("request timed out"), "request timed out");
    }

    #[test]
    fn nameservers_parse_with_and_without_port() {
        assert_eq!(parse_nameserver("127.0.0.1").unwrap().port(), 53);
        assert_eq!(parse_nameserver("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_nameserver("[::1]:5353").unwrap().port(), 5353);
        assert!(parse_nameserver("ns.example").is_err());
    }

    #[test]
    fn reverse_names_cover_ipv4_and_ipv6_nibbles() {
        assert_eq!(
            reverse_name(&"203.0.113.7".parse().unwrap()),
            "7.113.0.203.in-addr.arpa."
        );
        let v6 = reverse_name(&"2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa."), "{v6}");
    }
}
