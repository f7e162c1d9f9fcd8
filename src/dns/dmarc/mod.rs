//! DMARC policy discovery (RFC 9989 section 4.10, "DMARCbis"): the DNS tree walk from a domain towards its
//! top-level domain, the organizational domain the walk determines, and the policy that applies to the domain.
//!
//! This is mailctl's one implementation of the walk: the audit judges domains with it and `mailctl serve` applies
//! the policy it finds (`smtp::inbound::checks::dmarc`). It gives what mail-auth 0.13.3's private walk
//! (`MessageAuthenticator::verify_dmarc`, `dmarc/verify.rs`) gives, which `tests/it/audit_dmarc_walk.rs` holds
//! against one zone as an independent second opinion:
//! - The names queried ([`walk_names`]): `_dmarc.DOMAIN`, then, when DOMAIN has eight labels or more, straight
//!   to its last seven, then one label less at a time down to the top-level domain: at most eight queries.
//! - A name holds a record when one of its TXT records parses with mail-auth's own DMARC parser (the first that
//!   does is used). A record carrying `psd=y` or `psd=n` ends the walk. A lookup that gets no answer ends the
//!   walk with no result (receivers: temperror), and so does a record that starts with `v=DMARC1` but does not
//!   parse (receivers: permerror): a broken record anywhere on the path breaks DMARC for the whole subtree.
//! - The organizational domain ([`organizational_domain`]): nearest first, the first record with `psd=n` names
//!   it; the first with `psd=y` (above the start) puts it one label below that public suffix domain; otherwise
//!   it is the highest name holding a record, and the domain itself when none does.
//! - The applying record: the domain's own, else the organizational domain's, else the highest one found (a
//!   public suffix domain's). Its policy ([`applying_policy`]): without a valid `p=` it is `none` when the
//!   record has a `rua=` report address and DMARC does not apply otherwise; the own record's `p=`; an inherited
//!   record's `np=` when the domain does not exist (its A query says NXDOMAIN) and `np` differs from `sp`, else
//!   its `sp=` (which defaults to `p=`). `t=y` lowers the result one step (reject to quarantine to none).
//!
//! One difference, on purpose: when a name holds a DMARC record that does not parse and no other that does, next
//! to other TXT records, mail-auth lets the last TXT record of the answer decide: "invalid" when it is the broken
//! one, "no record" (the walk goes on) when it is another. The answer order is the server's whim, so here such a
//! name is always invalid, what mail-auth says when the broken record comes last (always, with one TXT record).

use mail_auth::common::parse::TxtRecordParser;
pub use mail_auth::dmarc::{Dmarc as Record, Policy, Psd};
use mail_auth::{DnsError, Error as AuthError};

use super::{Answer, RecordType, Resolver};

/// After the first query, a name of this many labels or more skips straight to its last [`SHORTCUT`] labels.
const CAP: usize = 8;
/// The label count the walk jumps to from a long name (RFC 9989 4.10: at most eight queries in all).
const SHORTCUT: usize = 7;

/// `domain` without a trailing dot, lower-cased: how the walk compares names.
fn normalize(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

fn label_count(domain: &str) -> usize {
    domain.split('.').filter(|l| !l.is_empty()).count()
}

/// The suffix of `domain` after its `n` leftmost labels ("" when there are not that many).
fn drop_leftmost_labels(domain: &str, n: usize) -> &str {
    let mut suffix = domain;
    for _ in 0..n {
        match suffix.split_once('.') {
            Some((_, rest)) => suffix = rest,
            None => return "",
        }
    }
    suffix
}

/// The domains whose `_dmarc.` names the tree walk queries for `domain`, nearest first (see the module doc); none
/// for a single label.
pub fn walk_names(domain: &str) -> Vec<&str> {
    let domain = domain.trim_end_matches('.');
    let total = label_count(domain);
    let mut names = Vec::new();
    if total < 2 {
        return names;
    }
    let mut count = total;
    loop {
        names.push(drop_leftmost_labels(domain, total - count));
        if count == 1 {
            return names;
        }
        count = if count >= CAP { SHORTCUT } else { count - 1 };
    }
}

/// The name one label below the public suffix domain `psd` on the way to `start`.
fn one_label_below<'a>(psd: &str, start: &'a str) -> &'a str {
    let depth = label_count(psd) + 1;
    drop_leftmost_labels(start, label_count(start).saturating_sub(depth))
}

