//! Verifying every DKIM-Signature of a message through DNS, the way a receiver does (mail-auth).

use mail_auth::{AuthenticatedMessage, DkimResult};
use serde::Serialize;

use crate::dns::Resolver;

/// The outcome for one signature.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureResult {
    /// `d=`
    pub domain: String,
    /// `s=`
    pub selector: String,
    /// `pass`, `fail`, `neutral`, `temperror`, `permerror` (RFC 8601 names).
    pub result: &'static str,
    /// Why it did not pass, in words an admin can act on.
    pub reason: Option<String>,
}

impl SignatureResult {
    /// Whether this result passed.
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }
}

fn explain(err: &mail_auth::Error) -> String {
    use mail_auth::Error as E;
    use mail_auth::common::crypto::CryptoError;
    use mail_auth::dkim::DkimError;
    match err {
        E::Crypto(CryptoError::FailedVerification) => {
            "signature does not verify with the key published in DNS (key mismatch, or signed headers changed)"
                .into()
        }
        E::Crypto(CryptoError::IncompatibleAlgorithms) => {
            "the key in DNS is of another type than the signature (k= vs a=)".into()
        }
        E::Dkim(DkimError::FailedBodyHashMatch) => "body hash mismatch: the body was altered after signing".into(),
        E::Dkim(DkimError::RevokedPublicKey) => "the key is revoked in DNS (empty p=)".into(),
        E::Dkim(DkimError::SignatureExpired) => "the signature has expired (x=)".into(),
        E::Dns(mail_auth::DnsError::RecordNotFound(_)) => "no key record in DNS for this selector".into(),
        E::Dns(mail_auth::DnsError::InvalidRecordType) | E::ParseError => {
            "the record at the selector is not a valid DKIM key record".into()
        }
        E::Dns(e) => format!("DNS lookup failed: {e}"),
        other => other.to_string(),
    }
}

/// Verifies every signature of `message`. `None` when the message cannot be parsed.
pub async fn verify(resolver: &Resolver, message: &[u8]) -> Option<Vec<SignatureResult>> {
    let parsed = AuthenticatedMessage::parse(message)?;
    let outputs = resolver.authenticator().verify_dkim(&parsed).await;
    Some(
        outputs
            .iter()
            .map(|o| {
                let (domain, selector) = o
                    .signature()
                    .map(|s| (s.d.clone(), s.s.clone()))
                    .unwrap_or_default();
                let sha1 = o
                    .signature()
                    .is_some_and(|s| s.a == mail_auth::common::crypto::Algorithm::RsaSha1);
                let (result, reason) = match o.result() {
                    // RFC 8301: verifiers must not consider rsa-sha1 signatures valid.
                    DkimResult::Pass if sha1 => (
                        "permerror",
                        Some("rsa-sha1 signatures are not accepted (RFC 8301)".to_string()),
                    ),
                    DkimResult::Pass => ("pass", None),
                    DkimResult::Fail(e) => ("fail", Some(explain(e))),
                    // mail-auth reports a body hash mismatch as neutral; RFC 6376 (6.1.3) makes it a failure.
                    DkimResult::Neutral(
                        e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch),
                    ) => ("fail", Some(explain(e))),
                    DkimResult::Neutral(e) => ("neutral", Some(explain(e))),
                    DkimResult::TempError(e) => ("temperror", Some(explain(e))),
                    DkimResult::PermError(e) => ("permerror", Some(explain(e))),
                    DkimResult::None => ("none", Some("no DKIM-Signature header".into())),
                };
                SignatureResult {
                    domain,
                    selector,
                    result,
                    reason,
                }
            })
            .collect(),
    )
}
