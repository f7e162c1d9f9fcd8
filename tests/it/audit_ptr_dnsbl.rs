//! `mailctl audit` per-IP identity (`ptr.*`) and blocklists (`dnsbl.*`), end to end: the real binary against an
//! authoritative DNS server on loopback serving the domains, their reverse zones and test blocklist zones.
//!
//! The IPs are in 192.0.2.0/24 and 2001:db8::/32 (documentation ranges), not 127.0.0.0/8: the resolver answers
//! PTR queries under `127.in-addr.arpa` itself (`localhost.`, RFC 6761) without asking the server, so loopback
//! reverse zones cannot be served. Nothing connects to these IPs (`--no-connect`).

use kit::TestDb;
use kit::dns::TestDns;
use serde_json::Value;

const DOMAINS: &str = "
healthy.example.            IN MX   10 mx.healthy.example.
mx.healthy.example.         IN A    192.0.2.10
noptr.example.              IN MX   10 mx.noptr.example.
mx.noptr.example.           IN A    192.0.2.50
nofcrdns.example.           IN MX   10 mx.nofcrdns.example.
mx.nofcrdns.example.        IN A    192.0.2.40
mail.nofcrdns.example.      IN A    192.0.2.41
generic.example.            IN MX   10 mx.generic.example.
mx.generic.example.         IN A    192.0.2.30
192-0-2-30.dynamic.generic.example. IN A 192.0.2.30
listed.example.             IN MX   10 mx.listed.example.
mx.listed.example.          IN A    192.0.2.66
listeddomain.example.       IN MX   10 mx.listeddomain.example.
mx.listeddomain.example.    IN A    192.0.2.10
v6.example.                 IN MX   10 mx.v6.example.
mx.v6.example.              IN AAAA 2001:db8::25
out6.v6.example.            IN AAAA 2001:db8::66
";

/// PTRs of 192.0.2.0/24; 192.0.2.50 (noptr) and 192.0.2.67 (an outbound IP) have none.
const REVERSE_V4: &str = "
10.2.0.192.in-addr.arpa.    IN PTR  mx.healthy.example.
40.2.0.192.in-addr.arpa.    IN PTR  mail.nofcrdns.example.
30.2.0.192.in-addr.arpa.    IN PTR  192-0-2-30.dynamic.generic.example.
66.2.0.192.in-addr.arpa.    IN PTR  mx.listed.example.
";

/// Nibble PTRs of 2001:db8::25 and 2001:db8::66.
const REVERSE_V6: &str = "
5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR mx.v6.example.
6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR out6.v6.example.
";

/// A healthy IP list covering IPv6: its RFC 5782 test entries 127.0.0.2 and ::FFFF:7F00:2, and listings of
/// 192.0.2.66, 192.0.2.67, 2001:db8::66.
const RBL: &str = "
2.0.0.127.rbl.test.example.   IN A   127.0.0.2
2.0.0.127.rbl.test.example.   IN TXT \"test entry\"
2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.rbl.test.example. IN A 127.0.0.2
66.2.0.192.rbl.test.example.  IN A   127.0.0.2
66.2.0.192.rbl.test.example.  IN TXT \"Listed for spam traps: see https://rbl.test.example/66\"
67.2.0.192.rbl.test.example.  IN A   127.0.0.3
67.2.0.192.rbl.test.example.  IN TXT \"Listed for open relay\"
6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.rbl.test.example. IN A 127.0.0.2
";

/// A healthy list without IPv6 data (like SpamCop): only the IPv4 test entry, and a listing of 192.0.2.66.
const RBL4: &str = "
2.0.0.127.rbl4.test.example.   IN A   127.0.0.2
66.2.0.192.rbl4.test.example.  IN A   127.0.0.2
";

/// A healthy domain list (test entry `test`) listing listeddomain.example.
const DBL: &str = "
test.dbl.test.example.                  IN A   127.0.1.2
listeddomain.example.dbl.test.example.  IN A   127.0.1.2
listeddomain.example.dbl.test.example.  IN TXT \"Domain seen in spam\"
";