/// How the walk determined a domain's organizational domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The nearest record with a `psd=` says `psd=n`: its domain is the organizational domain.
    PsdNo,
    /// The nearest record with a `psd=` says `psd=y` (and is above the start): the organizational domain is one
    /// label below that public suffix domain.
    PsdYes,
    /// No record says `psd=y` or `psd=n`: the highest name holding a record is the organizational domain.
    Highest,
}

/// Which of the records found (nearest first, as (domain, `psd=`)) decides the organizational domain, and how.
fn decide(found: &[(&str, &Psd)], start: &str) -> Option<(usize, Basis)> {
    for (i, (name, psd)) in found.iter().enumerate() {
        match psd {
            Psd::No => return Some((i, Basis::PsdNo)),
            Psd::Yes if *name != start => return Some((i, Basis::PsdYes)),
            _ => {}
        }
    }
    found.len().checked_sub(1).map(|i| (i, Basis::Highest))
}

/// The organizational domain of `start` given the records its walk found, nearest first, as (domain, `psd=`):
/// see the module doc. None when the walk found no record (receivers then use `start` itself).
pub fn organizational_domain<'a>(found: &[(&'a str, &Psd)], start: &'a str) -> Option<&'a str> {
    let (i, basis) = decide(found, start)?;
    let name = found[i].0;
    Some(match basis {
        Basis::PsdYes => one_label_below(name, start),
        Basis::PsdNo | Basis::Highest => name,
    })
}

/// Whether receivers read `text` as a DMARC record: it starts with `v=DMARC1`, whether or not the rest parses.
pub fn is_dmarc(text: &str) -> bool {
    !matches!(
        Record::parse(text.as_bytes()),
        Err(AuthError::Dns(DnsError::InvalidRecordType))
    )
}

/// What the TXT records at one `_dmarc.` name amount to.
#[derive(Debug, PartialEq)]
enum AtName {
    /// The record receivers use: the index of its text among the TXT records, and what it says.
    Record(usize, Box<Record>),
    /// No TXT record there starts with `v=DMARC1`.
    None,
    /// The first TXT record that starts with `v=DMARC1` but cannot be parsed.
    Invalid(usize),
}

/// Reads the TXT records of one name with mail-auth's DMARC parser, as its resolver does: the first record that
/// parses is the one.
fn classify(txt: &[String]) -> AtName {
    let mut invalid = None;
    for (i, text) in txt.iter().enumerate() {
        match Record::parse(text.as_bytes()) {
            Ok(record) => return AtName::Record(i, Box::new(record)),
            Err(AuthError::Dns(DnsError::InvalidRecordType)) => {}
            Err(_) => {
                invalid.get_or_insert(i);
            }
        }
    }
    invalid.map_or(AtName::None, AtName::Invalid)
}

/// One name the walk queried.
#[derive(Debug, Clone)]
pub struct Step {
    /// The domain whose `_dmarc.` name was queried.
    pub domain: String,
    /// Every TXT record at `_dmarc.DOMAIN`, strings joined (empty for NXDOMAIN or no TXT records).
    pub txt: Vec<String>,
    /// The DMARC record receivers use there: its text and what mail-auth reads in it.
    pub record: Option<(String, Box<Record>)>,
}

impl Step {
    /// `_dmarc.DOMAIN`.
    pub fn name(&self) -> String {
        format!("_dmarc.{}", self.domain)
    }

    /// The `psd=` of the record here (None without a record).
    pub fn psd(&self) -> Option<&Psd> {
        self.record.as_ref().map(|(_, r)| &r.psd)
    }
}

