//! Relay hosts (smarthosts): instead of the recipients' MX hosts, outbound mail goes to one server that sends
//! it on, from an IP with a good PTR and reputation. The way out for a home or cloud server whose port 25 is
//! blocked or whose PTR cannot be set.
//!
//! A relay is a URL (`smtp://HOST[:PORT]`: STARTTLS, port 587 by default; `smtps://HOST[:PORT]`: implicit TLS,
//! 465), a TLS requirement (`required`: the relay's certificate must be valid for HOST, verified against
//! webpki-roots plus an optional CA file; `none`: only for a relay on loopback), and optional credentials
//! (AUTH PLAIN or LOGIN, never sent without TLS). One relay can be configured for everything
//! (`[server.outbound.relay]`), and one per sender domain in the database (`mailctl relay set`), so every node
//! agrees; a domain's route wins over the global one.
//!
//! Delivery through a relay ([`deliver`]) keeps the queue's semantics: 4xx replies and connection failures are
//! retried, 5xx replies fail the recipient (a bounce). A failed AUTH or a failed TLS handshake with the relay
//! is the admin's problem, never the users': the mail stays queued, the log says so loudly (ERROR) and
//! `mailctl_outbound_relay_failures_total{reason}` counts it. DKIM signing stays local (messages are signed when
//! they are queued).

pub mod deliver;
pub mod routes;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::RelaySection;
use crate::error::{Error, Result};
use crate::model::RecordName;
use crate::records::Relayed;
use crate::store::RelayRouteRow;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `smtp://`: plain connection, then STARTTLS.
    Starttls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// Whether TLS with the relay is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// A verified certificate for the relay's host name (the default).
    Required,
    /// No TLS: only a relay on this machine.
    None,
}