/// A list that refuses this resolver: every name answers 127.255.255.254.
const REFUSING: &str = "*.refuse.test.example. IN A 127.255.255.254\n";

/// A dead list: no test entry, yet it "lists" the healthy MX (which must not count).
const DEAD: &str = "10.2.0.192.dead.test.example. IN A 127.0.0.2\n";

fn serve() -> TestDns {
    TestDns::start(&[
        ("example.", DOMAINS),
        ("2.0.192.in-addr.arpa.", REVERSE_V4),
        ("8.b.d.0.1.0.0.2.ip6.arpa.", REVERSE_V6),
        ("rbl.test.example.", RBL),
        ("rbl4.test.example.", RBL4),
        ("dbl.test.example.", DBL),
        ("refuse.test.example.", REFUSING),
        ("dead.test.example.", DEAD),
    ])
}

/// Audits `domain` with only this family and the test lists (plus `extra`); returns the exit code and findings.
fn audit(dns: &TestDns, domain: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["--rbl", "rbl.test.example"];
    args.extend_from_slice(extra);
    audit_lists(dns, domain, &args)
}

/// [`audit`] without the default `--rbl rbl.test.example`: `extra` names the IP lists.
fn audit_lists(dns: &TestDns, domain: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let db = TestDb::sqlite();
    let ns = dns.nameserver();
    let mut args = vec![
        "--json",
        "audit",
        domain,
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "ptr,dnsbl",
        "--dbl",
        "dbl.test.example",
    ];
    args.extend_from_slice(extra);
    let run = db.run(&args);
    let json = run.json();
    let findings = json["domains"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {}", run.stdout))
        .clone();
    for f in &findings {
        let id = f["id"].as_str().unwrap();
        assert!(id.starts_with("ptr.") || id.starts_with("dnsbl."), "{id}");
    }
    (run.code, findings)
}

/// (id, status, subject) of every finding that is not PASS.
fn problems(findings: &[Value]) -> Vec<(String, String, String)> {
    findings
        .iter()
        .filter(|f| f["status"] != "PASS")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("status"), s("subject"))
        })
        .collect()
}

fn problem(id: &str, status: &str, subject: &str) -> (String, String, String) {
    (id.into(), status.into(), subject.into())
}

/// The one finding with this id and subject.
fn finding<'a>(findings: &'a [Value], id: &str, subject: &str) -> &'a Value {
    let matching: Vec<&Value> = findings
        .iter()
        .filter(|f| f["id"] == id && f["subject"] == subject)
        .collect();
    assert_eq!(matching.len(), 1, "{id} {subject}: {findings:#?}");
    matching[0]
}

fn text<'a>(f: &'a Value, key: &str) -> &'a str {
    f[key].as_str().unwrap_or_default()
}

const HEALTHY_MX: &str = "mx.healthy.example (192.0.2.10)";

#[test]
fn healthy_domain_passes_every_identity_and_blocklist_check() {
    let dns = serve();
    let (code, findings) = audit(&dns, "healthy.example", &[]);
    let ids: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (text(f, "id"), text(f, "status")))
        .collect();
    assert_eq!(
        ids,
        [
            ("ptr.exists", "PASS"),
            ("ptr.fcrdns", "PASS"),
            ("ptr.generic", "PASS"),
            ("dnsbl.listed", "PASS"),
            ("dnsbl.domain", "PASS"),
        ]
    );
    assert_eq!(code, 0);
    assert!(
        text(finding(&findings, "ptr.exists", HEALTHY_MX), "detail").contains("mx.healthy.example")
    );
    let listed = finding(&findings, "dnsbl.listed", HEALTHY_MX);
    assert_eq!(text(listed, "detail"), "not listed on rbl.test.example");
    let domain = finding(&findings, "dnsbl.domain", "healthy.example");
    assert_eq!(text(domain, "detail"), "not listed on dbl.test.example");
}

