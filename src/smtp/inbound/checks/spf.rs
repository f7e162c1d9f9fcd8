//! SPF (RFC 7208) of the MAIL FROM identity, or of the HELO identity for the null sender (section 2.4: the
//! MAIL FROM identity of a bounce is `postmaster@<HELO name>`).
//!
//! A domain that is not a domain name (an address literal in HELO, a sender without `@`) has no SPF to check:
//! the result is `none` without a lookup (section 4.3).

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfOutput};

use super::results::Outcome;
use crate::model::DomainName;

/// Which identity was checked, as named in Authentication-Results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `smtp.mailfrom=<sender>`.
    MailFrom(String),
    /// `smtp.helo=<helo>` (the null sender).
    Helo(String),
}

impl Identity {
    /// The RFC 8601 property and its value.
    pub fn property(&self) -> (&'static str, &str) {
        match self {
            Identity::MailFrom(s) => ("smtp.mailfrom", s),
            Identity::Helo(h) => ("smtp.helo", h),
        }
    }
}

/// One SPF evaluation.
#[derive(Debug, Clone)]
pub struct Spf {
    /// The RFC 8601 result.
    pub outcome: Outcome,
    /// The domain whose policy was evaluated (the RFC5321.MailFrom domain DMARC aligns with).
    pub domain: String,
    /// The identity checked.
    pub identity: Identity,
    /// mail-auth's output, which DMARC needs.
    pub output: SpfOutput,
}

/// Maps mail-auth's SPF result to the RFC 8601 keyword.
pub fn outcome(result: mail_auth::SpfResult) -> Outcome {
    use mail_auth::SpfResult as R;
    match result {
        R::Pass => Outcome::Pass,
        R::Fail => Outcome::Fail,
        R::SoftFail => Outcome::SoftFail,
        R::Neutral => Outcome::Neutral,
        R::TempError => Outcome::TempError,
        R::PermError => Outcome::PermError,
        R::None => Outcome::None,
    }
}

/// Whether `name` is a domain name SPF can be evaluated for (not an address literal, at least two labels).
fn is_domain(name: &str) -> bool {
    name.contains('.') && !name.starts_with('[') && name.parse::<DomainName>().is_ok()
}

/// Evaluates SPF for a transaction from `ip` that said `helo` and `MAIL FROM:<sender>` (empty for the null
/// sender); `hostname` is ours (for the `%{r}` macro). Gives up with temperror after `timeout`.
pub async fn check(
    auth: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    sender: &str,
    hostname: &str,
    timeout: Duration,
) -> Spf {
    let helo = helo.trim_end_matches('.');
    let (identity, domain) = if sender.is_empty() {
        (Identity::Helo(helo.to_string()), helo.to_ascii_lowercase())
    } else {
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        (
            Identity::MailFrom(sender.to_string()),
            domain.trim_end_matches('.').to_ascii_lowercase(),
        )
    };
    let fixed = |result| SpfOutput::new(domain.clone()).with_result(result);
    let output = if !is_domain(&domain) {
        fixed(mail_auth::SpfResult::None)
    } else {
        let params = if sender.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, hostname, sender)
        };
        match tokio::time::timeout(timeout, auth.verify_spf(params)).await {
            Ok(output) => output,
            Err(_) => fixed(mail_auth::SpfResult::TempError),
        }
    };
    Spf {
        outcome: outcome(output.result()),
        domain,
        identity,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_domain_names_are_evaluated() {
        assert!(is_domain("mail.example.org"));
        assert!(!is_domain("[192.0.2.1]"));
        assert!(!is_domain("localhost"));
        assert!(!is_domain(""));
        assert!(!is_domain("a b.example"));
    }
}
