//! DMARC (RFC 9989): is the From domain aligned with a domain that SPF or DKIM authenticated, and if not, what
//! does the From domain ask receivers to do?
//!
//! The policy comes from [`crate::dns::dmarc::discover`], the one implementation of the DNS tree walk, which the
//! audit uses too: what `mailctl audit` says a domain publishes is what `serve` applies. Alignment (RFC 9989
//! 4.10.2): strict, the authenticated domain is the From domain; relaxed (the default), both have the same
//! organizational domain, found by a tree walk from the authenticated domain. The evaluation follows mail-auth's
//! `verify_dmarc` step for step (`tests/it/audit_dmarc_walk.rs` holds the two against one zone):
//! - A From header naming mailboxes in several domains is exempt (`none`), as RFC 7489 6.6.1 allows; no usable
//!   From domain is `none` too. One difference, on purpose: a trailing dot (`bank.example.`) is dropped, so such
//!   a From gets the policy of `bank.example`, where mail-auth asks for `_dmarc.bank.example..` and finds none.
//! - A walk that gets no answer is `temperror`, a broken record on the walk `permerror`; no record, or an
//!   applying record with neither `p=` nor `rua=`, is `none`.
//! - SPF counts when it passed or had a temporary error: aligned and passed is a pass; aligned with a temporary
//!   error (or an alignment walk that got no answer) is a `temperror`.
//! - Each DKIM signature that passed or had a temporary error counts the same way; one aligned pass is enough.
//! - The best of the two decides (pass, then temperror); with neither, the message fails and the policy
//!   (after `sp=`/`np=` and `t=y`) says what to do.

use std::time::Duration;

use mail_auth::common::to_a_label;
use mail_auth::dmarc::{Alignment, Policy};
use mail_auth::report::{DmarcResult, Record, SPFDomainScope};
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, SpfOutput, SpfResult};

use super::results::Outcome;
use crate::dns::Resolver;
use crate::dns::dmarc::{Verdict, WalkError, discover, organizational_domain_of};
use crate::reports::send::dmarc::{Published, Seen};

/// The DMARC result for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmarc {
    /// pass, fail, none (no record, no From), temperror or permerror.
    pub outcome: Outcome,
    /// The RFC5322.From domain (empty when the message has none usable).
    pub domain: String,
    /// The policy the domain asks for (after `sp=`/`np=` and `t=y`); meaningful when `outcome` is fail.
    pub policy: Policy,
    /// The message as the domain's aggregate report will count it, when the policy asks for reports (`rua=`);
    /// the source IP and the disposition are filled in later.
    pub seen: Option<Box<Seen>>,
}

impl Dmarc {
    fn new(outcome: Outcome, domain: &str) -> Dmarc {
        Dmarc {
            outcome,
            domain: domain.to_string(),
            policy: Policy::None,
            seen: None,
        }
    }
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
    resolver: &Resolver,
    message: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    mail_from_domain: &str,
    spf: &SpfOutput,
    timeout: Duration,
) -> Dmarc {
    let Some(from) = author_domain(message) else {
        return Dmarc::new(Outcome::None, "");
    };
    let evaluation = evaluate(resolver, &from, dkim, mail_from_domain, spf);
    tokio::time::timeout(timeout, evaluation)
        .await
        .unwrap_or_else(|_| Dmarc::new(Outcome::TempError, &from))
}

/// `domain` as DMARC compares names: A-labels, lower case, no trailing dot.
fn normalize(domain: &str) -> String {
    to_a_label(domain.trim_end_matches('.')).to_ascii_lowercase()
}

/// The RFC5322.From domain: None without one, or when the mailboxes name several domains (exempt). As
/// mail-auth does it: the first non-empty domain is the author domain, and any later domain that differs from
/// it (an empty one too) exempts the message; `From: <x@>, <ceo@bank.example>` is judged as bank.example.
fn author_domain(message: &AuthenticatedMessage<'_>) -> Option<String> {
    let mut author = String::new();
    for (_, domain) in message.from.iter().filter_map(|f| f.rsplit_once('@')) {
        let domain = normalize(domain);
        if author.is_empty() {
            author = domain;
        } else if author != domain {
            return None;
        }
    }
    (!author.is_empty()).then_some(author)
}

/// One mechanism's contribution, best first (the order decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mechanism {
    Pass,
    TempError,
    Fail,
}

/// Organizational domains found while checking alignment, so each name is walked once per message.
struct Alignments<'a> {
    resolver: &'a Resolver,
    author: String,
    org: String,
    known: Vec<(String, String)>,
}