#[test]
fn ip_without_ptr_fails_ptr_exists_with_the_record_to_ask_for() {
    let dns = serve();
    let (code, findings) = audit(&dns, "noptr.example", &[]);
    let subject = "mx.noptr.example (192.0.2.50)";
    assert_eq!(
        problems(&findings),
        [problem("ptr.exists", "FAIL", subject)]
    );
    assert_eq!(code, 2);
    let fix = text(finding(&findings, "ptr.exists", subject), "fix");
    assert!(
        fix.starts_with("50.2.0.192.in-addr.arpa. 3600 IN PTR mx.noptr.example."),
        "{fix}"
    );
    assert!(fix.contains("hosting provider"), "{fix}");
}

#[test]
fn ptr_name_not_resolving_back_fails_fcrdns() {
    let dns = serve();
    let (code, findings) = audit(&dns, "nofcrdns.example", &[]);
    let subject = "mx.nofcrdns.example (192.0.2.40)";
    assert_eq!(
        problems(&findings),
        [problem("ptr.fcrdns", "FAIL", subject)]
    );
    assert_eq!(code, 2);
    let f = finding(&findings, "ptr.fcrdns", subject);
    assert!(
        text(f, "detail").contains("mail.nofcrdns.example resolves to 192.0.2.41"),
        "{f}"
    );
    assert!(
        text(f, "fix").starts_with("mail.nofcrdns.example. 3600 IN A 192.0.2.40"),
        "{f}"
    );
}

#[test]
fn generic_ptr_name_warns() {
    let dns = serve();
    let (code, findings) = audit(&dns, "generic.example", &[]);
    let subject = "mx.generic.example (192.0.2.30)";
    assert_eq!(
        problems(&findings),
        [problem("ptr.generic", "WARN", subject)]
    );
    assert_eq!(code, 1);
    let detail = text(finding(&findings, "ptr.generic", subject), "detail");
    assert!(detail.contains("192-0-2-30"), "{detail}");
}

#[test]
fn listed_ip_fails_with_return_code_and_txt_reason() {
    let dns = serve();
    let (code, findings) = audit(&dns, "listed.example", &[]);
    let subject = "mx.listed.example (192.0.2.66)";
    assert_eq!(
        problems(&findings),
        [problem("dnsbl.listed", "FAIL", subject)]
    );
    assert_eq!(code, 2);
    let f = finding(&findings, "dnsbl.listed", subject);
    let detail = text(f, "detail");
    assert!(
        detail.starts_with("listed on rbl.test.example: 127.0.0.2 (listed)"),
        "{detail}"
    );
    assert!(
        detail.contains("Listed for spam traps: see https://rbl.test.example/66"),
        "{detail}"
    );
    assert!(text(f, "fix").contains("request removal"), "{f}");
}

#[test]
fn listed_domain_fails_dnsbl_domain() {
    let dns = serve();
    let (code, findings) = audit(&dns, "listeddomain.example", &[]);
    assert_eq!(
        problems(&findings),
        [problem("dnsbl.domain", "FAIL", "listeddomain.example")]
    );
    assert_eq!(code, 2);
    let detail = text(
        finding(&findings, "dnsbl.domain", "listeddomain.example"),
        "detail",
    );
    assert!(
        detail.contains("127.0.1.2") && detail.contains("Domain seen in spam"),
        "{detail}"
    );
}

#[test]
fn list_answering_127_255_255_254_is_could_not_test_never_listed() {
    let dns = serve();
    let (code, findings) = audit(&dns, "healthy.example", &["--rbl", "refuse.test.example"]);
    assert_eq!(
        problems(&findings),
        [problem("dnsbl.listed", "UNKNOWN", HEALTHY_MX)]
    );
    assert_eq!(code, 3);
    let unknown = findings
        .iter()
        .find(|f| f["status"] == "UNKNOWN")
        .map(|f| text(f, "detail"))
        .unwrap_or_default();
    assert!(
        unknown.contains("could not test on refuse.test.example"),
        "{unknown}"
    );
    assert!(unknown.contains("127.255.255.254"), "{unknown}");
    // The healthy list still answers.
    let pass: Vec<&str> = findings
        .iter()
        .filter(|f| f["id"] == "dnsbl.listed" && f["status"] == "PASS")
        .map(|f| text(f, "detail"))
        .collect();
    assert_eq!(pass, ["not listed on rbl.test.example"]);
}

