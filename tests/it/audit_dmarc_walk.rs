//! The audit and the daemon find the same DMARC policy: one zone with public suffix domains (`psd=y`),
//! organizational domains marked `psd=n`, inherited `sp=` and `np=`, the eight-query cap, `t=y`, external report
//! addresses and a domain without any record, served by an authoritative DNS server on loopback. For each domain
//! the real `mailctl audit` and the daemon's DMARC check (`smtp::inbound::checks::dmarc::check`), which share the
//! walk of `mailctl::dns::dmarc`, must give the expected policy and organizational domain. mail-auth's own
//! `verify_dmarc` (an independent implementation of the same RFC) is the oracle for the daemon's verdicts: on
//! every case, and on a grid of SPF and DKIM results under strict and relaxed alignment, both say the same.
//!
//! Everything sits in the zone `test.`, so the walk's last query (`_dmarc.test.`) gets NXDOMAIN, not REFUSED.

use std::collections::HashMap;
use std::time::Duration;

use kit::TestDb;
use kit::dns::TestDns;
use mail_auth::dkim::Signature;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, DkimOutput, DmarcResult, SpfOutput, SpfResult};
use mailctl::dns::Resolver;
use mailctl::smtp::inbound::checks::Outcome;
use mailctl::smtp::inbound::checks::dmarc;

const ZONE: &str = r#"
; co.test is a public suffix domain with a policy of its own: each name below it is an organization.
_dmarc.co.test.                  IN TXT "v=DMARC1; p=quarantine; psd=y"
example.co.test.                 IN A   192.0.2.1
_dmarc.example.co.test.          IN TXT "v=DMARC1; p=reject; sp=none; np=quarantine; rua=mailto:d@other.co.test"
example.co.test._report._dmarc.other.co.test. IN TXT "v=DMARC1"
a.b.example.co.test.             IN A   192.0.2.2
; Eleven labels: after the first query the walk jumps to the last seven, so the record at nine labels (which
; would make that name the organizational domain) is never seen.
a.b.c.d.e.f.g.h.example.co.test. IN A   192.0.2.3
_dmarc.c.d.e.f.g.h.example.co.test. IN TXT "v=DMARC1; p=reject; psd=n"
other.co.test.                   IN A   192.0.2.4
unauth.co.test.                  IN A   192.0.2.5
_dmarc.unauth.co.test.           IN TXT "v=DMARC1; p=reject; rua=mailto:d@other.co.test"
orphan.co.test.                  IN A   192.0.2.6
; dept.corp.test says it is an organizational domain (psd=n), below corp.test's.
corp.test.                       IN A   192.0.2.7
_dmarc.corp.test.                IN TXT "v=DMARC1; p=none; rua=mailto:d@corp.test"
_dmarc.dept.corp.test.           IN TXT "v=DMARC1; p=reject; psd=n; rua=mailto:d@reports.corp.test"
x.dept.corp.test.                IN A   192.0.2.8
_dmarc.trial.test.               IN TXT "v=DMARC1; p=reject; t=y; rua=mailto:d@trial.test"
; Without p=: p=none when there is a rua= address, DMARC does not apply without one.
_dmarc.monitor.test.             IN TXT "v=DMARC1; rua=mailto:d@monitor.test"
_dmarc.nop.test.                 IN TXT "v=DMARC1; sp=reject"
trial.test.                      IN A   192.0.2.9
bare.test.                       IN A   192.0.2.10
; Only for the alignment grid: strict alignment, and a record that does not parse.
_dmarc.strict.test.              IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
mail.strict.test.                IN A   192.0.2.11
_dmarc.broken.test.              IN TXT "v=DMARC1; p=reject; adkim=x"
"#;

