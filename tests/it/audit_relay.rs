//! `mailctl audit` of a domain whose mail leaves through a relay host (`mailctl relay set`): receivers judge the
//! relay's addresses, so SPF is evaluated for the relay host's addresses and must reach the provider's SPF
//! domain (`spf.relay`), and the PTR, blocklist and banner findings of this server's own addresses become INFO
//! (`ptr.relay` says why). A relay on this machine changes nothing. The real binary against a loopback DNS
//! server; the IPs are documentation ranges (reverse zones cannot be served under 127.in-addr.arpa).

use kit::TestDb;
use kit::dns::TestDns;
use serde_json::Value;

const ZONE: &str = r#"
home.example.              IN MX  10 mx.home.example.
mx.home.example.           IN A   192.0.2.30
home.example.              IN TXT "v=spf1 mx include:_spf.provider.example -all"
noinclude.example.         IN MX  10 mx.home.example.
noinclude.example.         IN TXT "v=spf1 mx -all"
smtp.provider.example.     IN A   198.51.100.5
_spf.provider.example.     IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
"#;

/// The MX address has a generic PTR, and the test IP list lists it.
const REVERSE: &str = "30.2.0.192.in-addr.arpa. IN PTR 192-0-2-30.dynamic.home.example.\n";
const RBL: &str = "
2.0.0.127.rbl.test.example.   IN A   127.0.0.2
30.2.0.192.rbl.test.example.  IN A   127.0.0.2
";

fn serve() -> TestDns {
    TestDns::start(&[
        ("example.", ZONE),
        ("2.0.192.in-addr.arpa.", REVERSE),
        ("rbl.test.example.", RBL),
    ])
}

/// `audit DOMAIN --only ptr,dnsbl.listed,spf` against `db`: the exit code and (id, status, detail) of each finding.
fn audit(db: &TestDb, dns: &TestDns, domain: &str) -> (i32, Vec<(String, String, String)>) {
    let ns = dns.nameserver();
    let run = db.run(&[
        "--json",
        "audit",
        domain,
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "ptr,dnsbl.listed,spf",
        "--rbl",
        "rbl.test.example",
    ]);
    let json = run.json();
    let findings = json["domains"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {}{}", run.stdout, run.stderr))
        .iter()
        .map(|f: &Value| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
                format!("{} {} {}", f["subject"], f["detail"], f["fix"]),
            )
        })
        .collect();
    (run.code, findings)
}

/// The statuses of `id`, in order.
fn status(findings: &[(String, String, String)], id: &str) -> Vec<String> {
    findings
        .iter()
        .filter(|(i, _, _)| i == id)
        .map(|(_, s, _)| s.clone())
        .collect()
}

/// The details of `id`, joined.
fn detail(findings: &[(String, String, String)], id: &str) -> String {
    findings
        .iter()
        .filter(|(i, _, _)| i == id)
        .map(|(_, _, d)| d.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn behind_a_relay_spf_is_judged_for_the_relay_and_our_ptr_and_listings_are_info() {
    let dns = serve();
    let db = TestDb::sqlite();
    for domain in ["home.example", "noinclude.example"] {
        db.run(&["domain", "add", domain]).ok();
    }

    // Without a relay the generic PTR warns and the listing fails.
    let (code, f) = audit(&db, &dns, "home.example");
    assert_eq!(status(&f, "ptr.generic"), ["WARN"], "{f:?}");
    assert_eq!(status(&f, "dnsbl.listed"), ["FAIL"], "{f:?}");
    assert!(status(&f, "ptr.relay").is_empty() && status(&f, "spf.relay").is_empty());
    assert_eq!(code, 2);

    // Through the provider: its include is in the record, its host's address passes, ours no longer count.
    db.run(&[
        "relay",
        "set",
        "home.example",
        "smtp://smtp.provider.example",
        "--spf-include",
        "_spf.provider.example",
    ])
    .ok();
    let (code, f) = audit(&db, &dns, "home.example");
    assert_eq!(status(&f, "ptr.relay"), ["INFO"], "{f:?}");
    assert!(
        detail(&f, "ptr.relay")
            .contains("leaves through the relay host smtp://smtp.provider.example:587"),
        "{f:?}"
    );
    assert_eq!(status(&f, "ptr.generic"), ["INFO"], "{f:?}");
    assert_eq!(status(&f, "dnsbl.listed"), ["INFO"], "{f:?}");
    assert!(
        detail(&f, "dnsbl.listed").contains("does not matter for outbound mail"),
        "{f:?}"
    );
    assert_eq!(status(&f, "spf.relay"), ["PASS"], "{f:?}");
    assert_eq!(status(&f, "spf.pass"), ["PASS", "INFO"], "{f:?}");
    let pass = detail(&f, "spf.pass");
    assert!(
        pass.contains("198.51.100.5 MAIL FROM:<postmaster@home.example>")
            && pass.contains("an address of the relay host smtp.provider.example")
            && pass.contains("HELO identity not evaluated"),
        "{pass}"
    );
    assert_eq!(code, 0, "{f:?}");

    // A record that does not reach the include: spf.relay fails with the record that does.
    db.run(&[
        "relay",
        "set",
        "noinclude.example",
        "smtp://smtp.provider.example",
        "--spf-include",
        "_spf.provider.example",
    ])
    .ok();
    let (code, f) = audit(&db, &dns, "noinclude.example");
    assert_eq!(status(&f, "spf.relay"), ["FAIL"], "{f:?}");
    assert!(
        detail(&f, "spf.relay").contains("v=spf1 mx include:_spf.provider.example -all"),
        "{f:?}"
    );
    assert_eq!(status(&f, "spf.pass")[0], "WARN", "{f:?}");
    assert_eq!(code, 2);

    // Without an include, the relay host's own address must pass.
    db.run(&[
        "relay",
        "set",
        "noinclude.example",
        "smtp://smtp.provider.example",
    ])
    .ok();
    let (_, f) = audit(&db, &dns, "noinclude.example");
    assert_eq!(status(&f, "spf.relay"), ["INFO"], "{f:?}");
    assert_eq!(status(&f, "spf.pass")[0], "FAIL", "{f:?}");
    assert!(detail(&f, "spf.pass").contains("ip4:198.51.100.5"), "{f:?}");

    // A relay on this machine sends from our addresses: nothing is discounted.
    db.run(&[
        "relay",
        "set",
        "home.example",
        "smtp://127.0.0.1:2525",
        "--tls",
        "none",
    ])
    .ok();
    let (_, f) = audit(&db, &dns, "home.example");
    assert!(status(&f, "ptr.relay").is_empty(), "{f:?}");
    assert_eq!(status(&f, "ptr.generic"), ["WARN"], "{f:?}");
    assert_eq!(status(&f, "dnsbl.listed"), ["FAIL"], "{f:?}");
}