#[test]
fn unhealthy_list_is_reported_and_not_used() {
    let dns = serve();
    let (code, findings) = audit(&dns, "healthy.example", &["--rbl", "dead.test.example"]);
    assert_eq!(
        problems(&findings),
        [problem("dnsbl.health", "WARN", "dead.test.example")]
    );
    assert_eq!(code, 1);
    let health = text(
        finding(&findings, "dnsbl.health", "dead.test.example"),
        "detail",
    );
    assert!(health.contains("2.0.0.127.dead.test.example"), "{health}");
    // The dead list "lists" 192.0.2.10, which must not count.
    let listed = finding(&findings, "dnsbl.listed", HEALTHY_MX);
    assert_eq!(text(listed, "detail"), "not listed on rbl.test.example");
}

#[test]
fn outbound_ip_from_the_command_line_is_checked_too() {
    let dns = serve();
    let (code, findings) = audit(&dns, "healthy.example", &["--ip", "192.0.2.67"]);
    assert_eq!(
        problems(&findings),
        [
            problem("ptr.exists", "FAIL", "192.0.2.67"),
            problem("dnsbl.listed", "FAIL", "192.0.2.67"),
        ]
    );
    assert_eq!(code, 2);
    let fix = text(finding(&findings, "ptr.exists", "192.0.2.67"), "fix");
    assert!(
        fix.starts_with("67.2.0.192.in-addr.arpa. 3600 IN PTR mx.healthy.example."),
        "{fix}"
    );
    let detail = text(finding(&findings, "dnsbl.listed", "192.0.2.67"), "detail");
    assert!(
        detail.contains("127.0.0.3") && detail.contains("Listed for open relay"),
        "{detail}"
    );
    // The MX address is still checked, and an outbound IP equal to it is not checked twice.
    assert_eq!(
        text(finding(&findings, "ptr.fcrdns", HEALTHY_MX), "status"),
        "PASS"
    );
    let (_, same) = audit(&dns, "healthy.example", &["--ip", "192.0.2.10"]);
    assert_eq!(same.len(), 5, "{same:#?}");
}

#[test]
fn ipv6_addresses_are_checked_in_nibble_form() {
    let dns = serve();
    let subject = "mx.v6.example (2001:db8::25)";
    let (code, findings) = audit(&dns, "v6.example", &["--ip", "2001:db8::66"]);
    assert_eq!(
        problems(&findings),
        [problem("dnsbl.listed", "FAIL", "2001:db8::66")]
    );
    assert_eq!(code, 2);
    assert_eq!(
        text(finding(&findings, "ptr.exists", subject), "detail"),
        "PTR mx.v6.example"
    );
    assert_eq!(
        text(finding(&findings, "ptr.fcrdns", subject), "detail"),
        "mx.v6.example resolves back to 2001:db8::25"
    );
    for id in ["ptr.exists", "ptr.fcrdns", "ptr.generic"] {
        assert_eq!(
            text(finding(&findings, id, "2001:db8::66"), "status"),
            "PASS",
            "{id}"
        );
    }
    assert_eq!(
        text(finding(&findings, "dnsbl.listed", subject), "status"),
        "PASS"
    );
}