/// A relay's address, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// STARTTLS or implicit TLS.
    pub scheme: Scheme,
    /// Host name or IP address (lower case; IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl RelayUrl {
    /// Parses `smtp://HOST[:PORT]` or `smtps://HOST[:PORT]`. No user name, password, path or query: credentials
    /// never live in a URL (it is printed).
    pub fn parse(text: &str) -> std::result::Result<RelayUrl, String> {
        let url =
            url::Url::parse(text.trim()).map_err(|e| format!("{:?} is not a URL: {e}", text))?;
        let (scheme, default_port) = match url.scheme() {
            "smtp" => (Scheme::Starttls, 587),
            "smtps" => (Scheme::Implicit, 465),
            other => {
                return Err(format!(
                    "unknown scheme {other:?}: use smtp:// (STARTTLS) or smtps:// (implicit TLS)"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials do not belong in the URL: use username and a password file".into(),
            );
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} has a path or query: only smtp[s]://HOST[:PORT]"
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("{text:?} names no host")),
        };
        Ok(RelayUrl {
            scheme,
            host,
            port: url.port().unwrap_or(default_port),
        })
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Whether the host is on this machine: a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.ip().is_some_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for RelayUrl {
    /// The URL as it is configured (normalized), safe to print: it holds no credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Starttls => "smtp",
            Scheme::Implicit => "smtps",
        };
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            _ => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// Parses a `tls` value.
pub fn parse_tls(value: &str) -> std::result::Result<RelayTls, String> {
    match value {
        "required" => Ok(RelayTls::Required),
        "none" => Ok(RelayTls::None),
        other => Err(format!("{other:?} is neither \"required\" nor \"none\"")),
    }
}

/// A relay and how to talk to it; the same checks hold for the configured relay and the database's routes.
#[derive(Clone, PartialEq, Eq)]
pub struct Relay {
    /// Where it is.
    pub url: RelayUrl,
    /// Whether TLS is required.
    pub tls: RelayTls,
    /// AUTH user and password, when the relay wants a login.
    pub login: Option<(String, String)>,
}

impl fmt::Debug for Relay {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("url", &self.url.to_string())
            .field("tls", &self.tls)
            .field("user", &self.login.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Relay {
    /// Which kept sessions may carry this relay's mail: same URL, same login.
    pub fn pool_key(&self) -> String {
        let user = self.login.as_ref().map_or("", |(u, _)| u.as_str());
        format!("{} {user}", self.url)
    }

    /// Checks the combination: no plain text but on loopback, no AUTH without TLS. The error names the
    /// setting (`KEY: why`, with `key` the prefix such as `server.outbound.relay`).
    pub fn check(&self, key: &str) -> std::result::Result<(), String> {
        if self.tls == RelayTls::None && !self.url.is_loopback() {
            return Err(format!(
                "{key}.tls: \"none\" is for a relay on this machine only (127.0.0.1, ::1, localhost), not {}",
                self.url.host
            ));
        }
        if self.tls == RelayTls::None && self.login.is_some() {
            return Err(format!(
                "{key}.username: AUTH is never sent without TLS; set tls = \"required\""
            ));
        }
        Ok(())
    }
}

/// `[server.outbound.relay]` as validated at start (the password file is read when the daemon starts, see
/// [`RelaySettings::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Where it is.
    pub url: RelayUrl,
    /// Whether TLS is required.
    pub tls: RelayTls,
    /// CA certificates trusted for the relay besides webpki-roots.
    pub ca: Option<PathBuf>,
    /// AUTH user.
    pub username: Option<String>,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
    /// The provider's SPF `include:` domain.
    pub spf_include: Option<RecordName>,
}

/// The configuration key of the relay section, for error messages.
const KEY: &str = "server.outbound.relay";

impl RelaySettings {
    /// Validates the section: a URL that parses, a known `tls`, no plain text off loopback, no AUTH without
    /// TLS, a password file with a user name. Errors name the key (exit 2).
    pub fn from_section(section: &RelaySection) -> Result<RelaySettings> {
        let bad = |key: &str, why: String| Error::usage(format!("{KEY}.{key}: {why}"));
        let url = section
            .url
            .as_deref()
            .ok_or_else(|| bad("url", "missing: the relay's smtp:// or smtps:// URL".into()))?;
        let url = RelayUrl::parse(url).map_err(|why| bad("url", why))?;
        let tls = match section.tls.as_deref() {
            None => RelayTls::Required,
            Some(t) => parse_tls(t).map_err(|why| bad("tls", why))?,
        };
        match (&section.username, &section.password_file) {
            (Some(_), None) => {
                return Err(bad(
                    "password_file",
                    "missing: username needs a password file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad("username", "missing: password_file is set".into()));
            }
            _ => {}
        }
        let spf_include = match &section.spf_include {
            Some(include) => Some(
                include
                    .parse::<RecordName>()
                    .map_err(|why| bad("spf_include", why))?,
            ),
            None => None,
        };
        let relay = Relay {
            url: url.clone(),
            tls,
            login: section.username.clone().map(|u| (u, String::new())),
        };
        relay.check(KEY).map_err(Error::usage)?;
        Ok(RelaySettings {
            url,
            tls,
            ca: section.ca.clone(),
            username: section.username.clone(),
            password_file: section.password_file.clone(),
            spf_include,
        })
    }

    /// The relay, with the password read from its file (first line, without its line break). An unreadable or
    /// empty file is a usage error naming the key.
    pub fn load(&self) -> Result<Relay> {
        let login = match (&self.username, &self.password_file) {
            (Some(user), Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Error::usage(format!("{KEY}.password_file: {}: {e}", file.display()))
                })?;
                let password = text.lines().next().unwrap_or("").to_string();
                if password.is_empty() {
                    return Err(Error::usage(format!(
                        "{KEY}.password_file: {} is empty",
                        file.display()
                    )));
                }
                Some((user.clone(), password))
            }
            _ => None,
        };
        Ok(Relay {
            url: self.url.clone(),
            tls: self.tls,
            login,
        })
    }
}

/// The relay `sender_domain`'s mail leaves through, as `dns records` and `audit` present it: the domain's route
/// in the database (`route`) if any, else `[server.outbound.relay]` (`configured`), else none. A configured
/// section that does not validate is a usage error naming its key.
pub fn relayed(
    route: Option<&RelayRouteRow>,
    configured: Option<&RelaySection>,
) -> Result<Option<Relayed>> {
    if let Some(row) = route {
        let url = RelayUrl::parse(&row.url).map_err(|why| {
            Error::usage(format!(
                "the relay route of {} is unusable: {why}",
                row.domain
            ))
        })?;
        return Ok(Some(Relayed {
            url: url.to_string(),
            local: url.is_loopback(),
            host: url.host,
            spf_include: row.spf_include.as_deref().and_then(|d| d.parse().ok()),
        }));
    }
    let Some(section) = configured else {
        return Ok(None);
    };
    let settings = RelaySettings::from_section(section)?;
    Ok(Some(Relayed {
        url: settings.url.to_string(),
        local: settings.url.is_loopback(),
        host: settings.url.host,
        spf_include: settings.spf_include,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str) -> RelaySection {
        RelaySection {
            url: Some(url.into()),
            ..RelaySection::default()
        }
    }

    #[test]
    fn urls_parse_with_default_ports_and_print_without_surprises() {
        let u = RelayUrl::parse("smtp://smtp.Provider.example").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Starttls, "smtp.provider.example", 587)
        );
        assert_eq!(u.to_string(), "smtp://smtp.provider.example:587");
        let u = RelayUrl::parse("smtps://[::1]:2465").unwrap();
        assert_eq!(
            (u.scheme, u.port, u.is_loopback()),
            (Scheme::Implicit, 2465, true)
        );
        assert_eq!(u.to_string(), "smtps://[::1]:2465");
        assert_eq!(RelayUrl::parse("smtps://relay.example").unwrap().port, 465);
        for bad in [
            "relay.example:587",
            "http://relay.example",
            "smtp://user:pw@relay.example",
            "smtp://relay.example/path",
            "smtp://",
        ] {
            assert!(RelayUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_section_is_checked_key_by_key() {
        let err = |s: RelaySection| RelaySettings::from_section(&s).unwrap_err().to_string();
        assert!(err(RelaySection::default()).starts_with("server.outbound.relay.url: missing"));
        assert!(err(section("ftp://x")).starts_with("server.outbound.relay.url: unknown scheme"));
        let plain = RelaySection {
            tls: Some("none".into()),
            ..section("smtp://relay.example")
        };
        assert!(
            err(plain)
                .starts_with("server.outbound.relay.tls: \"none\" is for a relay on this machine")
        );
        let auth_in_clear = RelaySection {
            tls: Some("none".into()),
            username: Some("u".into()),
            password_file: Some("/p".into()),
            ..section("smtp://127.0.0.1:2525")
        };
        assert!(
            err(auth_in_clear)
                .starts_with("server.outbound.relay.username: AUTH is never sent without TLS")
        );
        let no_password = RelaySection {
            username: Some("u".into()),
            ..section("smtp://relay.example")
        };
        assert!(err(no_password).starts_with("server.outbound.relay.password_file: missing"));
        let ok = RelaySettings::from_section(&RelaySection {
            tls: Some("none".into()),
            ..section("smtp://localhost:2525")
        })
        .unwrap();
        assert_eq!(ok.tls, RelayTls::None);
        assert_eq!(ok.load().unwrap().login, None);
    }

    #[test]
    fn the_password_comes_from_its_file_and_never_from_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let settings = RelaySettings::from_section(&RelaySection {
            username: Some("mx@example.org".into()),
            password_file: Some(file.clone()),
            ..section("smtp://relay.example")
        })
        .unwrap();
        let relay = settings.load().unwrap();
        assert_eq!(
            relay.login,
            Some(("mx@example.org".into(), "s3cret".into()))
        );
        assert!(!format!("{relay:?}").contains("s3cret"));
        std::fs::write(&file, "").unwrap();
        let e = settings.load().unwrap_err().to_string();
        assert!(
            e.starts_with("server.outbound.relay.password_file: ") && e.ends_with("is empty"),
            "{e}"
        );
    }
}
