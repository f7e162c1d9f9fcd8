//! Which names the certificate covers: `server.hostname` always; with `[server.https]`, `mta-sts.DOMAIN` and
//! `autoconfig.DOMAIN` for every active hosted domain, each only when it resolves (to one of
//! `server.public_ips`, when those are set). The CA validates every name of an order, and one it cannot reach
//! fails the whole order: such a name is left out, with the reason, until its DNS is in place. A lookup that
//! fails (a timeout, SERVFAIL) says nothing about the name: one the certificate in use covers stays, so a DNS
//! hiccup never reissues the certificate without it.

use std::net::IpAddr;

use crate::dns::Resolver;
use crate::error::Result;
use crate::store::Store;

/// The names to request, and those left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// In order: the host name first, then the hosted domains' names sorted.
    pub names: Vec<String>,
    /// `name: reason` for each name left out.
    pub skipped: Vec<String>,
}

/// The names for a server called `hostname`, serving HTTPS for its domains when `https`; `current` are the
/// names of the certificate in use.
pub async fn wanted(
    hostname: &str,
    https: bool,
    store: &Store,
    resolver: &Resolver,
    public_ips: &[IpAddr],
    current: &[String],
) -> Result<Names> {
    let hostname = ascii(hostname);
    let mut out = Names {
        names: vec![hostname.clone()],
        skipped: Vec::new(),
    };
    if !https {
        return Ok(out);
    }
    let mut tx = store.begin().await?;
    let domains = tx.domains().await?;
    let _ = tx.rollback().await;
    let mut candidates: Vec<String> = domains
        .into_iter()
        .filter(|d| d.active)
        .flat_map(|d| {
            let domain = ascii(&d.domain);
            [format!("mta-sts.{domain}"), format!("autoconfig.{domain}")]
        })
        .filter(|n| *n != hostname)
        .collect();
    candidates.sort();
    candidates.dedup();
    let lookups = candidates.iter().map(|n| resolver.addresses(n));
    let answers = futures_util::future::join_all(lookups).await;
    for (name, answer) in candidates.into_iter().zip(answers) {
        match judge(&name, answer, current, public_ips) {
            Ok(()) => out.names.push(name),
            Err(why) => out.skipped.push(format!("{name}: {why}")),
        }
    }
    Ok(out)
}

/// Whether `name`, whose lookup gave `answer`, goes in the certificate; the error says why not.
fn judge(
    name: &str,
    answer: std::result::Result<Vec<IpAddr>, String>,
    current: &[String],
    public_ips: &[IpAddr],
) -> std::result::Result<(), String> {
    match answer {
        Err(_) if current.iter().any(|c| c == name) => Ok(()),
        Err(e) => Err(format!("DNS lookup failed ({e})")),
        Ok(ips) if ips.is_empty() => {
            Err("no A or AAAA record (publish the records `mailctl dns records` prints)".into())
        }
        Ok(ips) if !public_ips.is_empty() && !ips.iter().any(|ip| public_ips.contains(ip)) => {
            let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            Err(format!(
                "resolves to {}, not to server.public_ips",
                shown.join(", ")
            ))
        }
        Ok(_) => Ok(()),
    }
}

/// The ASCII (A-label) form a certificate carries, lowercase.
fn ascii(name: &str) -> String {
    idna::domain_to_ascii(name)
        .unwrap_or_else(|_| name.to_string())
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_lookup_keeps_a_name_in_use_and_nothing_else() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let current = vec!["mta-sts.a.example".to_string()];
        let failed = || Err("timed out".to_string());
        assert!(judge("mta-sts.a.example", failed(), &current, &[]).is_ok());
        assert!(
            judge("mta-sts.b.example", failed(), &current, &[])
                .unwrap_err()
                .contains("timed out")
        );
        assert!(
            judge("mta-sts.a.example", Ok(vec![]), &current, &[]).is_err(),
            "gone is gone"
        );
        assert!(judge("x.example", Ok(vec![ip]), &[], &[]).is_ok());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(
            judge("x.example", Ok(vec![ip]), &[], &[other])
                .unwrap_err()
                .contains("192.0.2.1")
        );
    }

    #[test]
    fn names_are_a_labels() {
        assert_eq!(ascii("Mx.Example.ORG."), "mx.example.org");
        assert_eq!(ascii("bücher.example"), "xn--bcher-kva.example");
    }
}
