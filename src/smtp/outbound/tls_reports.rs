//! The TLS outcomes of one delivery, recorded for the recipient domain's TLS reports (RFC 8460) when it asks
//! for them (`_smtp._tls.DOMAIN`, looked up once per delivery and only when a session tried STARTTLS), through
//! the daemon's report recorder ([`crate::reports::send`]). Sessions that never got to STARTTLS (refused
//! connections) and the plain-text retry after a failed handshake are not TLS sessions and are not counted.

use std::net::IpAddr;

use mail_auth::report::tlsrpt::{PolicyDetails, PolicyType, ResultType};

use super::client::Outbound;
use super::mta_sts::Requirement;
use super::session::Tls;
use crate::mta_sts::Policy;
use crate::reports::send::tls::{Seen, classify, failure, rua_of};

/// The sessions of one delivery to one domain.
pub(super) struct TlsReports<'a> {
    outbound: &'a Outbound,
    domain: &'a str,
    requirement: &'a Requirement,
    /// The domain's `rua=`, once looked up (`Some(None)`: it asks for no reports).
    rua: Option<Option<Vec<String>>>,
}

impl<'a> TlsReports<'a> {
    /// The sessions delivering `message` to `domain`. A TLS report is never counted in a TLS report: each
    /// delivery of one would call for the next day's, for ever.
    pub(super) fn new(
        outbound: &'a Outbound,
        domain: &'a str,
        requirement: &'a Requirement,
        message: &[u8],
    ) -> TlsReports<'a> {
        TlsReports {
            outbound,
            domain,
            requirement,
            rua: is_tls_report(message).then_some(None),
        }
    }

    /// Records the session with `host` at `ip`, if it tried STARTTLS and the domain asks for reports.
    pub(super) async fn seen(&mut self, host: &str, ip: IpAddr, tls: Tls) {
        let Some(recorder) = self.outbound.reports() else {
            return;
        };
        if tls == Tls::NotTried {
            return;
        }
        if self.rua.is_none() {
            let name = format!("_smtp._tls.{}", self.domain);
            let records = self.outbound.resolver().txt_or_reason(&name).await;
            self.rua = Some(records.ok().and_then(|r| rua_of(&r)));
        }
        let Some(Some(rua)) = &self.rua else {
            return;
        };
        let failure = match tls {
            Tls::NotTried | Tls::Established => None,
            Tls::NotOffered => Some(failure(
                ResultType::StartTlsNotSupported,
                host,
                ip,
                "STARTTLS not offered",
            )),
            Tls::Failed(why) => Some(failure(classify(&why), host, ip, &why)),
        };
        let seen = Seen {
            domain: self.domain.to_string(),
            rua: rua.clone(),
            policy: details(self.domain, self.requirement),
            failure,
        };
        recorder.record(seen.event(chrono::Utc::now().timestamp()));
    }
}

/// Whether `message` is a TLS report (RFC 8460 4.3: its `TLS-Report-Domain` header field).
fn is_tls_report(message: &[u8]) -> bool {
    let head = match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(end) => &message[..end],
        None => message,
    };
    let head = &head[..head.len().min(64 * 1024)];
    head.split(|b| *b == b'\n')
        .any(|line| line.len() >= 18 && line[..18].eq_ignore_ascii_case(b"TLS-Report-Domain:"))
}

/// The policy applied, as the report states it: the MTA-STS policy (`testing` or `enforce`) or none.
fn details(domain: &str, requirement: &Requirement) -> PolicyDetails {
    let sts = |p: &Policy| PolicyDetails {
        policy_type: PolicyType::Sts,
        policy_string: std::iter::once("version: STSv1".to_string())
            .chain(std::iter::once(format!("mode: {}", p.mode.as_str())))
            .chain(p.mx.iter().map(|mx| format!("mx: {mx}")))
            .chain(std::iter::once(format!("max_age: {}", p.max_age)))
            .collect(),
        policy_domain: domain.to_string(),
        mx_host: p.mx.clone(),
    };
    match requirement {
        Requirement::Enforce(p) | Requirement::Testing(p) => sts(p),
        Requirement::None => PolicyDetails {
            policy_type: PolicyType::NoPolicyFound,
            policy_string: Vec::new(),
            policy_domain: domain.to_string(),
            mx_host: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::is_tls_report;

    #[test]
    fn tls_reports_are_known_by_their_header_field() {
        assert!(is_tls_report(
            b"From: a@a.test\r\nTLS-Report-Domain: b.test\r\n\r\nbody"
        ));
        assert!(is_tls_report(b"tls-report-domain: b.test\r\n\r\n"));
        assert!(!is_tls_report(
            b"From: a@a.test\r\n\r\nTLS-Report-Domain: in the body"
        ));
    }
}
