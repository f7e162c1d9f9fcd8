//! Inbound checks on mail from other servers (MX listener only): iprev and DNSBL at connect, SPF at MAIL FROM,
//! DKIM and DMARC after DATA; each with its configured [`Action`](crate::smtp::settings::Action).
//! STUB: replaced by the checks helper.

use std::net::IpAddr;

use crate::dns::Resolver;
use crate::smtp::command::Reply;
use crate::smtp::settings::CheckPolicy;

/// The checks, shared by every session.
pub struct Checks {
    #[allow(dead_code)]
    resolver: Resolver,
    #[allow(dead_code)]
    policy: CheckPolicy,
    hostname: String,
}

/// What is known about the client once it has connected.
#[derive(Debug, Clone, Default)]
pub struct ConnectResult {
    /// The client IP's PTR name when it forward-confirms (iprev pass), for logs and the Received header.
    pub ptr: Option<String>,
    /// Set when a check with action reject failed: the reply to give at the first MAIL/RCPT.
    pub reject: Option<Reply>,
    /// A check with action mark failed: deliver into Junk.
    pub junk: bool,
}

/// The SPF result of one transaction.
#[derive(Debug, Clone, Default)]
pub struct SpfResult {
    /// Set when SPF failed with action reject: the reply to MAIL FROM.
    pub reject: Option<Reply>,
    /// SPF failed with action mark.
    pub junk: bool,
}

/// The verdict on one message.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The complete `Authentication-Results:` header field, folded, ending in CRLF.
    pub authentication_results: String,
    /// Set when a check with action reject failed (DMARC p=reject ...): the reply to the end of DATA.
    pub reject: Option<Reply>,
    /// Deliver into the Junk folder.
    pub junk: bool,
    /// One line for the transaction log, e.g. `spf=pass dkim=pass dmarc=pass iprev=pass dnsbl=clean`.
    pub summary: String,
}

impl Checks {
    /// Checks that query DNS through `resolver` and answer as `hostname` (the authserv-id).
    pub fn new(resolver: Resolver, policy: CheckPolicy, hostname: String) -> Checks {
        Checks {
            resolver,
            policy,
            hostname,
        }
    }

    /// At connect: iprev and DNSBL of the client IP.
    pub async fn connect(&self, _ip: IpAddr) -> ConnectResult {
        ConnectResult::default()
    }

    /// At MAIL FROM: SPF of `sender` (empty for the null sender, then of the HELO name).
    pub async fn mail_from(
        &self,
        _conn: &ConnectResult,
        _ip: IpAddr,
        _helo: &str,
        _sender: &str,
    ) -> SpfResult {
        SpfResult::default()
    }

    /// After DATA: DKIM and DMARC, and the combined verdict with the Authentication-Results header.
    pub async fn message(
        &self,
        _conn: &ConnectResult,
        _spf: &SpfResult,
        _ip: IpAddr,
        _helo: &str,
        _sender: &str,
        _message: &[u8],
    ) -> Verdict {
        Verdict {
            authentication_results: format!("Authentication-Results: {}; none\r\n", self.hostname),
            ..Verdict::default()
        }
    }

    /// The Authentication-Results header for mail submitted by an authenticated user.
    pub fn submission_results(&self, login: &str) -> String {
        format!(
            "Authentication-Results: {};\r\n\tauth=pass smtp.auth={login}\r\n",
            self.hostname
        )
    }
}
