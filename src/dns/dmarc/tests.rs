//! Unit tests of the tree walk's pure parts: the names queried, the organizational domain, the record read at
//! one name, the policy chosen.

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
