//! ARC (RFC 8617): the set of headers a forwarder adds so that the next receiver can see what this server
//! concluded about the message before forwarding changed it (`ARC-Authentication-Results`), signed over the
//! message as forwarded (`ARC-Message-Signature`) and chained to earlier sets (`ARC-Seal`, with `cv=` saying
//! whether the chain this server received verified). mail-auth does the cryptography with the forwarding
//! domain's stored DKIM key (the same selector publishes it), which must be RSA: RFC 8617 defines ARC for
//! rsa-sha256 only, and receivers do not verify other algorithms there.

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, Done};
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};

use super::sign::{Key, headers_to_sign};
use super::{KeyAlgorithm, KeyPair};
use crate::model::{DomainName, Selector};

/// The ARC set for `message` (CRLF, exactly as it will be sent on), as header fields to put in front of it.
/// `results` are this server's findings (they become `ARC-Authentication-Results`), `chain` is the
/// verification of the ARC sets the message arrived with. An arrived chain that failed is not sealed again
/// (RFC 8617 5.1.2: the chain is over); that is an error here, as is a message mail-auth cannot parse.
pub fn seal(
    message: &[u8],
    domain: &DomainName,
    selector: &Selector,
    key: &KeyPair,
    results: &AuthenticationResults<'_>,
    chain: &ArcOutput<'_>,
) -> Result<Vec<u8>, String> {
    if key.algorithm != KeyAlgorithm::Rsa {
        return Err(
            "ARC (RFC 8617) is defined for rsa-sha256 only; the domain's active key is Ed25519"
                .into(),
        );
    }
    if !chain.can_be_sealed() {
        return Err("the ARC chain the message arrived with failed: not sealed again".into());
    }
    let parsed =
        AuthenticatedMessage::parse(message).ok_or("the message cannot be parsed as RFC 5322")?;
    let mut headers = headers_to_sign(message);
    if parsed
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"DKIM-Signature"))
    {
        headers.push("DKIM-Signature".into());
    }
    let failed = |e: mail_auth::Error| format!("ARC sealing failed: {e}");
    let signing = Key::cached(&key.private_pem, key.algorithm)?;
    let set = super::sign::with_key!(signing, |k| sealed(
        ArcSealer::from_key(k),
        domain,
        selector,
        &headers,
        &parsed,
        results,
        chain
    ))
    .map_err(failed)?;
    Ok(set.into_bytes())
}

fn sealed<T: SigningKey<Hasher = Sha256>>(
    sealer: ArcSealer<T, mail_auth::dkim::NeedDomain>,
    domain: &DomainName,
    selector: &Selector,
    headers: &[String],
    message: &AuthenticatedMessage<'_>,
    results: &AuthenticationResults<'_>,
    chain: &ArcOutput<'_>,
) -> mail_auth::Result<String> {
    let sealer: ArcSealer<T, Done> = sealer
        .domain(domain.as_str())
        .selector(selector.as_str())
        .headers(headers.iter().map(String::as_str))
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed);
    Ok(sealer.seal(message, results, chain)?.to_header())
}
