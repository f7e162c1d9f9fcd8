//! DMARC (RFC 7489 / RFC 9989): is the From domain aligned with a domain that SPF or DKIM authenticated, and if
//! not, what does the From domain ask receivers to do?
//!
//! mail-auth finds the policy record (DNS tree walk), checks alignment of the SPF domain and of every passing
//! DKIM signature, and applies `t=y` (test mode lowers the policy one step). A From header naming mailboxes in
//! several domains is exempt (mail-auth returns `none`), as RFC 7489 6.6.1 allows.

use std::time::Duration;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, DkimOutput, DmarcResult, MessageAuthenticator, SpfOutput};

use super::results::Outcome;

/// The DMARC result for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmarc {
    /// pass, fail, none (no record, no From), temperror or permerror.
    pub outcome: Outcome,
    /// The RFC5322.From domain (empty when the message has none usable).
    pub domain: String,
    /// The policy the domain asks for (after `sp=`/`np=` and `t=y`); meaningful when `outcome` is fail.
    pub policy: Policy,
}

/// What the domain's policy asks for, as a word for logs: `none`, `quarantine` or `reject`.
pub fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    }
}

/// Evaluates DMARC for `message` given the SPF output for `mail_from_domain` and the DKIM outputs; gives up
/// with temperror after `timeout`.
pub async fn check(
    auth: &MessageAuthenticator,
    message: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    mail_from_domain: &str,
    spf: &SpfOutput,
    timeout: Duration,
) -> Dmarc {
    let params = DmarcParameters::new(message, dkim, mail_from_domain, spf);
    let Ok(output) = tokio::time::timeout(timeout, auth.verify_dmarc(params)).await else {
        return Dmarc {
            outcome: Outcome::TempError,
            domain: from_domain(message),
            policy: Policy::None,
        };
    };
    let outcome = match output.result() {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    };
    Dmarc {
        outcome,
        domain: output.domain().to_string(),
        policy: output.policy(),
    }
}

/// The domain of the first From mailbox, for a result that came from no evaluation.
fn from_domain(message: &AuthenticatedMessage<'_>) -> String {
    message
        .from
        .first()
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}
