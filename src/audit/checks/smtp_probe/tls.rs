//! The audit's verdict on a server's certificate.
//!
//! The SMTP probe must see a certificate even when it is bad, because opportunistic senders deliver over TLS
//! whatever the certificate, and the report should say exactly what is wrong (untrusted, wrong name, expired)
//! rather than "handshake failed". So the probe completes the handshake with any certificate
//! ([`crate::tls::inspecting_config`]) and [`evaluate`] judges the chain afterwards against the run's trusted
//! roots (webpki-roots, plus `--extra-ca`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::audit::Status;

/// A certificate expiring within this many days warns.
pub const EXPIRY_WARN_DAYS: u64 = 14;

/// The name sent as SNI: the host name, or the IP when the name is not a valid DNS name.
pub fn server_name(host: &str, ip: IpAddr) -> ServerName<'static> {
    ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(ip.into()))
}

/// The verdict on a certificate chain for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Worst status among trust, name and validity period.
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// How to fix the worst problem, if any.
    pub fix: Option<String>,
    /// The certificate parsed and its chain does not lead to a trusted root (whatever else is wrong).
    pub untrusted: bool,
}

/// Judges `chain` (leaf first, as the server sent it) for `host` at `now`: trusted by `roots` (else WARN, or
/// FAIL with `mta_sts`: the domain publishes MTA-STS, whose senders verify the certificate), covers `host` (else
/// FAIL), within its validity period (else FAIL) and not expiring within [`EXPIRY_WARN_DAYS`] (else WARN).
pub fn evaluate(
    chain: &[CertificateDer<'_>],
    host: &str,
    roots: &RootCertStore,
    now: SystemTime,
    mta_sts: bool,
) -> Verdict {
    let fail = |detail: String| Verdict {
        status: Status::Fail,
        detail,
        fix: Some(format!(
            "install a certificate for {host} from a public CA (e.g. Let's Encrypt)"
        )),
        untrusted: false,
    };
    let Some(leaf) = chain.first() else {
        return fail("the server sent no certificate".into());
    };
    let crate::tls::leaf::Leaf {
        names,
        not_before,
        not_after,
        ..
    } = match crate::tls::leaf::Leaf::parse(leaf) {
        Ok(l) => l,
        Err(e) => return fail(format!("the certificate does not parse ({e})")),
    };
    let mut problems: Vec<(Status, String, String)> = Vec::new();
    if !names.iter().any(|n| crate::mta_sts::mx_matches(n, host)) {
        let listed = if names.is_empty() {
            "no DNS names".to_string()
        } else {
            crate::model::printable(&names.join(", "))
        };
        problems.push((
            Status::Fail,
            format!("does not cover {host} (it names {listed}); senders that verify will refuse it"),
            format!("issue a certificate whose subjectAltName includes {host} (e.g. certbot -d {host}) and \
                     configure it in the SMTP server (Postfix: smtpd_tls_chain_files)"),
        ));
    }
    let renew = "renew the certificate (e.g. certbot renew) and reload the SMTP server".to_string();
    let days_left = not_after.duration_since(now).map(|d| d.as_secs() / 86_400);
    match days_left {
        Err(_) => problems.push((
            Status::Fail,
            format!("expired on {}", crate::time::date(not_after)),
            renew,
        )),
        Ok(_) if now < not_before => problems.push((
            Status::Fail,
            format!("is not valid before {}", crate::time::date(not_before)),
            "check the server's clock and the certificate's validity period".into(),
        )),
        Ok(days) if days <= EXPIRY_WARN_DAYS => problems.push((
            Status::Warn,
            format!(
                "expires on {} (in {days} days)",
                crate::time::date(not_after)
            ),
            renew,
        )),
        Ok(_) => {}
    }
    // Trust is judged at a time inside the validity period, so an expired certificate is not also "untrusted".
    let at = if now > not_after {
        not_after
    } else if now < not_before {
        not_before
    } else {
        now
    };
    let trust = trusted(chain, roots, at);
    if let Err(reason) = &trust {
        let (status, consequence) = if mta_sts {
            (
                Status::Fail,
                "the domain publishes MTA-STS (_mta-sts TXT), so senders honouring your MTA-STS policy will \
                 refuse delivery",
            )
        } else {
            (
                Status::Warn,
                "only opportunistic senders will accept it, senders that verify (MTA-STS) will not",
            )
        };
        problems.push((
            status,
            format!("is not trusted by the public CA roots ({reason}): {consequence}"),
            format!("use a certificate for {host} from a public CA (e.g. Let's Encrypt) with its full chain"),
        ));
    }
    let untrusted = trust.is_err();
    let Some(worst) = problems.iter().map(|p| p.0).max() else {
        let days = days_left.unwrap_or(0);
        return Verdict {
            status: Status::Pass,
            detail: format!(
                "trusted, covers {host}, expires on {} (in {days} days)",
                crate::time::date(not_after)
            ),
            fix: None,
            untrusted,
        };
    };
    let fix = problems.iter().find(|p| p.0 == worst).map(|p| p.2.clone());
    let detail = problems
        .into_iter()
        .map(|p| p.1)
        .collect::<Vec<_>>()
        .join("; ");
    Verdict {
        status: worst,
        detail: format!("the certificate {detail}"),
        fix,
        untrusted,
    }
}

/// Whether the chain leads to a trusted root at `at`.
fn trusted(
    chain: &[CertificateDer<'_>],
    roots: &RootCertStore,
    at: SystemTime,
) -> Result<(), String> {
    let leaf = chain.first().ok_or("no certificate")?;
    let parsed = rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    );
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        at,
        crate::tls::provider().signature_verification_algorithms.all,
    )
    .map_err(|e| match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "unknown issuer".to_string()
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a leaf for `names` valid from 2020-01-01 to `until` (year, month, day).
    fn chain(
        names: &[&str],
        until: (i32, u8, u8),
    ) -> (RootCertStore, Vec<CertificateDer<'static>>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        (roots, vec![leaf.der().clone()])
    }

    fn at(y: i32, m: u32, d: u32) -> SystemTime {
        let t = chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.and_utc().timestamp() as u64)
    }

    #[test]
    fn certificate_verdicts() {
        let (roots, certs) = chain(&["mx.example.org"], (2030, 1, 1));
        let ok = evaluate(&certs, "mx.example.org", &roots, at(2029, 1, 1), false);
        assert_eq!(ok.status, Status::Pass, "{ok:?}");
        let soon = evaluate(&certs, "mx.example.org", &roots, at(2029, 12, 25), false);
        assert_eq!(soon.status, Status::Warn, "{soon:?}");
        let expired = evaluate(&certs, "mx.example.org", &roots, at(2030, 6, 1), false);
        assert_eq!(expired.status, Status::Fail);
        assert_eq!(
            expired.detail, "the certificate expired on 2030-01-01",
            "trust is judged apart from expiry"
        );
        let early = evaluate(&certs, "mx.example.org", &roots, at(2019, 6, 1), false);
        assert_eq!(early.status, Status::Fail, "{early:?}");
        let other = evaluate(&certs, "mx2.example.org", &roots, at(2029, 1, 1), false);
        assert_eq!(other.status, Status::Fail);
        assert!(
            other.detail.contains("does not cover mx2.example.org"),
            "{other:?}"
        );
        let untrusted = evaluate(
            &certs,
            "mx.example.org",
            &RootCertStore::empty(),
            at(2029, 1, 1),
            false,
        );
        assert_eq!(untrusted.status, Status::Warn);
        assert!(untrusted.untrusted && !ok.untrusted);
        assert!(untrusted.detail.contains("unknown issuer"), "{untrusted:?}");
        let enforced = evaluate(
            &certs,
            "mx.example.org",
            &RootCertStore::empty(),
            at(2029, 1, 1),
            true,
        );
        assert_eq!(enforced.status, Status::Fail, "{enforced:?}");
        assert!(
            enforced.detail.contains("MTA-STS policy will refuse"),
            "{enforced:?}"
        );
        assert_eq!(
            evaluate(&[], "mx.example.org", &roots, at(2029, 1, 1), false).status,
            Status::Fail
        );
        let garbage = [CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01])];
        assert_eq!(
            evaluate(&garbage, "mx.example.org", &roots, at(2029, 1, 1), false).status,
            Status::Fail
        );
    }
}
