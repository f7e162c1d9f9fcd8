//! `mailctl audit --only spf` end to end: the real binary against an authoritative DNS server on loopback that
//! serves a healthy domain and one broken domain per SPF fault. Each case asserts the exact check id that fails
//! or warns, that every other SPF finding passes, and the exit code.

mod support;

use serde_json::Value;
use support::TestDb;
use support::dns::TestDns;

/// Every test domain lives under `example.`; the shared MX/HELO host is `mail.example` at 127.0.0.10.
const ZONE: &str = r#"
mail.example. IN A 127.0.0.10
mail.example. IN TXT "v=spf1 ip4:127.0.0.10 -all"

healthy.example. IN MX 10 mail.example.
healthy.example. IN TXT "v=spf1 ip4:127.0.0.10 -all"
healthy.example. IN TXT "google-site-verification=not-spf"

nospf.example. IN MX 10 mail.example.
nospf.example. IN TXT "google-site-verification=not-spf"

two.example. IN MX 10 mail.example.
two.example. IN TXT "v=spf1 ip4:127.0.0.10 -all"
two.example. IN TXT "v=spf1 mx -all"

plusall.example. IN MX 10 mail.example.
plusall.example. IN TXT "v=spf1 ip4:127.0.0.10 +all"

neutral.example. IN MX 10 mail.example.
neutral.example. IN TXT "v=spf1 ip4:127.0.0.10 ?all"

syntax.example. IN MX 10 mail.example.
syntax.example. IN TXT "v=spf1 ip4:127.0.0.10 ip4:127.0.0.300 -all"

lookups.example. IN MX 10 mail.example.
lookups.example. IN TXT "v=spf1 ip4:127.0.0.10 include:l1.lookups.example -all"
l1.lookups.example. IN TXT "v=spf1 a mx include:l2.lookups.example -all"
l1.lookups.example. IN A 127.0.0.20
l1.lookups.example. IN MX 10 mail.example.
l2.lookups.example. IN TXT "v=spf1 a mx include:l3.lookups.example -all"
l2.lookups.example. IN A 127.0.0.21
l2.lookups.example. IN MX 10 mail.example.
l3.lookups.example. IN TXT "v=spf1 a mx a:mail.example exists:mail.example -all"
l3.lookups.example. IN A 127.0.0.22
l3.lookups.example. IN MX 10 mail.example.

void.example. IN MX 10 mail.example.
void.example. IN TXT "v=spf1 ip4:127.0.0.10 a:nx1.void.example a:nx2.void.example mx:nodata.void.example -all"
nodata.void.example. IN TXT "exists, but has no MX"

loop.example. IN MX 10 mail.example.
loop.example. IN TXT "v=spf1 ip4:127.0.0.10 include:a.loop.example -all"
a.loop.example. IN TXT "v=spf1 include:b.loop.example -all"
b.loop.example. IN TXT "v=spf1 include:a.loop.example -all"
"#;

fn serve() -> TestDns {
    TestDns::start(&[("example.", ZONE)])
}

/// Runs `audit --only spf --no-connect` and returns the exit code and the domain's findings.
fn audit(dns: &TestDns, domain: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let db = TestDb::sqlite();
    let nameserver = dns.nameserver();
    let mut args = vec![
        "--json",
        "audit",
        domain,
        "--nameserver",
        &nameserver,
        "--no-connect",
        "--only",
        "spf",
        "--timeout",
        "2",
    ];
    args.extend_from_slice(extra);
    let run = db.run(&args);
    let json = run.json();
    let findings = json["domains"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {}", run.stdout))
        .clone();
    for f in &findings {
        assert!(f["id"].as_str().unwrap().starts_with("spf."), "{f}");
    }
    (run.code, findings)
}

fn with_id<'a>(findings: &'a [Value], id: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["id"] == id).collect()
}

/// `id` has a finding with `status`; every finding of another id passes. Returns that finding.
#[track_caller]
fn only_fault<'a>(findings: &'a [Value], id: &str, status: &str) -> &'a Value {
    let all = serde_json::to_string_pretty(findings).unwrap();
    for f in findings.iter().filter(|f| f["id"] != id) {
        assert_eq!(f["status"], "PASS", "only {id} should be off:\n{all}");
    }
    with_id(findings, id)
        .into_iter()
        .find(|f| f["status"] == status)
        .unwrap_or_else(|| panic!("no {status} for {id}:\n{all}"))
}

#[test]
fn healthy_domain_passes_every_spf_check() {
    let dns = serve();
    let (code, findings) = audit(&dns, "healthy.example", &[]);
    let all = serde_json::to_string_pretty(&findings).unwrap();
    for id in ["spf.record", "spf.syntax", "spf.lookups", "spf.all"] {
        assert_eq!(with_id(&findings, id).len(), 1, "{id}:\n{all}");
    }
    assert!(findings.iter().all(|f| f["status"] == "PASS"), "{all}");
    let passes = with_id(&findings, "spf.pass");
    assert_eq!(passes.len(), 2, "MAIL FROM and HELO:\n{all}");
    assert_eq!(
        passes[0]["subject"],
        "127.0.0.10 MAIL FROM:<postmaster@healthy.example>"
    );
    assert_eq!(passes[1]["subject"], "127.0.0.10 HELO mail.example");
    assert!(
        passes[0]["detail"]
            .as_str()
            .unwrap()
            .contains("MX addresses"),
        "{all}"
    );
    assert_eq!(
        with_id(&findings, "spf.record")[0]["detail"],
        "v=spf1 ip4:127.0.0.10 -all"
    );
    assert_eq!(code, 0, "{all}");
}

