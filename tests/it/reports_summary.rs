//! `mailctl reports summary`: per domain what the stored reports say, judged on the domain's own mail (this
//! server's `public_ips` and its relay host's addresses, found in DNS), failing sources named with their PTR
//! (from a loopback DNS server) and likely cause, TLS failures; table, JSON and nagios output with the verdict
//! as exit code.

use kit::TestDb;
use kit::dns::TestDns;
use serde_json::Value;

const REVERSE: &str = "
7.100.51.198.in-addr.arpa.  IN PTR  out.mailer.test.
25.2.0.192.in-addr.arpa.    IN PTR  mx.example.org.
";

const ZONE: &str = "
relay.provider.test.  IN A  203.0.113.5
";

/// A DMARC aggregate report about example.org with `(ip, count, dkim, spf, envelope domain)` records.
fn report(id: &str, records: &[(&str, u32, &str, &str, &str)]) -> String {
    let rows: String = records
        .iter()
        .map(|(ip, count, dkim, spf, envelope)| {
            let disposition = if *dkim == "pass" || *spf == "pass" { "none" } else { "reject" };
            format!(
                "<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>\
                 <disposition>{disposition}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated></row>\
                 <identifiers><header_from>example.org</header_from></identifiers><auth_results>\
                 <spf><domain>{envelope}</domain><result>{spf}</result></spf></auth_results></record>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>google.com</org_name>\
         <email>noreply-dmarc-support@google.com</email><report_id>{id}</report_id>\
         <date_range><begin>1764979200</begin><end>1765065599</end></date_range></report_metadata>\
         <policy_published><domain>example.org</domain><p>reject</p></policy_published>{rows}</feedback>"
    )
}

const TLS: &str = r#"{"organization-name":"Google Inc.","date-range":{"start-datetime":"2025-12-05T00:00:00Z",
"end-datetime":"2025-12-06T23:59:59Z"},"contact-info":"smtp-tls-reporting@google.com","report-id":"tls-1",
"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.org","mx-host":["mx.example.org"]},
"summary":{"total-successful-session-count":97,"total-failure-session-count":3},"failure-details":[
{"result-type":"certificate-expired","receiving-mx-hostname":"mx.example.org","failed-session-count":3}]}]}"#;

fn import(db: &TestDb, name: &str, text: &str) {
    std::fs::write(db.path(name), text).unwrap();
    db.run(&["reports", "import", &db.path(name).to_string_lossy()])
        .ok();
}

fn summary(db: &TestDb, dns: &TestDns, extra: &[&str]) -> kit::Run {
    let ns = dns.nameserver();
    let mut args = vec![
        "reports",
        "summary",
        "--since",
        "2000-01-01",
        "--nameserver",
        &ns,
    ];
    args.extend_from_slice(extra);
    db.run(&args)
}

