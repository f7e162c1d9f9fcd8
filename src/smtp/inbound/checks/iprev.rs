//! iprev (RFC 8601 section 3): does the client IP's PTR name resolve back to the client IP?
//!
//! mail-auth looks up the PTR and then the addresses of (up to two of) its names. The RFC's results are kept
//! apart in the header: `fail` when the names do not lead back, `permerror` when there is no PTR at all,
//! `temperror` when DNS did not answer. For the configured action both `fail` and `permerror` count as failure
//! (a client without forward-confirmed reverse DNS); `temperror` never does.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::{IprevResult, MessageAuthenticator};

use super::results::Outcome;

/// The iprev result for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iprev {
    /// pass, fail, permerror (no PTR) or temperror.
    pub outcome: Outcome,
    /// The forward-confirmed PTR name (lower case, no trailing dot), only when `outcome` is pass and the name is
    /// made of letters, digits, `-`, `_` and dots (the client's reverse zone is the client's to fill, and the
    /// name goes into the Received header).
    pub ptr: Option<String>,
}

impl Iprev {
    /// Whether the configured action applies: the reverse name is missing or does not lead back.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Fail | Outcome::PermError)
    }
}

/// Runs iprev for `ip`, giving up (temperror) after `timeout`.
pub async fn check(auth: &MessageAuthenticator, ip: IpAddr, timeout: Duration) -> Iprev {
    let Ok(output) = tokio::time::timeout(timeout, auth.verify_iprev(ip)).await else {
        return Iprev {
            outcome: Outcome::TempError,
            ptr: None,
        };
    };
    let outcome = match output.result() {
        IprevResult::Pass => Outcome::Pass,
        IprevResult::Fail(_) => Outcome::Fail,
        IprevResult::TempError(_) => Outcome::TempError,
        IprevResult::PermError(_) => Outcome::PermError,
        IprevResult::None => Outcome::None,
    };
    let ptr = match outcome {
        Outcome::Pass => output
            .ptr
            .as_ref()
            .and_then(|names| names.first())
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
            .filter(|name| is_hostname(name)),
        _ => None,
    };
    Iprev { outcome, ptr }
}

/// Whether `name` looks like a host name and nothing else (safe to copy into a header).
fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_host_names_are_kept() {
        assert!(is_hostname("mx.example.org"));
        assert!(!is_hostname(""));
        assert!(!is_hostname("mx.example.org\r\nX-Evil: 1"));
        assert!(!is_hostname("a b.example"));
    }
}