#[test]
fn domain_without_spf_fails_spf_record_with_the_record_to_publish() {
    let dns = serve();
    let (code, findings) = audit(&dns, "nospf.example", &["--ip", "127.0.0.10"]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = only_fault(&findings, "spf.record", "FAIL");
    assert_eq!(
        f["fix"],
        "nospf.example. 3600 IN TXT \"v=spf1 mx ip4:127.0.0.10 -all\""
    );
    assert_eq!(code, 2);
}

#[test]
fn two_spf_records_fail_spf_record_only() {
    let dns = serve();
    let (code, findings) = audit(&dns, "two.example", &[]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = only_fault(&findings, "spf.record", "FAIL");
    assert!(
        f["detail"].as_str().unwrap().starts_with("2 SPF records"),
        "{f}"
    );
    // The merged record keeps every term once, whatever order DNS returned the two in.
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix == "publish only one: two.example. 3600 IN TXT \"v=spf1 ip4:127.0.0.10 mx -all\""
            || fix
                == "publish only one: two.example. 3600 IN TXT \"v=spf1 mx ip4:127.0.0.10 -all\"",
        "{fix}"
    );
    assert_eq!(code, 2);
}

#[test]
fn plus_all_fails_spf_all() {
    let dns = serve();
    let (code, findings) = audit(&dns, "plusall.example", &[]);
    let f = only_fault(&findings, "spf.all", "FAIL");
    assert_eq!(
        f["fix"],
        "plusall.example. 3600 IN TXT \"v=spf1 ip4:127.0.0.10 -all\""
    );
    assert_eq!(code, 2);
}

#[test]
fn question_mark_all_warns_on_spf_all() {
    let dns = serve();
    let (code, findings) = audit(&dns, "neutral.example", &[]);
    only_fault(&findings, "spf.all", "WARN");
    assert_eq!(code, 1);
}

#[test]
fn bad_term_fails_spf_syntax_naming_the_term() {
    let dns = serve();
    let (code, findings) = audit(&dns, "syntax.example", &[]);
    let f = only_fault(&findings, "spf.syntax", "FAIL");
    assert!(
        f["detail"].as_str().unwrap().contains("'ip4:127.0.0.300'"),
        "{f}"
    );
    assert!(with_id(&findings, "spf.pass").is_empty(), "{findings:?}");
    assert_eq!(code, 2);
}

#[test]
fn eleven_lookups_through_nested_includes_fail_spf_lookups_with_the_tree() {
    let dns = serve();
    let (code, findings) = audit(&dns, "lookups.example", &[]);
    let f = only_fault(&findings, "spf.lookups", "FAIL");
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("11 DNS-querying terms, more than 10"),
        "{detail}"
    );
    assert!(
        detail.ends_with(
            "lookups.example (11)\n  include:l1.lookups.example (10)\n    include:l2.lookups.example (7)\n      \
             include:l3.lookups.example (4)"
        ),
        "{detail}"
    );
    assert_eq!(code, 2);
}

#[test]
fn three_void_lookups_fail_spf_lookups() {
    let dns = serve();
    let (code, findings) = audit(&dns, "void.example", &[]);
    let f = only_fault(&findings, "spf.lookups", "FAIL");
    let detail = f["detail"].as_str().unwrap();
    assert!(detail.starts_with("3 void lookups"), "{detail}");
    assert!(
        detail.contains("void: a:nx1.void.example (nx1.void.example does not exist)"),
        "{detail}"
    );
    assert!(
        detail.contains("void: mx:nodata.void.example (nodata.void.example has no MX record)"),
        "{detail}"
    );
    assert_eq!(code, 2);
}

#[test]
fn include_loop_fails_spf_lookups() {
    let dns = serve();
    let (code, findings) = audit(&dns, "loop.example", &[]);
    let f = only_fault(&findings, "spf.lookups", "FAIL");
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "include loop: loop.example -> a.loop.example -> b.loop.example -> a.loop.example"
        ),
        "{detail}"
    );
    assert_eq!(code, 2);
}

#[test]
fn outbound_ip_the_record_does_not_allow_fails_spf_pass() {
    let dns = serve();
    let (code, findings) = audit(&dns, "healthy.example", &["--ip", "127.0.0.99"]);
    let f = only_fault(&findings, "spf.pass", "FAIL");
    assert_eq!(
        f["subject"],
        "127.0.0.99 MAIL FROM:<postmaster@healthy.example>"
    );
    assert!(f["detail"].as_str().unwrap().starts_with("fail:"), "{f}");
    assert_eq!(
        f["fix"],
        "healthy.example. 3600 IN TXT \"v=spf1 ip4:127.0.0.99 ip4:127.0.0.10 -all\""
    );
    let helo = with_id(&findings, "spf.pass")
        .into_iter()
        .find(|f| f["subject"] == "127.0.0.99 HELO mail.example")
        .expect("HELO finding");
    assert_eq!(helo["status"], "WARN");
    assert_eq!(code, 2);
}

#[test]
fn nameserver_that_refuses_the_domain_gives_unknown_not_missing() {
    // This server only knows another zone: it answers REFUSED for healthy.example.
    let dns = TestDns::start(&[("other.test.", "other.test. IN TXT \"v=spf1 -all\"\n")]);
    let (code, findings) = audit(&dns, "healthy.example", &[]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = only_fault(&findings, "spf.record", "UNKNOWN");
    assert!(
        f["detail"].as_str().unwrap().starts_with("could not test"),
        "{f}"
    );
    assert_eq!(code, 3);
}