#[test]
fn list_without_ipv6_test_entry_is_not_used_for_ipv6_addresses() {
    let dns = serve();
    let subject = "mx.v6.example (2001:db8::25)";
    let (code, findings) = audit(&dns, "v6.example", &["--rbl", "rbl4.test.example"]);
    assert_eq!(
        problems(&findings),
        [problem("dnsbl.health", "INFO", "rbl4.test.example")]
    );
    assert_eq!(code, 0);
    let health = text(
        finding(&findings, "dnsbl.health", "rbl4.test.example"),
        "detail",
    );
    assert!(health.starts_with("does not cover IPv6"), "{health}");
    assert!(
        health.contains(
            "2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.rbl4.test.example"
        ),
        "{health}"
    );
    // Its NXDOMAIN for the IPv6 address is not counted as "not listed"; the IPv6 list still answers.
    assert_eq!(
        text(finding(&findings, "dnsbl.listed", subject), "detail"),
        "not listed on rbl.test.example"
    );
    // With no IPv6-capable list, the IPv6 address is noted, not passed.
    let (code, findings) = audit_lists(&dns, "v6.example", &["--rbl", "rbl4.test.example"]);
    let listed = finding(&findings, "dnsbl.listed", subject);
    assert_eq!(text(listed, "status"), "INFO", "{listed}");
    assert!(text(listed, "detail").contains("none of the lists covers IPv6"));
    assert_eq!(code, 0);
    // An IPv4-only domain never asks for the IPv6 test entries, and uses the list.
    let (code, findings) = audit(&dns, "healthy.example", &["--rbl", "rbl4.test.example"]);
    assert_eq!(problems(&findings), []);
    assert_eq!(code, 0);
    assert_eq!(
        text(finding(&findings, "dnsbl.listed", HEALTHY_MX), "detail"),
        "not listed on rbl.test.example, rbl4.test.example"
    );
}

#[test]
fn at_most_twenty_ips_per_domain_are_looked_up() {
    let mut zone = "many.example. IN MX 10 mx.many.example.\n".to_string();
    for i in 0..22 {
        zone.push_str(&format!("mx.many.example. IN A 192.0.2.{}\n", 100 + i));
    }
    let dns = TestDns::start(&[
        ("example.", &zone),
        ("rbl.test.example.", RBL),
        ("dbl.test.example.", DBL),
    ]);
    let (code, findings) = audit(&dns, "many.example", &["--skip", "ptr"]);
    let count = |status: &str| {
        findings
            .iter()
            .filter(|f| f["id"] == "dnsbl.listed" && f["status"] == status)
            .count()
    };
    assert_eq!(count("PASS"), 20, "{findings:#?}");
    assert_eq!(count("INFO"), 1, "{findings:#?}");
    let info = finding(&findings, "dnsbl.listed", "many.example");
    assert!(
        text(info, "detail").contains("first 20 of 22 IPs"),
        "{info}"
    );
    assert_eq!(code, 0);
}

#[test]
fn loopback_mx_address_is_noted_not_checked() {
    // The resolver answers PTR queries under 127.in-addr.arpa itself (RFC 6761); a served reverse zone is ignored.
    let dns = TestDns::start(&[
        (
            "example.",
            "lo.example. IN MX 10 mx.lo.example.\nmx.lo.example. IN A 127.0.0.10\n",
        ),
        (
            "0.0.127.in-addr.arpa.",
            "10.0.0.127.in-addr.arpa. IN PTR mx.lo.example.\n",
        ),
        ("rbl.test.example.", RBL),
        ("dbl.test.example.", DBL),
    ]);
    let (code, findings) = audit(&dns, "lo.example", &[]);
    let ids: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (text(f, "id"), text(f, "status")))
        .collect();
    assert_eq!(
        ids,
        [
            ("ptr.exists", "INFO"),
            ("dnsbl.listed", "INFO"),
            ("dnsbl.domain", "PASS"),
        ]
    );
    assert_eq!(code, 0);
}

#[test]
fn dns_failures_are_could_not_test_never_missing() {
    // Names outside the served zones are REFUSED by the test server: a DNS failure, not an answer.
    let dns = serve();
    let (code, findings) = audit(
        &dns,
        "healthy.example",
        &["--ip", "198.51.100.7", "--rbl", "unserved.test"],
    );
    assert_eq!(
        problems(&findings),
        [
            problem("ptr.exists", "UNKNOWN", "198.51.100.7"),
            problem("dnsbl.listed", "UNKNOWN", HEALTHY_MX),
            problem("dnsbl.listed", "UNKNOWN", "198.51.100.7"),
        ]
    );
    assert_eq!(code, 3);
    let detail = text(finding(&findings, "ptr.exists", "198.51.100.7"), "detail");
    assert!(detail.starts_with("could not test"), "{detail}");
}