#[test]
fn own_mail_decides_the_verdict_and_other_senders_are_named_with_a_cause() {
    let dns = TestDns::start(&[
        ("100.51.198.in-addr.arpa.", REVERSE),
        ("2.0.192.in-addr.arpa.", REVERSE),
        ("provider.test.", ZONE),
    ]);
    let db = TestDb::sqlite();
    db.run(&["domain", "add", "example.org"]).ok();
    std::fs::write(
        db.path("mailctl.toml"),
        "[server]\nhostname = \"mx.example.org\"\npublic_ips = [\"192.0.2.25\"]\n",
    )
    .unwrap();
    db.run(&["relay", "set", "example.org", "smtp://relay.provider.test"])
        .ok();
    import(
        &db,
        "r1.xml",
        &report(
            "r1",
            &[
                ("192.0.2.25", 600, "pass", "pass", "example.org"),
                ("203.0.113.5", 400, "pass", "pass", "example.org"),
                ("198.51.100.7", 40, "fail", "fail", "mailer.test"),
            ],
        ),
    );

    let ok = summary(&db, &dns, &["--format", "json"]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    let json: Value = ok.json();
    assert_eq!(json["status"], "OK");
    let d = &json["domains"][0];
    assert_eq!(d["domain"], "example.org");
    assert_eq!(
        (d["own_messages"].as_i64(), d["own_failed"].as_i64()),
        (Some(1000), Some(0))
    );
    assert_eq!(d["own_by_ip"], true);
    let whose: Vec<(&str, &str)> = d["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["ip"].as_str().unwrap(), s["whose"].as_str().unwrap()))
        .collect();
    assert_eq!(
        whose,
        [
            ("192.0.2.25", "ours"),
            ("203.0.113.5", "relay"),
            ("198.51.100.7", "other")
        ]
    );
    let problem = &d["problems"][0];
    assert_eq!(problem["ip"], "198.51.100.7");
    assert_eq!(problem["ptr"], "out.mailer.test");
    let cause = problem["cause"].as_str().unwrap();
    assert!(
        cause.contains("198.51.100.7 (out.mailer.test)")
            && cause.contains("envelope domain mailer.test"),
        "{cause}"
    );
    assert_eq!(d["sources"][0]["ptr"], "mx.example.org");

    let table = summary(&db, &dns, &[]);
    assert_eq!(table.code, 0);
    for needle in [
        "example.org  OK  0.0% of own mail failed DMARC (0 of 1000 messages)",
        "out.mailer.test",
        "failing sources:",
        "40 messages failed DMARC: a service sending as example.org from 198.51.100.7",
    ] {
        assert!(table.stdout.contains(needle), "{needle}: {}", table.stdout);
    }

    // Our own IP starts failing DKIM and SPF: 50 of 1,050 of our messages, 4.8%.
    import(
        &db,
        "r2.xml",
        &report("r2", &[("192.0.2.25", 50, "fail", "fail", "example.org")]),
    );
    import(&db, "tls.json", TLS);
    let warn = summary(&db, &dns, &["--format", "nagios"]);
    assert_eq!(warn.code, 1, "{}{}", warn.stdout, warn.stderr);
    assert_eq!(
        warn.stdout.trim(),
        "REPORTS WARNING - example.org: 4.8% of own mail failed DMARC (50 of 1050 messages); 3.0% of TLS \
         sessions to its MX failed (3 of 100) | 'example.org own_failed'=4.76%;2;10;0;100 \
         'example.org own_messages'=1050 'example.org tls_failed'=3.00%;2;10;0;100"
    );
    let crit = summary(&db, &dns, &["--format", "nagios", "--crit", "4%"]);
    assert_eq!(crit.code, 2, "{}", crit.stdout);
    assert!(
        crit.stdout.starts_with("REPORTS CRITICAL - "),
        "{}",
        crit.stdout
    );
    let json = summary(&db, &dns, &["--json"]).json();
    let d = &json["domains"][0];
    let ours = d["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ip"] == "192.0.2.25")
        .unwrap();
    assert!(
        ours["cause"]
            .as_str()
            .unwrap()
            .contains("mailctl audit example.org"),
        "{ours}"
    );
    assert_eq!(
        d["tls_failures"],
        serde_json::json!([["certificate-expired", 3]])
    );

    // A named domain without reports alone: UNKNOWN; bad thresholds: usage errors.
    db.run(&["domain", "add", "quiet.test"]).ok();
    let unknown = summary(&db, &dns, &["quiet.test", "--format", "nagios"]);
    assert_eq!(unknown.code, 3, "{}", unknown.stdout);
    assert_eq!(
        unknown.stdout.trim(),
        "REPORTS UNKNOWN - quiet.test: no reports in the period"
    );
    summary(&db, &dns, &["--warn", "200%"]).fails(2, "--warn \"200%\"");
    summary(&db, &dns, &["--warn", "20%", "--crit", "10%"])
        .fails(2, "--warn must not be above --crit");
    // Reports outside the period are not counted.
    let recent = db.run(&[
        "--json",
        "reports",
        "summary",
        "--since",
        "1d",
        "--nameserver",
        &dns.nameserver(),
    ]);
    assert_eq!(recent.code, 3, "{}", recent.stdout);
    assert_eq!(recent.json()["domains"], serde_json::json!([]));
}

#[test]
fn the_audit_reads_the_last_week_of_reports() {
    let dns = TestDns::start(&[(
        "example.org.",
        "example.org. IN MX 10 mx.example.org.\nmx.example.org. IN A 192.0.2.25\n",
    )]);
    let db = TestDb::sqlite();
    db.run(&["domain", "add", "example.org"]).ok();
    std::fs::write(
        db.path("mailctl.toml"),
        "[server]\nhostname = \"mx.example.org\"\npublic_ips = [\"192.0.2.25\"]\n",
    )
    .unwrap();
    let audit = |db: &TestDb| {
        let ns = dns.nameserver();
        let run = db.run(&[
            "--json",
            "audit",
            "example.org",
            "--no-connect",
            "--nameserver",
            &ns,
            "--only",
            "reports",
        ]);
        let json = run.json();
        let findings: Vec<(String, String, String)> = json["domains"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["id"].as_str().unwrap().starts_with("reports."))
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_string(),
                    f["status"].as_str().unwrap().to_string(),
                    f["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        findings
    };
    let none = audit(&db);
    assert_eq!(none.len(), 2, "{none:?}");
    assert_eq!(
        (none[0].0.as_str(), none[0].1.as_str()),
        ("reports.dmarc", "INFO")
    );
    assert!(
        none[0]
            .2
            .starts_with("no DMARC aggregate reports stored from the last 7 days"),
        "{none:?}"
    );

    // Yesterday's report: our IP fails DKIM for 5% of its mail (SPF still passes); a year-old report that
    // would make it clean is outside the week.
    let now = chrono::Utc::now().timestamp();
    let recent = report(
        "week-1",
        &[
            ("192.0.2.25", 95, "pass", "pass", "example.org"),
            ("192.0.2.25", 5, "fail", "pass", "example.org"),
        ],
    )
    .replace("1764979200", &(now - 86_400).to_string())
    .replace("1765065599", &(now - 60).to_string());
    import(&db, "recent.xml", &recent);
    import(
        &db,
        "old.xml",
        &report(
            "old-1",
            &[("192.0.2.25", 10_000, "pass", "pass", "example.org")],
        ),
    );
    let tls = TLS
        .replace(
            "2025-12-05T00:00:00Z",
            &(chrono::Utc::now() - chrono::Duration::days(1))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        )
        .replace(
            "2025-12-06T23:59:59Z",
            &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    import(&db, "tls.json", &tls);
    let found = audit(&db);
    assert_eq!(found[0].0, "reports.dmarc");
    assert_eq!(found[0].1, "FAIL", "{found:?}");
    assert!(
        found[0].2.starts_with("receivers saw DKIM fail for 5.0% of mail from this server's IPs (5 of 100; DMARC failed for 0.0%)"),
        "{found:?}"
    );
    assert_eq!(
        (found[1].0.as_str(), found[1].1.as_str()),
        ("reports.tls", "WARN")
    );
    assert!(found[1].2.contains("certificate-expired 3"), "{found:?}");
}