/// Why a tree walk has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// The query of `name` got no answer (timeout, SERVFAIL, REFUSED): receivers say temperror.
    Lookup {
        /// The `_dmarc.` name queried.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The record at `name` starts with `v=DMARC1` but does not parse: receivers say permerror.
    Invalid {
        /// The `_dmarc.` name queried.
        name: String,
        /// The record's text.
        record: String,
    },
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Lookup { name, reason } => write!(f, "lookup of {name} failed: {reason}"),
            WalkError::Invalid { name, record } => {
                write!(f, "invalid DMARC record at {name}: {record}")
            }
        }
    }
}

/// The result of one tree walk.
#[derive(Debug, Clone)]
pub struct Walk {
    /// The domain the walk started from (no trailing dot, lower case).
    pub start: String,
    /// The names queried, nearest first, up to the one that ended the walk.
    pub steps: Vec<Step>,
}

impl Walk {
    /// The steps that found a record, nearest first.
    pub fn found(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.record.is_some())
    }

    /// The records found as (domain, `psd=`), nearest first.
    fn psds(&self) -> Vec<(&str, &Psd)> {
        self.found()
            .filter_map(|(_, s)| Some((s.domain.as_str(), s.psd()?)))
            .collect()
    }

    /// The organizational domain of the start (see [`organizational_domain`]); the start itself when the walk
    /// found no record.
    pub fn organizational_domain(&self) -> &str {
        organizational_domain(&self.psds(), &self.start).unwrap_or(&self.start)
    }

    /// The step whose record decided the organizational domain, and how; None when the walk found no record.
    pub fn organizational_basis(&self) -> Option<(&Step, Basis)> {
        let (i, basis) = decide(&self.psds(), &self.start)?;
        self.found().nth(i).map(|(_, s)| (s, basis))
    }

    /// The step whose record applies to the start: its own, else the organizational domain's, else the highest
    /// one found. None when the walk found no record.
    pub fn applying_step(&self) -> Option<usize> {
        let org = self.organizational_domain();
        let own = self.found().find(|(_, s)| s.domain == self.start);
        let at_org = || self.found().find(|(_, s)| s.domain == org);
        own.or_else(at_org)
            .or_else(|| self.found().last())
            .map(|(i, _)| i)
    }
}

/// Walks the DNS tree from `domain` (see the module doc), one query at a time as receivers do.
pub async fn tree_walk(resolver: &Resolver, domain: &str) -> Result<Walk, WalkError> {
    let start = normalize(domain);
    let mut steps = Vec::new();
    for name in walk_names(&start) {
        let query = format!("_dmarc.{name}");
        let txt = resolver
            .txt_or_reason(&query)
            .await
            .map_err(|reason| WalkError::Lookup {
                name: query.clone(),
                reason,
            })?;
        let record = match classify(&txt) {
            AtName::Record(i, record) => Some((txt[i].clone(), record)),
            AtName::None => None,
            AtName::Invalid(i) => {
                return Err(WalkError::Invalid {
                    name: query,
                    record: txt[i].clone(),
                });
            }
        };
        let stop = record
            .as_ref()
            .is_some_and(|(_, r)| matches!(r.psd, Psd::Yes | Psd::No));
        steps.push(Step {
            domain: name.to_string(),
            txt,
            record,
        });
        if stop {
            break;
        }
    }
    Ok(Walk { start, steps })
}

/// The organizational domain of `domain` as receivers find it when they check alignment: its walk's result;
/// `domain` itself when the walk ends at a record that does not parse; Err only when a lookup got no answer.
pub async fn organizational_domain_of(
    resolver: &Resolver,
    domain: &str,
) -> Result<String, WalkError> {
    match tree_walk(resolver, domain).await {
        Ok(walk) => Ok(walk.organizational_domain().to_string()),
        Err(WalkError::Invalid { .. }) => Ok(normalize(domain)),
        Err(e) => Err(e),
    }
}

