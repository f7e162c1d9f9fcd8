//! `[server.acme]`, validated.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::AcmeSection;
use crate::error::{Error, Result};
use crate::smtp::settings::HttpsSettings;

/// Where the state lives when `dir` is not set.
pub const DEFAULT_DIR: &str = "/var/lib/mailctl/acme";
/// Renewal this many days before expiry when `renew_days` is not set.
pub const DEFAULT_RENEW_DAYS: u32 = 30;

/// How the CA checks that we control a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 on the `[server.https]` listener, at this address.
    TlsAlpn(SocketAddr),
    /// HTTP-01 on this address.
    Http(SocketAddr),
}

impl Challenge {
    /// `tls-alpn-01` or `http-01`.
    pub fn name(&self) -> &'static str {
        match self {
            Challenge::TlsAlpn(_) => "tls-alpn-01",
            Challenge::Http(_) => "http-01",
        }
    }

    /// Where the answers are served.
    pub fn listen(&self) -> SocketAddr {
        match self {
            Challenge::TlsAlpn(a) | Challenge::Http(a) => *a,
        }
    }
}

/// `[server.acme]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The directory URL (https).
    pub directory: String,
    /// The account contact (`mailto:`), when given.
    pub contact: Option<String>,
    /// How names are validated.
    pub challenge: Challenge,
    /// The state directory.
    pub dir: PathBuf,
    /// Days before expiry to renew.
    pub renew_days: u32,
    /// Keep the key across renewals.
    pub reuse_key: bool,
    /// Extra CA certificates trusted for the CA's HTTPS.
    pub directory_ca: Option<PathBuf>,
    /// `server.public_ips`: a hosted domain's names are requested only when they resolve to one of these
    /// (any address when empty).
    pub public_ips: Vec<IpAddr>,
}

impl AcmeSettings {
    /// The chain and key files the listeners load.
    pub fn files(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("cert.pem"), self.dir.join("key.pem"))
    }

    /// How long before `not_after` a certificate valid from `not_before` is renewed: `renew_days`, or half its
    /// lifetime when that is shorter (a 6-day certificate is not renewed at once for ever).
    pub fn renew_before(&self, lifetime: Duration) -> Duration {
        Duration::from_secs(u64::from(self.renew_days) * 86_400).min(lifetime / 2)
    }
}

/// Validates `[server.acme]`: `None` when `directory` is not set.
pub fn settings(
    file: &AcmeSection,
    https: Option<&HttpsSettings>,
    public_ips: &[IpAddr],
) -> Result<Option<AcmeSettings>> {
    let Some(directory) = &file.directory else {
        if file.contact.is_some() || file.challenge.is_some() || file.http_listen.is_some() {
            return Err(Error::usage(
                "server.acme: directory is not set (e.g. https://acme-v02.api.letsencrypt.org/directory)",
            ));
        }
        return Ok(None);
    };
    let bad = |what: String| Error::usage(format!("server.acme.{what}"));
    match url::Url::parse(directory) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        _ => {
            return Err(bad(format!(
                "directory: '{}' is not an https:// URL",
                crate::model::printable(directory)
            )));
        }
    }
    if let Some(c) = &file.contact
        && (!c.starts_with("mailto:") || !c[7..].contains('@'))
    {
        return Err(bad(format!(
            "contact: '{}' is not a mailto: address (mailto:postmaster@example.org)",
            crate::model::printable(c)
        )));
    }
    let http_listen = file
        .http_listen
        .as_deref()
        .map(|l| {
            l.parse::<SocketAddr>()
                .map_err(|_| bad(format!("http_listen: '{l}' is not an IP:PORT address")))
        })
        .transpose()?;
    let challenge = match file.challenge.as_deref().unwrap_or("tls-alpn-01") {
        "tls-alpn-01" => match https {
            Some(h) => Challenge::TlsAlpn(h.listen),
            None => {
                return Err(bad(
                    "challenge: tls-alpn-01 is answered on the [server.https] listener (port 443): set \
                     server.https.listen, or use challenge = \"http-01\" with http_listen"
                        .into(),
                ));
            }
        },
        "http-01" => match http_listen {
            Some(a) => Challenge::Http(a),
            None => {
                return Err(bad(
                    "http_listen: http-01 needs the address to answer on (\"[::]:80\")".into(),
                ));
            }
        },
        other => {
            return Err(bad(format!(
                "challenge: unknown challenge '{}' (expected tls-alpn-01 or http-01)",
                crate::model::printable(other)
            )));
        }
    };
    let renew_days = file.renew_days.unwrap_or(DEFAULT_RENEW_DAYS);
    if !(1..=365).contains(&renew_days) {
        return Err(bad(format!(
            "renew_days: {renew_days} is not between 1 and 365"
        )));
    }
    Ok(Some(AcmeSettings {
        directory: directory.clone(),
        contact: file.contact.clone(),
        challenge,
        dir: file
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
        renew_days,
        reuse_key: file.reuse_key.unwrap_or(true),
        directory_ca: file.directory_ca.clone(),
        public_ips: public_ips.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(directory: &str) -> AcmeSection {
        AcmeSection {
            directory: Some(directory.into()),
            ..AcmeSection::default()
        }
    }

    #[test]
    fn off_unless_a_directory_is_named() {
        assert_eq!(settings(&AcmeSection::default(), None, &[]).unwrap(), None);
        let s = AcmeSection {
            contact: Some("mailto:a@b.example".into()),
            ..AcmeSection::default()
        };
        assert!(settings(&s, None, &[]).is_err());
    }

    #[test]
    fn each_bad_key_is_named() {
        let err = |s: AcmeSection| settings(&s, None, &[]).unwrap_err().to_string();
        assert!(err(section("http://ca.example/dir")).contains("server.acme.directory"));
        assert!(
            err(section("https://ca.example/dir")).contains("server.acme.challenge: tls-alpn-01")
        );
        let mut s = section("https://ca.example/dir");
        s.challenge = Some("http-01".into());
        assert!(err(s.clone()).contains("server.acme.http_listen"));
        s.http_listen = Some("[::]:80".into());
        s.contact = Some("postmaster@example.org".into());
        assert!(err(s.clone()).contains("server.acme.contact"));
        s.contact = None;
        s.renew_days = Some(0);
        assert!(err(s.clone()).contains("server.acme.renew_days"));
        s.renew_days = None;
        s.challenge = Some("dns-01".into());
        assert!(err(s.clone()).contains("unknown challenge 'dns-01'"));
        s.challenge = Some("http-01".into());
        let ok = settings(&s, None, &[]).unwrap().unwrap();
        assert_eq!(ok.challenge.name(), "http-01");
        assert!(ok.reuse_key);
        assert_eq!(ok.files().0, PathBuf::from(DEFAULT_DIR).join("cert.pem"));
    }

    #[test]
    fn short_certificates_renew_half_way() {
        let s = AcmeSettings {
            directory: "https://ca.example/dir".into(),
            contact: None,
            challenge: Challenge::Http("127.0.0.1:80".parse().unwrap()),
            dir: PathBuf::from("/tmp"),
            renew_days: 30,
            reuse_key: true,
            directory_ca: None,
            public_ips: Vec::new(),
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(s.renew_before(90 * day), 30 * day);
        assert_eq!(s.renew_before(6 * day), 3 * day);
    }
}
