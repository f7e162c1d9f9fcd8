//! What a relay host changes for the audit. When the domain's mail leaves through a relay host on another
//! machine (`mailctl relay set`, or `[server.outbound.relay]` for a hosted domain), receivers connect from the
//! relay's IP: they judge its PTR, its blocklist listings and its HELO, never this server's. So:
//!
//! - `ptr.relay`: one INFO naming the relay and saying so;
//! - the findings about this server's own addresses as a sender (`ptr.exists`, `ptr.fcrdns`, `ptr.generic`,
//!   `dnsbl.listed` of an IP, `smtp.banner_name`) keep their detail but a FAIL or WARN among them becomes INFO:
//!   they matter only for mail this server would send itself. UNKNOWN stays UNKNOWN (it could not be tested).
//!
//! A relay on this machine (`localhost`, a loopback address) sends from this server's addresses: nothing changes.
//! SPF is judged for the relay's addresses by the SPF family itself (`spf.pass`, `spf.relay`).

use crate::audit::{Finding, Status};
use crate::records::Relayed;

/// The ids that judge this server's addresses as a sender.
const SENDER_IDENTITY: [&str; 5] = [
    "ptr.exists",
    "ptr.fcrdns",
    "ptr.generic",
    "dnsbl.listed",
    "smtp.banner_name",
];

/// The `ptr.relay` INFO for the domain.
pub fn finding(domain: &str, relay: &Relayed) -> Finding {
    Finding::new(
        "ptr.relay",
        Status::Info,
        domain,
        format!(
            "mail from {domain} leaves through the relay host {}: receivers check the relay's IP, its PTR and \
             blocklist listings, not this server's; the PTR, blocklist and banner findings of this server's \
             addresses only matter for mail it sends itself",
            relay.url
        ),
    )
}

/// Turns a FAIL or WARN about this server's addresses as a sender into INFO, saying why.
pub fn discount(findings: &mut [Finding], relay: &Relayed) {
    for f in findings.iter_mut() {
        if SENDER_IDENTITY.contains(&f.id) && matches!(f.status, Status::Fail | Status::Warn) {
            f.detail = format!(
                "{} (does not matter for outbound mail, which leaves through the relay host {})",
                f.detail, relay.host
            );
            f.status = Status::Info;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sender_identity_problems_are_discounted() {
        let relay = Relayed {
            url: "smtp://smtp.p.example:587".into(),
            host: "smtp.p.example".into(),
            local: false,
            spf_include: None,
        };
        let mut findings = vec![
            Finding::new("ptr.fcrdns", Status::Fail, "192.0.2.1", "no match"),
            Finding::new("dnsbl.listed", Status::Unknown, "192.0.2.1", "timeout"),
            Finding::new("smtp.banner_name", Status::Warn, "mx (192.0.2.1)", "x"),
            Finding::new("spf.pass", Status::Fail, "192.0.2.1", "fail"),
        ];
        discount(&mut findings, &relay);
        let statuses: Vec<Status> = findings.iter().map(|f| f.status).collect();
        assert_eq!(
            statuses,
            [Status::Info, Status::Unknown, Status::Info, Status::Fail]
        );
        assert!(
            findings[0]
                .detail
                .ends_with("leaves through the relay host smtp.p.example)")
        );
    }
}