/// What both sides must find for one domain.
struct Case {
    domain: &'static str,
    /// The policy receivers apply to failing mail; None: DMARC does not apply.
    policy: Option<&'static str>,
    /// The organizational domain (None when DMARC does not apply: not reported).
    org: Option<&'static str>,
    /// `dmarc.record`: the record's status and, when inherited, the `_dmarc.` name it comes from.
    record: (&'static str, Option<&'static str>),
    /// `dmarc.external` findings as (subject, status).
    external: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    // Under a psd=y parent: its own organizational domain, its own p=; other.co.test is another organization
    // (the old "last two labels" guess took both for co.test), and it authorizes the reports.
    Case {
        domain: "example.co.test",
        policy: Some("reject"),
        org: Some("example.co.test"),
        record: ("PASS", None),
        external: &[("example.co.test._report._dmarc.other.co.test", "PASS")],
    },
    // An existing subdomain inherits sp= from its organizational domain, two labels up.
    Case {
        domain: "a.b.example.co.test",
        policy: Some("none"),
        org: Some("example.co.test"),
        record: ("INFO", Some("_dmarc.example.co.test")),
        external: &[("example.co.test._report._dmarc.other.co.test", "PASS")],
    },
    // A name that does not exist gets np=.
    Case {
        domain: "ghost.example.co.test",
        policy: Some("quarantine"),
        org: Some("example.co.test"),
        record: ("INFO", Some("_dmarc.example.co.test")),
        external: &[("example.co.test._report._dmarc.other.co.test", "PASS")],
    },
    // The query cap skips the psd=n record nine labels up; example.co.test stays the organizational domain.
    Case {
        domain: "a.b.c.d.e.f.g.h.example.co.test",
        policy: Some("none"),
        org: Some("example.co.test"),
        record: ("INFO", Some("_dmarc.example.co.test")),
        external: &[("example.co.test._report._dmarc.other.co.test", "PASS")],
    },
    // The same report address without the authorization record: receivers send nothing there.
    Case {
        domain: "unauth.co.test",
        policy: Some("reject"),
        org: Some("unauth.co.test"),
        record: ("PASS", None),
        external: &[("unauth.co.test._report._dmarc.other.co.test", "FAIL")],
    },
    // No record of its own nor of its organizational domain: the public suffix domain's policy applies, which
    // is worth a warning (its operator sets it).
    Case {
        domain: "orphan.co.test",
        policy: Some("quarantine"),
        org: Some("orphan.co.test"),
        record: ("WARN", Some("_dmarc.co.test")),
        external: &[],
    },
    // psd=n ends the walk: dept.corp.test is the organizational domain, so reports.corp.test is outside it.
    Case {
        domain: "dept.corp.test",
        policy: Some("reject"),
        org: Some("dept.corp.test"),
        record: ("PASS", None),
        external: &[("dept.corp.test._report._dmarc.reports.corp.test", "FAIL")],
    },
    Case {
        domain: "x.dept.corp.test",
        policy: Some("reject"),
        org: Some("dept.corp.test"),
        record: ("INFO", Some("_dmarc.dept.corp.test")),
        external: &[("dept.corp.test._report._dmarc.reports.corp.test", "FAIL")],
    },
    // Without psd=n the highest record on the walk is the organizational domain.
    Case {
        domain: "corp.test",
        policy: Some("none"),
        org: Some("corp.test"),
        record: ("PASS", None),
        external: &[],
    },
    // t=y: one step less than published.
    Case {
        domain: "trial.test",
        policy: Some("quarantine"),
        org: Some("trial.test"),
        record: ("PASS", None),
        external: &[],
    },
    Case {
        domain: "monitor.test",
        policy: Some("none"),
        org: Some("monitor.test"),
        record: ("PASS", None),
        external: &[],
    },
    Case {
        domain: "nop.test",
        policy: None,
        org: None,
        record: ("FAIL", None),
        external: &[],
    },
    Case {
        domain: "bare.test",
        policy: None,
        org: None,
        record: ("FAIL", None),
        external: &[],
    },
];

/// The audit's DMARC findings for one domain, as (id, status, subject, detail).
type Findings = Vec<(String, String, String, String)>;

/// Audits every case's domain in one run of the real binary, DMARC only.
fn audit(dns: &TestDns) -> HashMap<String, Findings> {
    let db = TestDb::sqlite();
    let ns = dns.nameserver();
    let mut args = vec!["--json", "audit", "--nameserver", &ns, "--no-connect"];
    args.extend(["--only", "dmarc"]);
    args.extend(CASES.iter().map(|c| c.domain));
    let run = db.run(&args);
    let json = run.json();
    let reports = json["domains"].as_array().expect("domains");
    assert_eq!(reports.len(), CASES.len(), "{}", run.stdout);
    reports
        .iter()
        .map(|r| {
            let findings = r["findings"].as_array().expect("findings").iter();
            let s = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or_default().to_string();
            let dmarc = findings
                .filter(|f| s(f, "id").starts_with("dmarc."))
                .map(|f| (s(f, "id"), s(f, "status"), s(f, "subject"), s(f, "detail")))
                .collect();
            (s(r, "domain"), dmarc)
        })
        .collect()
}