/// The tag of the applying record that decides the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `p=`: the domain's own record.
    P,
    /// No valid `p=`, but a `rua=`: the record is read as `p=none`.
    ImpliedNone,
    /// `sp=` (or `p=` when the record has no `sp=`): an existing subdomain.
    Sp,
    /// `np=`: a subdomain that does not exist.
    Np,
}

/// The policy `record` sets for the domain, per the module doc: None when DMARC does not apply (no valid `p=`
/// and no `rua=`). `own`: the record is the domain's own; `exists` is asked only when `np=` could apply, and
/// says whether the domain exists (None: the lookup failed, which counts as existing).
pub async fn applying_policy<F, Fut>(record: &Record, own: bool, exists: F) -> Option<(Tag, Policy)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<bool>>,
{
    if record.p == Policy::Unspecified {
        return (!record.rua.is_empty()).then_some((Tag::ImpliedNone, Policy::None));
    }
    if own {
        return Some((Tag::P, record.p));
    }
    if record.np != record.sp && exists().await == Some(false) {
        return Some((Tag::Np, record.np));
    }
    Some((Tag::Sp, record.sp))
}

/// `policy` as applied under `t=y` (test mode): one step less strict.
pub fn testing(policy: Policy) -> Policy {
    match policy {
        Policy::Reject => Policy::Quarantine,
        Policy::Quarantine => Policy::None,
        other => other,
    }
}

/// The policy that applies to a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Index into [`Walk::steps`] of the record's owner.
    pub step: usize,
    /// The record is the domain's own (not inherited).
    pub own: bool,
    /// The tag that decided.
    pub tag: Tag,
    /// That tag's value.
    pub published: Policy,
    /// The policy receivers apply: `published`, one step lower under `t=y`.
    pub effective: Policy,
}

/// What the walk decides for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No DMARC record on the whole walk: DMARC does not apply.
    NoRecord,
    /// The applying record (at this step) has neither a valid `p=` nor a `rua=`: DMARC does not apply.
    NoPolicy(usize),
    /// This policy applies.
    Applies(Applied),
}

/// Policy discovery for one domain: the walk, the organizational domain and the verdict.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The tree walk from the domain.
    pub walk: Walk,
    /// The domain's organizational domain (the domain itself when the walk found no record).
    pub organizational: String,
    /// The policy that applies, if any.
    pub verdict: Verdict,
}

/// Whether `domain` exists, as receivers ask before applying `np=`: its A query answers NXDOMAIN or not.
async fn exists(resolver: &Resolver, domain: &str) -> Option<bool> {
    match resolver.query(domain, RecordType::A).await {
        Answer::NxDomain => Some(false),
        Answer::Records { .. } | Answer::NoData => Some(true),
        Answer::Failed(_) => None,
    }
}

/// Finds the DMARC policy that applies to `domain`, as receivers following RFC 9989 (and `mailctl serve`) do.
pub async fn discover(resolver: &Resolver, domain: &str) -> Result<Discovery, WalkError> {
    let walk = tree_walk(resolver, domain).await?;
    let organizational = walk.organizational_domain().to_string();
    let verdict = match walk.applying_step() {
        None => Verdict::NoRecord,
        Some(step) => {
            let s = &walk.steps[step];
            let own = s.domain == walk.start;
            let record = s.record.as_ref().map(|(_, r)| r.as_ref());
            let applied = match record {
                Some(r) => applying_policy(r, own, || exists(resolver, &walk.start))
                    .await
                    .map(|p| (p, r.t)),
                None => None,
            };
            match applied {
                None => Verdict::NoPolicy(step),
                Some(((tag, published), t)) => Verdict::Applies(Applied {
                    step,
                    own,
                    tag,
                    published,
                    effective: if t { testing(published) } else { published },
                }),
            }
        }
    };
    Ok(Discovery {
        walk,
        organizational,
        verdict,
    })
}

#[cfg(test)]
mod tests;