impl Alignments<'_> {
    /// Whether `domain` aligns with the From domain under `mode`; Err when an alignment walk got no answer.
    async fn aligned(&mut self, domain: &str, mode: Alignment) -> Result<bool, WalkError> {
        let domain = normalize(domain);
        if domain == self.author {
            return Ok(true);
        }
        let within = domain
            .strip_suffix(self.org.as_str())
            .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.'));
        if mode != Alignment::Relaxed || !within {
            return Ok(false);
        }
        if let Some((_, org)) = self.known.iter().find(|(d, _)| *d == domain) {
            return Ok(*org == self.org);
        }
        let org = organizational_domain_of(self.resolver, &domain).await?;
        let aligned = org == self.org;
        self.known.push((domain, org));
        Ok(aligned)
    }
}

async fn evaluate(
    resolver: &Resolver,
    from: &str,
    dkim: &[DkimOutput<'_>],
    mail_from_domain: &str,
    spf: &SpfOutput,
) -> Dmarc {
    let discovery = match discover(resolver, from).await {
        Ok(discovery) => discovery,
        Err(WalkError::Lookup { .. }) => return Dmarc::new(Outcome::TempError, from),
        Err(WalkError::Invalid { .. }) => return Dmarc::new(Outcome::PermError, from),
    };
    let Verdict::Applies(applied) = &discovery.verdict else {
        return Dmarc::new(Outcome::None, from);
    };
    let Some((_, record)) = &discovery.walk.steps[applied.step].record else {
        return Dmarc::new(Outcome::None, from);
    };
    let mut alignments = Alignments {
        resolver,
        author: from.to_string(),
        org: discovery.organizational.clone(),
        known: vec![(from.to_string(), discovery.organizational.clone())],
    };

    let spf_result = match spf.result() {
        result @ (SpfResult::Pass | SpfResult::TempError) => {
            let passed = result == SpfResult::Pass;
            match alignments.aligned(mail_from_domain, record.aspf).await {
                Ok(true) if passed => Some(Mechanism::Pass),
                Ok(true) | Err(_) => Some(Mechanism::TempError),
                Ok(false) if passed => Some(Mechanism::Fail),
                Ok(false) => None,
            }
        }
        _ => None,
    };

    let mut dkim_pass = false;
    let mut dkim_aligned = false;
    let mut dkim_temp = false;
    for output in dkim {
        let (Some(signature), temporary) = (output.signature(), output.result()) else {
            continue;
        };
        let temporary = match temporary {
            DkimResult::Pass => false,
            DkimResult::TempError(_) => true,
            _ => continue,
        };
        if temporary && dkim_temp {
            continue;
        }
        dkim_pass |= !temporary;
        match alignments.aligned(&signature.d, record.adkim).await {
            Ok(true) if !temporary => {
                dkim_aligned = true;
                break;
            }
            Ok(true) | Err(_) => dkim_temp = true,
            Ok(false) => {}
        }
    }
    let dkim_result = if dkim_aligned {
        Some(Mechanism::Pass)
    } else if dkim_temp {
        Some(Mechanism::TempError)
    } else if dkim_pass {
        Some(Mechanism::Fail)
    } else {
        None
    };

    let outcome = match spf_result.into_iter().chain(dkim_result).min() {
        Some(Mechanism::Pass) => Outcome::Pass,
        Some(Mechanism::TempError) => Outcome::TempError,
        Some(Mechanism::Fail) | None => Outcome::Fail,
    };
    let seen = (!record.rua.is_empty() && outcome != Outcome::TempError).then(|| {
        let published = Published::new(&discovery.walk.steps[applied.step].domain, record);
        let verdict = |m: Option<Mechanism>| match m {
            Some(Mechanism::Pass) => DmarcResult::Pass,
            _ => DmarcResult::Fail,
        };
        let record = Record::new()
            .with_count(1)
            .with_dmarc_dkim_result(verdict(dkim_result))
            .with_dmarc_spf_result(verdict(spf_result))
            .with_header_from(from)
            .with_envelope_from(mail_from_domain)
            .with_dkim_output(dkim)
            .with_spf_output(spf, SPFDomainScope::MailFrom);
        Box::new(Seen { published, record })
    });
    Dmarc {
        outcome,
        domain: from.to_string(),
        policy: applied.effective,
        seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author(from: &str) -> Option<String> {
        let raw = format!("From: {from}\r\nSubject: x\r\n\r\nbody\r\n");
        let message = AuthenticatedMessage::parse(raw.as_bytes()).expect("parses");
        author_domain(&message)
    }

    #[test]
    fn the_author_domain_is_the_first_non_empty_one_and_several_exempt() {
        assert_eq!(
            author("<ceo@Bank.Example>").as_deref(),
            Some("bank.example")
        );
        assert_eq!(
            author("<x@>, <ceo@bank.example>").as_deref(),
            Some("bank.example")
        );
        assert_eq!(
            author("<a@bank.example>, <b@bank.example>").as_deref(),
            Some("bank.example")
        );
        assert_eq!(author("<a@bank.example>, <b@other.example>"), None);
        assert_eq!(author("<a@bank.example>, <b@>"), None);
        assert_eq!(author("undisclosed"), None);
    }
}