fn one<'a>(findings: &'a Findings, id: &str) -> &'a (String, String, String, String) {
    let mut matching = findings.iter().filter(|f| f.0 == id);
    let found = matching
        .next()
        .unwrap_or_else(|| panic!("no {id}: {findings:#?}"));
    assert!(matching.next().is_none(), "several {id}: {findings:#?}");
    found
}

/// The policy the audit says receivers apply: `dmarc.policy` is WARN exactly for none; otherwise its detail
/// starts with the applying `tag=value`, and says what receivers apply instead under `t=y`.
fn audit_policy(findings: &Findings) -> String {
    let (_, status, _, detail) = one(findings, "dmarc.policy");
    if status == "WARN" {
        return "none".into();
    }
    if let Some((_, applied)) = detail.split_once("receivers apply ") {
        return applied.trim().to_string();
    }
    let first = detail.split_whitespace().next().unwrap_or_default();
    let (_, value) = first.trim_end_matches([',', ';']).split_once('=').unwrap();
    value.to_string()
}

/// The organizational domain the audit reports.
fn audit_org(findings: &Findings) -> String {
    let (_, status, _, detail) = one(findings, "dmarc.org_domain");
    assert_eq!(status, "INFO");
    let rest = detail.strip_prefix("organizational domain ").unwrap();
    rest.split(':').next().unwrap().to_string()
}

/// A message From `domain`.
fn message_from(domain: &str) -> String {
    format!("From: <ceo@{domain}>\r\nTo: <bob@receiver.test>\r\nSubject: pay\r\n\r\nnow\r\n")
}

/// The daemon's DMARC check of a message From `domain`, with SPF as given for `mail_from`, no DKIM signature.
async fn daemon(
    resolver: &Resolver,
    domain: &str,
    mail_from: &str,
    spf: SpfResult,
) -> dmarc::Dmarc {
    let raw = message_from(domain);
    let message = AuthenticatedMessage::parse(raw.as_bytes()).expect("message parses");
    let spf = SpfOutput::new(mail_from.to_string()).with_result(spf);
    let timeout = Duration::from_secs(10);
    dmarc::check(resolver, &message, &[], mail_from, &spf, timeout).await
}

/// One DKIM signature of the grid: its `d=` and whether it verified (else a temporary error).
type Sig = (&'static str, bool);

/// The daemon's verdict and mail-auth's on the same message, SPF result and DKIM outputs, as
/// (outcome, policy word when it fails).
async fn both(
    resolver: &Resolver,
    from: &str,
    mail_from: &str,
    spf: SpfResult,
    sigs: &[Sig],
) -> ((Outcome, &'static str), (Outcome, &'static str)) {
    let raw = message_from(from);
    let message = AuthenticatedMessage::parse(raw.as_bytes()).expect("message parses");
    let spf = SpfOutput::new(mail_from.to_string()).with_result(spf);
    let signatures: Vec<Signature> = sigs
        .iter()
        .map(|(d, _)| Signature {
            d: d.to_string(),
            s: "sel".into(),
            ..Signature::default()
        })
        .collect();
    let outputs: Vec<DkimOutput<'_>> = sigs
        .iter()
        .zip(&signatures)
        .map(|((_, ok), sig)| {
            let out = if *ok {
                DkimOutput::pass()
            } else {
                DkimOutput::temp_err(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
                    "timeout".into(),
                )))
            };
            out.with_signature(sig)
        })
        .collect();
    let ours = dmarc::check(
        resolver,
        &message,
        &outputs,
        mail_from,
        &spf,
        Duration::from_secs(10),
    )
    .await;
    let params = DmarcParameters::new(&message, &outputs, mail_from, &spf);
    let theirs = resolver.authenticator().verify_dmarc(params).await;
    let outcome = match theirs.result() {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    };
    let failing = |o: Outcome, p: Policy| (o, if o == Outcome::Fail { word(p) } else { "-" });
    (
        failing(ours.outcome, ours.policy),
        failing(outcome, theirs.policy()),
    )
}

fn word(policy: Policy) -> &'static str {
    dmarc::policy_name(policy)
}

/// `domain` without its first label.
fn parent(domain: &str) -> &str {
    domain.split_once('.').map_or("", |(_, p)| p)
}

