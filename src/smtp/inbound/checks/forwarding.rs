//! What a forwarder must know about a message before sending it on to an outside address, whatever
//! `[server.checks]` says: DKIM, SPF and DMARC as a receiver would judge them here (DMARC `fail` is never
//! forwarded; SPF or DKIM passing aligned with the From domain is what makes the sender authenticated, so
//! bounces go back to it), and the ARC chain the message arrived with (`cv=` of the set this server adds).
//!
//! The outputs are mail-auth's own, borrowed from the parsed message, because the ARC set is built from them
//! ([`crate::dkim::arc`]). Every step is bounded by the checks' step timeout; a step that times out counts as
//! not authenticated (DMARC `temperror` never blocks forwarding, and never authenticates the sender either).

use std::net::IpAddr;

use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, SpfOutput,
};

use super::Checks;
use super::content::fallback_domain;
use super::spf::{self, Spf};

/// The authentication of one message, as forwarding needs it.
pub struct Forwarding<'x> {
    /// Every DKIM signature's result.
    pub dkim: Vec<DkimOutput<'x>>,
    /// The ARC chain's validation.
    pub arc: ArcOutput<'x>,
    /// SPF of the envelope sender (or of the HELO name for the null sender).
    pub spf: SpfOutput,
    /// DMARC of the From domain.
    pub dmarc: DmarcOutput,
    /// The From domain (empty when the message has none).
    pub from_domain: String,
}

impl Forwarding<'_> {
    /// DMARC failed: the From domain says this message is not its own. Never forwarded.
    pub fn dmarc_failed(&self) -> bool {
        matches!(self.dmarc.result(), DmarcResult::Fail(_))
    }

    /// SPF or DKIM passed aligned with the From domain: the sender is who the message says, so a bounce of
    /// the forwarded copy may go back to it.
    pub fn authenticated(&self) -> bool {
        self.dmarc.spf_result() == &DmarcResult::Pass
            || self.dmarc.dkim_result() == &DmarcResult::Pass
    }

    /// Whether the ARC chain the message arrived with verified (or there was none).
    pub fn chain(&self) -> &'static str {
        match self.arc.result() {
            DkimResult::Pass => "pass",
            DkimResult::None => "none",
            _ => "fail",
        }
    }

    /// This server's findings as `ARC-Authentication-Results` carries them (RFC 8601 syntax).
    pub fn results<'h>(
        &self,
        hostname: &'h str,
        ip: IpAddr,
        helo: &str,
        sender: &str,
    ) -> AuthenticationResults<'h> {
        AuthenticationResults::new(hostname)
            .with_dkim_results(&self.dkim, &self.from_domain)
            .with_spf_mailfrom_result(&self.spf, ip, sender, helo)
            .with_arc_result(&self.arc, ip)
            .with_dmarc_result(&self.dmarc)
    }
}

/// The error a step that ran out of time reports.
fn timed_out() -> mail_auth::Error {
    mail_auth::Error::Io("timed out".into())
}

impl Checks {
    /// Authenticates `message` for forwarding: DKIM (at most the checked number of signatures), SPF (the
    /// session's evaluation `spf` when there was one, else evaluated now), DMARC and ARC.
    pub async fn forwarding<'x>(
        &self,
        message: &'x AuthenticatedMessage<'x>,
        spf: Option<&Spf>,
        ip: IpAddr,
        helo: &str,
        sender: &str,
    ) -> Forwarding<'x> {
        let auth = self.resolver.authenticator();
        let timeout = self.step_timeout;
        let ip = ip.to_canonical();
        let spf = match spf {
            Some(s) => s.clone(),
            None => spf::check(auth, ip, helo, sender, &self.hostname, timeout).await,
        };
        let (dkim, arc) = futures_util::future::join(
            tokio::time::timeout(timeout, auth.verify_dkim(message)),
            tokio::time::timeout(timeout, auth.verify_arc(message)),
        )
        .await;
        let dkim = dkim.unwrap_or_default();
        let arc = arc.unwrap_or_else(|_| {
            ArcOutput::default().with_result(DkimResult::TempError(timed_out()))
        });
        let mail_from_domain = if spf.domain.is_empty() {
            fallback_domain(helo, sender)
        } else {
            spf.domain.clone()
        };
        let params = mail_auth::dmarc::verify::DmarcParameters::new(
            message,
            &dkim,
            &mail_from_domain,
            &spf.output,
        );
        let from_domain = message
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let dmarc = match tokio::time::timeout(timeout, auth.verify_dmarc(params)).await {
            Ok(d) => d,
            Err(_) => DmarcOutput::default()
                .with_domain(&from_domain)
                .with_spf_result(DmarcResult::TempError(timed_out()))
                .with_dkim_result(DmarcResult::TempError(timed_out())),
        };
        Forwarding {
            dkim,
            arc,
            spf: spf.output,
            dmarc,
            from_domain,
        }
    }
}
