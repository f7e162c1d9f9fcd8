//! DMARC policy discovery (RFC 9989 section 4.10, "DMARCbis"): the DNS tree walk from a domain towards its
//! top-level domain, the organizational domain the walk determines, and the policy that applies to the domain.
//!
//! This is mailctl's one implementation of the walk; the audit judges domains with it. `mailctl serve` evaluates
//! DMARC with mail-auth 0.13.3 (`MessageAuthenticator::verify_dmarc`), whose walk is private, so this module
//! follows that code (`dmarc/verify.rs`) step for step:
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
//! One difference, on purpose: when several TXT records at one name start with `v=DMARC1` and none parses,
//! mail-auth lets the last one in the answer decide between "invalid" and "no record"; the answer order is the
//! server's whim, so here such a name is always invalid (what mail-auth says when the broken record comes last).

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
mod tests {
    use super::*;

    fn record(text: &str) -> Record {
        Record::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_walk_queries_every_parent_down_to_the_top_level_domain() {
        assert_eq!(
            walk_names("a.b.example.co.test"),
            [
                "a.b.example.co.test",
                "b.example.co.test",
                "example.co.test",
                "co.test",
                "test"
            ]
        );
        assert_eq!(walk_names("example.org."), ["example.org", "org"]);
        assert!(walk_names("localhost").is_empty());
    }

    #[test]
    fn long_names_jump_to_seven_labels_so_the_walk_asks_at_most_eight_names() {
        let long = "a.b.c.d.e.f.g.h.i.j.mail.example.com";
        let names = walk_names(long);
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], long);
        assert_eq!(names[1], "g.h.i.j.mail.example.com");
        assert_eq!(names[7], "com");
        // Exactly eight labels: no label is skipped, and the count is still eight.
        let eight = walk_names("a.b.c.d.e.f.example.com");
        assert_eq!(eight.len(), 8);
        assert_eq!(eight[1], "b.c.d.e.f.example.com");
    }

    #[test]
    fn psd_y_puts_the_organizational_domain_one_label_below_it() {
        let start = "a.b.example.co.test";
        let (plain, yes) = (Psd::Default, Psd::Yes);
        let found = [("example.co.test", &plain), ("co.test", &yes)];
        assert_eq!(
            organizational_domain(&found, start),
            Some("example.co.test")
        );
        // Only the public suffix domain publishes: still one label below it.
        assert_eq!(
            organizational_domain(&[("co.test", &yes)], start),
            Some("example.co.test")
        );
        // psd=y on the start itself says nothing about what lies below it: the highest record decides.
        assert_eq!(
            organizational_domain(&[("co.test", &yes)], "co.test"),
            Some("co.test")
        );
    }

    #[test]
    fn psd_n_names_the_organizational_domain_and_otherwise_the_highest_record_does() {
        let (plain, no) = (Psd::Default, Psd::No);
        let start = "x.dept.corp.test";
        let found = [("dept.corp.test", &no), ("corp.test", &plain)];
        assert_eq!(organizational_domain(&found, start), Some("dept.corp.test"));
        let found = [("dept.corp.test", &plain), ("corp.test", &plain)];
        assert_eq!(organizational_domain(&found, start), Some("corp.test"));
        assert_eq!(organizational_domain(&[], start), None);
    }

    #[test]
    fn the_first_txt_record_that_parses_is_used_and_others_are_skipped() {
        let txt = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let at = classify(&txt(&["v=spf1 -all", "v=DMARC1; p=reject; psd=n"]));
        let AtName::Record(1, r) = at else {
            panic!("{at:?}")
        };
        assert_eq!((r.p, r.psd.clone()), (Policy::Reject, Psd::No));
        assert_eq!(classify(&txt(&["v=spf1 -all"])), AtName::None);
        assert_eq!(classify(&[]), AtName::None);
        // mail-auth discards a record with an invalid value, not just the tag.
        let bad = txt(&["v=DMARC1; p=reject; adkim=x", "v=spf1 -all"]);
        assert_eq!(classify(&bad), AtName::Invalid(0));
        let one_good = txt(&["v=DMARC1; p=block", "v=DMARC1; p=none"]);
        assert!(matches!(classify(&one_good), AtName::Record(1, _)));
    }

    fn policy(text: &str, own: bool, exists: Option<bool>) -> Option<(Tag, Policy)> {
        let r = record(text);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(applying_policy(&r, own, || async move { exists }))
    }

    #[test]
    fn own_records_use_p_inherited_ones_sp_and_np_only_for_names_that_do_not_exist() {
        let r = "v=DMARC1; p=reject; sp=quarantine; np=none";
        assert_eq!(policy(r, true, Some(false)), Some((Tag::P, Policy::Reject)));
        assert_eq!(
            policy(r, false, Some(true)),
            Some((Tag::Sp, Policy::Quarantine))
        );
        assert_eq!(policy(r, false, Some(false)), Some((Tag::Np, Policy::None)));
        // A failed existence lookup counts as existing.
        assert_eq!(policy(r, false, None), Some((Tag::Sp, Policy::Quarantine)));
        // sp defaults to p, np to sp.
        let r = "v=DMARC1; p=reject";
        assert_eq!(
            policy(r, false, Some(false)),
            Some((Tag::Sp, Policy::Reject))
        );
        let r = "v=DMARC1; p=none; np=reject";
        assert_eq!(
            policy(r, false, Some(false)),
            Some((Tag::Np, Policy::Reject))
        );
    }

    #[test]
    fn a_record_without_p_is_none_with_rua_and_does_not_apply_without() {
        let r = "v=DMARC1; rua=mailto:d@example.org";
        assert_eq!(
            policy(r, true, None),
            Some((Tag::ImpliedNone, Policy::None))
        );
        assert_eq!(policy("v=DMARC1; sp=reject", false, None), None);
        assert_eq!(testing(Policy::Reject), Policy::Quarantine);
        assert_eq!(testing(Policy::Quarantine), Policy::None);
        assert_eq!(testing(Policy::None), Policy::None);
    }

    /// The walk `tree_walk` makes through a zone holding `records` (domain, text).
    fn walk(start: &str, records: &[(&str, &str)]) -> Walk {
        let mut steps = Vec::new();
        for name in walk_names(start) {
            let text = records.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
            let step = Step {
                domain: name.to_string(),
                txt: text.map(String::from).into_iter().collect(),
                record: text.map(|t| (t.to_string(), Box::new(record(t)))),
            };
            let stop = matches!(step.psd(), Some(Psd::Yes | Psd::No));
            steps.push(step);
            if stop {
                break;
            }
        }
        Walk {
            start: start.to_string(),
            steps,
        }
    }

    #[test]
    fn the_own_record_wins_then_the_organizational_domains_then_the_highest() {
        let psd = ("co.test", "v=DMARC1; p=none; psd=y");
        let org = ("example.co.test", "v=DMARC1; p=reject");
        let w = walk("a.example.co.test", &[org, psd]);
        assert_eq!(w.organizational_domain(), "example.co.test");
        assert_eq!(
            w.steps[w.applying_step().unwrap()].domain,
            "example.co.test"
        );
        let w = walk(
            "a.example.co.test",
            &[("a.example.co.test", "v=DMARC1; p=none"), org],
        );
        assert_eq!(
            w.steps[w.applying_step().unwrap()].domain,
            "a.example.co.test"
        );
        // The organizational domain publishes nothing: the public suffix domain's record applies.
        let w = walk("a.example.co.test", &[psd]);
        assert_eq!(w.organizational_domain(), "example.co.test");
        assert_eq!(w.steps[w.applying_step().unwrap()].domain, "co.test");
        let w = walk("a.example.co.test", &[]);
        assert_eq!(w.organizational_domain(), "a.example.co.test");
        assert_eq!(w.applying_step(), None);
        assert!(w.organizational_basis().is_none());
    }

    #[test]
    fn the_basis_names_the_record_that_decided_the_organizational_domain() {
        let psd = ("co.test", "v=DMARC1; p=none; psd=y");
        let w = walk(
            "a.example.co.test",
            &[("example.co.test", "v=DMARC1; p=reject"), psd],
        );
        let (step, basis) = w.organizational_basis().unwrap();
        assert_eq!((step.domain.as_str(), basis), ("co.test", Basis::PsdYes));
        let w = walk(
            "x.dept.corp.test",
            &[("dept.corp.test", "v=DMARC1; p=reject; psd=n")],
        );
        let (step, basis) = w.organizational_basis().unwrap();
        assert_eq!(
            (step.domain.as_str(), basis),
            ("dept.corp.test", Basis::PsdNo)
        );
        let w = walk(
            "x.corp.test",
            &[
                ("x.corp.test", "v=DMARC1; p=none"),
                ("corp.test", "v=DMARC1; p=reject"),
            ],
        );
        let (step, basis) = w.organizational_basis().unwrap();
        assert_eq!((step.domain.as_str(), basis), ("corp.test", Basis::Highest));
        assert!(is_dmarc("v=DMARC1; p=block") && is_dmarc("v=DMARC1; p=none"));
        assert!(!is_dmarc("v=spf1 -all"));
    }
}