#[test]
fn audit_and_daemon_find_the_same_dmarc_policy_and_organizational_domain() {
    let dns = TestDns::start(&[("test.", ZONE)]);
    let audited = audit(&dns);
    let resolver = Resolver::build(&[&dns.nameserver()], Duration::from_secs(2)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for case in CASES {
        let d = case.domain;
        let findings = &audited[d];
        // The audit's verdict.
        let (_, status, _, detail) = one(findings, "dmarc.record");
        assert_eq!(status, case.record.0, "{d}: {findings:#?}");
        if let Some(from) = case.record.1 {
            assert!(
                detail.starts_with(&format!("inherited from {from} ")),
                "{d}: {detail}"
            );
        }
        let external: Vec<(&str, &str)> = findings
            .iter()
            .filter(|f| f.0 == "dmarc.external")
            .map(|f| (f.2.as_str(), f.1.as_str()))
            .collect();
        assert_eq!(external, case.external, "{d}: {findings:#?}");

        // The daemon's, for mail From the domain that fails SPF (another domain's envelope) and has no DKIM.
        let forged = runtime.block_on(daemon(&resolver, d, "elsewhere.test", SpfResult::Fail));
        assert_eq!(forged.domain, d);
        let (Some(policy), Some(org)) = (case.policy, case.org) else {
            assert_eq!(forged.outcome, Outcome::None, "{d}: {forged:?}");
            assert!(!findings.iter().any(|f| f.0 == "dmarc.policy"), "{d}");
            continue;
        };
        assert_eq!(forged.outcome, Outcome::Fail, "{d}: {forged:?}");
        assert_eq!(word(forged.policy), policy, "{d}: the daemon's policy");
        assert_eq!(
            audit_policy(findings),
            policy,
            "{d}: the audit's policy: {findings:#?}"
        );

        // The organizational domain, as the daemon uses it: relaxed SPF alignment holds for a mail-from in the
        // organizational domain, and not for its parent (the organization stops there).
        assert_eq!(audit_org(findings), org, "{d}: {findings:#?}");
        let aligned = runtime.block_on(daemon(&resolver, d, org, SpfResult::Pass));
        assert_eq!(
            aligned.outcome,
            Outcome::Pass,
            "{d}: SPF pass for {org}: {aligned:?}"
        );
        let above = parent(org);
        let outside = runtime.block_on(daemon(&resolver, d, above, SpfResult::Pass));
        assert_eq!(
            outside.outcome,
            Outcome::Fail,
            "{d}: SPF pass for {above}: {outside:?}"
        );
    }
}

#[test]
fn the_daemon_judges_dmarc_as_mail_auth_does_under_strict_and_relaxed_alignment() {
    use SpfResult::{Fail, Pass, SoftFail, TempError};
    let dns = TestDns::start(&[("test.", ZONE)]);
    let resolver = Resolver::build(&[&dns.nameserver()], Duration::from_secs(2)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let froms = [
        "example.co.test",
        "a.b.example.co.test",
        "ghost.example.co.test",
        "x.dept.corp.test",
        "trial.test",
        "strict.test",
        "mail.strict.test",
        "broken.test",
        "bare.test",
        "nowhere.invalid",
    ];
    let envelopes = [
        "example.co.test",
        "a.b.example.co.test",
        "other.co.test",
        "dept.corp.test",
        "corp.test",
        "strict.test",
        "mail.strict.test",
        "elsewhere.test",
    ];
    let signatures: &[&[Sig]] = &[
        &[],
        &[("example.co.test", true)],
        &[("other.co.test", true), ("a.b.example.co.test", true)],
        &[("dept.corp.test", false)],
        &[("corp.test", true), ("x.dept.corp.test", false)],
        &[("strict.test", true)],
        &[("mail.strict.test", true), ("strict.test", false)],
        &[("nowhere.invalid", true)],
    ];
    let mut outcomes = std::collections::BTreeSet::new();
    let mut checked = 0;
    for from in froms {
        for (i, mail_from) in envelopes.iter().enumerate() {
            for spf in [Pass, Fail, SoftFail, TempError] {
                // Every signature set once per From domain and SPF result, not per envelope.
                let sigs = signatures[i % signatures.len()];
                let (ours, theirs) = runtime.block_on(both(&resolver, from, mail_from, spf, sigs));
                assert_eq!(
                    ours, theirs,
                    "From {from}, MAIL FROM {mail_from} ({spf:?}), DKIM {sigs:?}: ours, mail-auth's"
                );
                outcomes.insert(format!("{:?}", ours.0));
                checked += 1;
            }
        }
    }
    // The grid reaches every verdict, so agreement means something.
    assert_eq!(
        outcomes.into_iter().collect::<Vec<_>>(),
        ["Fail", "None", "Pass", "PermError", "TempError"],
        "{checked} cases"
    );
}
