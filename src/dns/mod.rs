//! The one DNS resolver of mailctl, built from configuration.
//!
//! Every lookup goes through [`Resolver`]: the system resolver by default, or one nameserver named with
//! `--nameserver IP[:PORT]` / `[dns] nameserver`, which is how tests point mailctl at their own authoritative
//! server on loopback. The resolver is mail-auth's, so DKIM/SPF/DMARC verification and mailctl's own lookups share
//! one cache. Lookups distinguish "the name has no such record" (an answer) from "DNS did not answer" (an
//! error, exit 3): a timeout is never reported as a missing record.

pub mod records;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::proto::rr::RData;

use crate::error::{Error, Result};

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

impl Resolver {
    /// The system resolver, or `nameserver` alone when given.
    pub fn new(nameserver: Option<&str>) -> Result<Resolver> {
        let auth = match nameserver {
            Some(ns) => {
                let addr = parse_nameserver(ns)?;
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for conn in &mut server.connections {
                    conn.port = addr.port();
                }
                let mut opts = ResolverOpts::default();
                opts.timeout = Duration::from_secs(3);
                opts.attempts = 2;
                opts.use_hosts_file = ResolveHosts::Never;
                // DKIM keys exceed 512 bytes: EDNS0 lets them arrive over UDP without a TCP retry.
                opts.edns0 = true;
                MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![server]), opts)
            }
            None => MessageAuthenticator::new_system_conf(),
        }
        .map_err(|e| Error::Dns {
            name: "(resolver setup)".into(),
            reason: e.to_string(),
        })?;
        Ok(Resolver {
            auth: Arc::new(auth),
        })
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
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        match self.auth.resolver().txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(Error::Dns {
                name: fqdn,
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_parse_with_and_without_port() {
        assert_eq!(parse_nameserver("127.0.0.1").unwrap().port(), 53);
        assert_eq!(parse_nameserver("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_nameserver("[::1]:5353").unwrap().port(), 5353);
        assert!(parse_nameserver("ns.example").is_err());
    }
}
