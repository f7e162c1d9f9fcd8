//! DKIM (RFC 6376): every signature of the message, verified through DNS by mail-auth.
//!
//! Results follow `crate::dkim::verify` (what `mailctl dkim verify` reports): a body hash mismatch is `fail`
//! (mail-auth says neutral; RFC 6376 6.1.3 makes it a failure) and rsa-sha1 never passes (RFC 8301), neither
//! here nor for DMARC. A message with many signatures costs one DNS lookup each, so only the first
//! [`MAX_SIGNATURES`] are verified.

use std::time::Duration;

use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::DkimError;
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, MessageAuthenticator};

use super::results::Outcome;

/// Signatures verified per message; further ones are ignored (as if absent).
pub const MAX_SIGNATURES: usize = 8;

/// The result for one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `d=` (empty when the signature could not be parsed).
    pub domain: String,
    /// `s=` (empty when the signature could not be parsed).
    pub selector: String,
    /// pass, fail, neutral, temperror or permerror.
    pub outcome: Outcome,
}

/// What DKIM verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dkim {
    /// Verification finished: one entry per signature (empty: the message is unsigned).
    Verified(Vec<Signature>),
    /// DNS did not answer in time; nothing is known.
    TimedOut,
}

impl Dkim {
    /// The single result for the log: pass if any signature passed, none if unsigned, else the first failure.
    pub fn summary(&self) -> Outcome {
        match self {
            Dkim::TimedOut => Outcome::TempError,
            Dkim::Verified(sigs) if sigs.is_empty() => Outcome::None,
            Dkim::Verified(sigs) if sigs.iter().any(|s| s.outcome == Outcome::Pass) => {
                Outcome::Pass
            }
            Dkim::Verified(sigs) => sigs
                .iter()
                .map(|s| s.outcome)
                .find(|o| matches!(o, Outcome::Fail | Outcome::PermError))
                .unwrap_or(sigs[0].outcome),
        }
    }

    /// Whether the configured action applies: at least one signature, none passes, and at least one failed for
    /// good (fail or permerror). A temperror anywhere holds the action back: that signature may pass later.
    pub fn failed(&self) -> bool {
        let Dkim::Verified(sigs) = self else {
            return false;
        };
        !sigs.is_empty()
            && sigs
                .iter()
                .all(|s| !matches!(s.outcome, Outcome::Pass | Outcome::TempError))
            && sigs
                .iter()
                .any(|s| matches!(s.outcome, Outcome::Fail | Outcome::PermError))
    }
}

/// Whether mail-auth's result is a pass that RFC 8301 forbids counting (rsa-sha1).
fn sha1_pass(output: &DkimOutput<'_>) -> bool {
    matches!(output.result(), DkimResult::Pass)
        && output
            .signature()
            .is_some_and(|s| s.a == Algorithm::RsaSha1)
}

fn outcome(output: &DkimOutput<'_>) -> Outcome {
    match output.result() {
        _ if sha1_pass(output) => Outcome::PermError,
        DkimResult::Pass => Outcome::Pass,
        DkimResult::Fail(_) => Outcome::Fail,
        DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            Outcome::Fail
        }
        DkimResult::Neutral(_) => Outcome::Neutral,
        DkimResult::TempError(_) => Outcome::TempError,
        DkimResult::PermError(_) => Outcome::PermError,
        DkimResult::None => Outcome::None,
    }
}

/// Drops signatures beyond [`MAX_SIGNATURES`] from a parsed message, before verification.
pub fn limit(message: &mut AuthenticatedMessage<'_>) {
    message.dkim_headers.truncate(MAX_SIGNATURES);
}

/// Verifies every signature of `message`, giving up after `timeout`. Returns the results and, unless it timed
/// out, mail-auth's outputs for DMARC (with rsa-sha1 passes turned into permerrors).
pub async fn check<'x>(
    auth: &MessageAuthenticator,
    message: &'x AuthenticatedMessage<'x>,
    timeout: Duration,
) -> (Dkim, Vec<DkimOutput<'x>>) {
    let Ok(outputs) = tokio::time::timeout(timeout, auth.verify_dkim(message)).await else {
        return (Dkim::TimedOut, Vec::new());
    };
    let sigs = outputs
        .iter()
        .map(|o| Signature {
            domain: o.signature().map(|s| s.d.clone()).unwrap_or_default(),
            selector: o.signature().map(|s| s.s.clone()).unwrap_or_default(),
            outcome: outcome(o),
        })
        .collect();
    let for_dmarc = outputs
        .into_iter()
        .map(|o| {
            if sha1_pass(&o) {
                DkimOutput::perm_err(mail_auth::Error::Dkim(DkimError::UnsupportedAlgorithm))
            } else {
                o
            }
        })
        .collect();
    (Dkim::Verified(sigs), for_dmarc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(outcome: Outcome) -> Signature {
        Signature {
            domain: "example.org".into(),
            selector: "s".into(),
            outcome,
        }
    }

    #[test]
    fn the_action_needs_a_signature_none_passing_and_a_real_failure() {
        use Outcome::*;
        let d = |o: &[Outcome]| Dkim::Verified(o.iter().map(|o| sig(*o)).collect());
        assert!(!d(&[]).failed(), "unsigned mail is not a DKIM failure");
        assert!(d(&[Fail]).failed());
        assert!(d(&[PermError, Neutral]).failed());
        assert!(!d(&[Fail, Pass]).failed());
        assert!(!d(&[Fail, TempError]).failed());
        assert!(!d(&[Neutral]).failed());
        assert!(!Dkim::TimedOut.failed());
        assert_eq!(d(&[Neutral, Fail]).summary(), Fail);
        assert_eq!(d(&[Fail, Pass]).summary(), Pass);
        assert_eq!(d(&[]).summary(), None);
    }
}
