//! MTA-STS (RFC 8461) policies, shared by the audit (which judges the policy a domain publishes) and the
//! outbound SMTP client of `serve` (which obeys the policy of the domain it delivers to), so both read a policy
//! the same way.
//!
//! - [`Policy::parse`]: the policy text (`version`, `mode`, `mx`, `max_age`), every problem listed.
//! - [`mx_matches`] / [`Policy::allows_mx`]: whether an MX host is covered by an `mx:` pattern.
//! - [`fetch_policy_text`] / [`fetch_policy`]: `GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt` as a
//!   sender does it (verified TLS, no redirects, `200 text/plain`, at most [`MAX_BODY`] bytes). The caller
//!   supplies the trusted roots and the port ([`FetchOptions`]), so each caller keeps its own test knobs.
//!
//! - [`sts_txt`]: the `_mta-sts.DOMAIN` TXT record ([`StsTxt`]: absent, valid with its id, invalid, failed).

mod fetch;
pub mod http;
mod txt;

use std::fmt;

pub use fetch::{FetchError, FetchOptions, fetch_policy, fetch_policy_text, https_request};
pub use txt::{StsTxt, field_name, parse_sts, sts_txt};

/// Largest policy body accepted (RFC 8461 3.3 suggests senders limit it; 64 KiB is generous).
pub const MAX_BODY: usize = 64 * 1024;

/// Largest `max_age` RFC 8461 3.2 allows: 31557600 seconds (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a sender does with the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over TLS with a valid certificate.
    Enforce,
    /// Report failures (TLS-RPT) but deliver anyway.
    Testing,
    /// The policy is withdrawn: senders ignore MTA-STS for the domain.
    None,
}

impl Mode {
    /// The mode as the policy spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed policy (RFC 8461 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `mode:`.
    pub mode: Mode,
    /// The `mx:` patterns as published (`mail.example.org` or `*.example.org`).
    pub mx: Vec<String>,
    /// `max_age:`, in seconds: how long a sender may cache the policy.
    pub max_age: u64,
}

impl Policy {
    /// Parses a policy body; `Err` lists every problem.
    pub fn parse(body: &str) -> Result<Policy, Vec<String>> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in body.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "version" => version = version.or(Some(value)),
                "mode" => mode = mode.or(Some(value)),
                "max_age" => max_age = max_age.or(Some(value)),
                "mx" => mx.push(value),
                _ => {}
            }
        }
        let mut problems = Vec::new();
        match version.as_deref() {
            Some("STSv1") => {}
            Some(v) => problems.push(format!(
                "version is \"{}\", not STSv1",
                crate::model::printable(v)
            )),
            None => problems.push("no version: STSv1 line".into()),
        }
        let mode_text = mode.unwrap_or_default();
        let mode = match mode_text.as_str() {
            "enforce" => Some(Mode::Enforce),
            "testing" => Some(Mode::Testing),
            "none" => Some(Mode::None),
            _ => {
                problems.push(format!(
                    "mode \"{}\" is not enforce, testing or none",
                    crate::model::printable(&mode_text)
                ));
                None
            }
        };
        let age = max_age
            .as_deref()
            .filter(|a| !a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|a| a.parse::<u64>().ok())
            .filter(|a| *a <= MAX_AGE_LIMIT);
        if age.is_none() {
            problems.push(format!(
                "max_age is missing or not a number of seconds up to {MAX_AGE_LIMIT}"
            ));
        }
        if mx.is_empty() && mode != Some(Mode::None) {
            problems.push("no mx: line".into());
        }
        match (mode, age) {
            (Some(mode), Some(max_age)) if problems.is_empty() => Ok(Policy { mode, mx, max_age }),
            _ => Err(problems),
        }
    }

    /// Whether `host` (an MX host name) matches one of the policy's `mx:` patterns.
    pub fn allows_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|pattern| mx_matches(pattern, host))
    }
}

/// Whether an MTA-STS `mx:` pattern or a certificate's DNS name covers `host` (the audit judges certificates with
/// it too): equal ignoring case and a trailing
/// dot, or `*.rest` where `host` is exactly one label followed by `rest` (RFC 8461 4.1, RFC 6125 6.4.3).
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest && rest.contains('.')),
        None => !pattern.is_empty() && pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_policy_parses() {
        let text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\n\
                    max_age: 604800\r\n";
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.org", "*.example.net"]);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows_mx("MAIL.example.org."));
        assert!(p.allows_mx("mx1.example.net"));
        assert!(!p.allows_mx("a.b.example.net"));
        assert!(!p.allows_mx("example.net"));
    }

    #[test]
    fn every_problem_is_listed() {
        let problems = Policy::parse("version: STSv2\nmode: strict\nmax_age: -1\n").unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(Policy::parse("").is_err());
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 0\n").is_ok());
        assert!(
            Policy::parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n")
                .is_err()
        );
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(mx_matches("mx.example.org", "MX.example.org."));
        assert!(!mx_matches("mx.example.org", "mx2.example.org"));
        assert!(!mx_matches("*.example.org", "example.org"));
        assert!(mx_matches("*.example.org", "mx.example.org"));
        assert!(!mx_matches("*.example.org", "a.mx.example.org"));
        assert!(!mx_matches("*.org", "example.org"));
        assert!(!mx_matches("", ""));
    }
}
