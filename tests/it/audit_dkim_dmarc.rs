//! `mailctl audit` DKIM, DMARC, MTA-STS and TLS-RPT checks end to end: zones made by `mailctl dns records` (then
//! broken one fault at a time) served by a real authoritative DNS server on loopback, audited by the real binary.

use std::process::Command;

use kit::TestDb;
use kit::dns::TestDns;

const FAMILIES: &str = "dkim,dmarc,mta_sts,tls_rpt";

/// One finding: id, status, subject, detail, fix.
#[derive(Debug, Clone)]
struct F {
    id: String,
    status: String,
    subject: String,
    detail: String,
    fix: String,
}

/// Adds `domain` to `db` with an RSA 2048 key at `s1` and an Ed25519 key at `ed1` (when `rsa`), else only an
/// Ed25519 key at `s1` (fast).
fn provision(db: &TestDb, domain: &str, rsa: bool) {
    db.run(&["domain", "add", domain]).ok();
    if rsa {
        db.run(&["dkim", "generate", domain, "--selector", "s1"])
            .ok();
        db.run(&[
            "dkim",
            "generate",
            domain,
            "--selector",
            "ed1",
            "--algorithm",
            "ed25519",
        ])
        .ok();
    } else {
        db.run(&[
            "dkim",
            "generate",
            domain,
            "--selector",
            "s1",
            "--algorithm",
            "ed25519",
        ])
        .ok();
    }
}

/// The zone `mailctl dns records` prints for `domain` (extra flags appended).
fn zone(db: &TestDb, domain: &str, extra: &[&str]) -> String {
    let mut args = vec!["dns", "records", domain, "--ip", "127.0.0.10"];
    args.extend_from_slice(extra);
    db.run(&args).ok().stdout
}

/// A healthy zone for a domain that the auditing database does not know (made by a throw-away database).
fn foreign_zone(domain: &str, extra: &[&str]) -> String {
    let maker = TestDb::sqlite();
    provision(&maker, domain, false);
    zone(&maker, domain, extra)
}

/// `zone` without the records owned by `owner` (e.g. `_dmarc.x.example.`).
fn without(zone: &str, owner: &str) -> String {
    zone.lines()
        .filter(|l| !l.starts_with(owner))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `zone` with the TXT records at `owner` replaced by one holding `value`.
fn with_txt(zone: &str, owner: &str, value: &str) -> String {
    format!("{}{owner} 3600 IN TXT \"{value}\"\n", without(zone, owner))
}

/// Serves `zones` and the top-level zone `example.`: DMARC's tree walk climbs to `_dmarc.example.`, which must
/// get NXDOMAIN, not the REFUSED given for names outside every served zone (receivers take that as temperror).
fn serve(zones: &[(&str, &str)]) -> TestDns {
    let mut all = zones.to_vec();
    all.push(("example.", ""));
    TestDns::start(&all)
}

/// Audits `domain` through `dns` with the four families; returns the exit code and the findings.
fn audit(db: &TestDb, dns: &TestDns, domain: &str, extra: &[&str]) -> (i32, Vec<F>) {
    let ns = dns.nameserver();
    let mut args = vec![
        "--json",
        "audit",
        domain,
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        FAMILIES,
    ];
    args.extend_from_slice(extra);
    let run = db.run(&args);
    let json = run.json();
    assert_eq!(json["domains"][0]["domain"], domain);
    let findings = json["domains"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            F {
                id: s("id"),
                status: s("status"),
                subject: s("subject"),
                detail: s("detail"),
                fix: s("fix"),
            }
        })
        .collect();
    (run.code, findings)
}

/// The findings that are neither PASS nor INFO, as (id, status).
fn problems(findings: &[F]) -> Vec<(String, String)> {
    findings
        .iter()
        .filter(|f| f.status != "PASS" && f.status != "INFO")
        .map(|f| (f.id.clone(), f.status.clone()))
        .collect()
}

fn one<'a>(findings: &'a [F], id: &str) -> &'a F {
    let found: Vec<&F> = findings.iter().filter(|f| f.id == id).collect();
    assert_eq!(found.len(), 1, "expected one {id}: {findings:#?}");
    found[0]
}

fn ids(findings: &[F]) -> Vec<String> {
    let mut ids: Vec<String> = findings.iter().map(|f| f.id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn provisioned_domain_passes_every_dkim_dmarc_mta_sts_and_tls_rpt_check() {
    let db = TestDb::sqlite();
    provision(&db, "healthy.example", true);
    let dns = serve(&[("healthy.example.", &zone(&db, "healthy.example", &[]))]);
    let (code, findings) = audit(&db, &dns, "healthy.example", &[]);
    // Every finding passes; the organizational domain is information.
    let passes = |f: &F| f.status == "PASS" || (f.id == "dmarc.org_domain" && f.status == "INFO");
    assert!(findings.iter().all(passes), "{findings:#?}");
    assert_eq!(code, 0);
    assert_eq!(
        ids(&findings),
        [
            "dkim.key_match",
            "dkim.key_size",
            "dkim.record",
            "dkim.testing",
            "dmarc.org_domain",
            "dmarc.policy",
            "dmarc.record",
            "dmarc.reports",
            "mta_sts.record",
            "tls_rpt.record"
        ]
    );
    for selector in ["s1", "ed1"] {
        let subject = format!("{selector}._domainkey.healthy.example");
        let of: Vec<&str> = findings
            .iter()
            .filter(|f| f.subject == subject)
            .map(|f| f.id.as_str())
            .collect();
        assert_eq!(
            of,
            [
                "dkim.record",
                "dkim.key_size",
                "dkim.testing",
                "dkim.key_match"
            ],
            "{subject}"
        );
    }
    let sizes: Vec<&str> = findings
        .iter()
        .filter(|f| f.id == "dkim.key_size")
        .map(|f| f.detail.as_str())
        .collect();
    assert!(sizes.contains(&"RSA 2048 bits"), "{sizes:?}");
    assert!(
        one(&findings, "dmarc.reports")
            .detail
            .contains("mailto:postmaster@healthy.example")
    );
    assert_eq!(
        one(&findings, "dmarc.org_domain").detail,
        "organizational domain healthy.example: _dmarc.healthy.example is the highest DMARC record on the DNS \
         tree walk"
    );
}

#[test]
fn database_key_missing_from_dns_fails_dkim_record_with_the_record_as_fix() {
    let db = TestDb::sqlite();
    provision(&db, "nokey.example", false);
    let full = zone(&db, "nokey.example", &[]);
    let dns = serve(&[(
        "nokey.example.",
        &without(&full, "s1._domainkey.nokey.example."),
    )]);
    let (code, findings) = audit(&db, &dns, "nokey.example", &[]);
    assert_eq!(
        problems(&findings),
        [("dkim.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    let f = one(&findings, "dkim.record");
    assert!(
        f.fix
            .starts_with("s1._domainkey.nokey.example. 3600 IN TXT \"v=DKIM1; k=ed25519; p="),
        "{f:?}"
    );
    assert!(
        !findings.iter().any(|f| f.id == "dkim.key_match"),
        "no key to match against"
    );
}

#[test]
fn pending_key_not_yet_published_is_info_not_failure() {
    let db = TestDb::sqlite();
    provision(&db, "pending.example", false);
    let published = zone(&db, "pending.example", &[]);
    db.run(&[
        "dkim",
        "generate",
        "pending.example",
        "--selector",
        "next",
        "--algorithm",
        "ed25519",
    ])
    .ok();
    let dns = serve(&[("pending.example.", &published)]);
    let (code, findings) = audit(&db, &dns, "pending.example", &[]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    let pending: Vec<&F> = findings
        .iter()
        .filter(|f| f.subject == "next._domainkey.pending.example")
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        (pending[0].id.as_str(), pending[0].status.as_str()),
        ("dkim.record", "INFO")
    );
    assert!(pending[0].detail.contains("pending"), "{:?}", pending[0]);
}

/// A 1024-bit RSA key made by openssl, as the base64 SubjectPublicKeyInfo a DKIM record publishes.
fn openssl_1024_public_key(dir: &std::path::Path) -> String {
    let key = dir.join("weak.pem");
    let ok = |cmd: &mut Command| {
        let out = cmd.output().expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("1024"));
    let pem = ok(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key));
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[test]
fn a_1024_bit_key_warns_in_dkim_key_size() {
    let db = TestDb::sqlite();
    let public = openssl_1024_public_key(db.dir.path());
    let zone = with_txt(
        &foreign_zone("weak.example", &[]),
        "weak._domainkey.weak.example.",
        &format!("v=DKIM1; k=rsa; p={public}"),
    );
    let dns = serve(&[("weak.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "weak.example", &["--selector", "weak"]);
    assert_eq!(
        problems(&findings),
        [("dkim.key_size".into(), "WARN".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 1);
    assert_eq!(
        one(&findings, "dkim.key_size").detail.split(':').next(),
        Some("RSA 1024 bits")
    );
    assert_eq!(one(&findings, "dkim.record").status, "PASS");
}

#[test]
fn published_key_not_matching_the_database_key_fails_dkim_key_match() {
    let db = TestDb::sqlite();
    provision(&db, "swapped.example", false);
    let ours = zone(&db, "swapped.example", &[]);
    let dns = serve(&[("swapped.example.", &foreign_zone("swapped.example", &[]))]);
    let (code, findings) = audit(&db, &dns, "swapped.example", &[]);
    assert_eq!(
        problems(&findings),
        [("dkim.key_match".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    let f = one(&findings, "dkim.key_match");
    assert!(
        f.detail
            .starts_with("the published key does not match the database key"),
        "{f:?}"
    );
    let our_line = ours
        .lines()
        .find(|l| l.starts_with("s1._domainkey."))
        .expect("our DKIM line");
    let (_, our_value) = our_line.split_once("IN\tTXT\t").expect("TXT value");
    assert!(
        f.fix.ends_with(our_value),
        "fix {:?} should publish {our_value}",
        f.fix
    );
}

#[test]
fn missing_dmarc_record_fails_dmarc_record() {
    let db = TestDb::sqlite();
    let zone = without(
        &foreign_zone("nodmarc.example", &[]),
        "_dmarc.nodmarc.example.",
    );
    let dns = serve(&[("nodmarc.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "nodmarc.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    assert_eq!(
        one(&findings, "dmarc.record").fix,
        "_dmarc.nodmarc.example. 3600 IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@nodmarc.example\""
    );
}

#[test]
fn dmarc_policy_none_warns_in_dmarc_policy() {
    let db = TestDb::sqlite();
    let zone = foreign_zone("monitor.example", &["--dmarc-policy", "none"]);
    let dns = serve(&[("monitor.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "monitor.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.policy".into(), "WARN".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 1);
    assert!(
        one(&findings, "dmarc.policy")
            .fix
            .contains("\"v=DMARC1; p=quarantine; rua=")
    );
}

#[test]
fn historic_pct_is_information_not_a_warning() {
    let db = TestDb::sqlite();
    let zone = with_txt(
        &foreign_zone("half.example", &[]),
        "_dmarc.half.example.",
        "v=DMARC1; p=reject; pct=50; rua=mailto:postmaster@half.example",
    );
    let dns = serve(&[("half.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "half.example", &["--selector", "s1"]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    assert!(!ids(&findings).contains(&"dmarc.pct".to_string()));
    let historic = one(&findings, "dmarc.historic");
    assert_eq!(historic.status, "INFO");
    assert_eq!(historic.subject, "_dmarc.half.example");
    assert!(
        historic
            .detail
            .starts_with("pct=50: historic in RFC 9989; receivers following it ignore it"),
        "{historic:?}"
    );
    assert!(
        historic
            .fix
            .ends_with("\"v=DMARC1; p=reject; rua=mailto:postmaster@half.example\""),
        "{historic:?}"
    );
    assert_eq!(one(&findings, "dmarc.policy").detail, "p=reject");
}

#[test]
fn two_dmarc_records_and_a_record_without_reports_are_reported() {
    let db = TestDb::sqlite();
    let base = foreign_zone("twice.example", &[]);
    let two = format!("{base}_dmarc.twice.example. 3600 IN TXT \"v=DMARC1; p=reject\"\n");
    let quiet = with_txt(&base, "_dmarc.twice.example.", "v=DMARC1; p=reject");
    for (zone, id, status, code) in [
        (two, "dmarc.record", "FAIL", 2),
        (quiet, "dmarc.reports", "WARN", 1),
    ] {
        let dns = serve(&[("twice.example.", &zone)]);
        let (got, findings) = audit(&db, &dns, "twice.example", &["--selector", "s1"]);
        assert_eq!(
            problems(&findings),
            [(id.into(), status.into())],
            "{findings:#?}"
        );
        assert_eq!(got, code);
    }
}

#[test]
fn external_report_address_needs_the_other_domains_authorization() {
    let db = TestDb::sqlite();
    let zone = foreign_zone(
        "sender.example",
        &["--report-address", "dmarc@reports.example"],
    );
    let unauthorized = serve(&[("sender.example.", &zone), ("reports.example.", "")]);
    let (code, findings) = audit(&db, &unauthorized, "sender.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.external".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    let f = one(&findings, "dmarc.external");
    assert_eq!(f.subject, "sender.example._report._dmarc.reports.example");
    assert_eq!(
        f.fix,
        "sender.example._report._dmarc.reports.example. 3600 IN TXT \"v=DMARC1\""
    );

    let authorization = "sender.example._report._dmarc.reports.example. 3600 IN TXT \"v=DMARC1\"\n";
    let authorized = serve(&[
        ("sender.example.", &zone),
        ("reports.example.", authorization),
    ]);
    let (code, findings) = audit(&db, &authorized, "sender.example", &["--selector", "s1"]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    assert_eq!(one(&findings, "dmarc.external").status, "PASS");
}

#[test]
fn bad_mta_sts_id_fails_mta_sts_record() {
    let db = TestDb::sqlite();
    let zone = with_txt(
        &foreign_zone("sts.example", &[]),
        "_mta-sts.sts.example.",
        "v=STSv1; id=not-valid!",
    );
    let dns = serve(&[("sts.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "sts.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("mta_sts.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    assert!(
        one(&findings, "mta_sts.record")
            .fix
            .starts_with("_mta-sts.sts.example. 3600 IN TXT \"v=STSv1; id=")
    );
}

#[test]
fn absent_mta_sts_and_tls_rpt_are_info_and_malformed_tls_rpt_fails() {
    let db = TestDb::sqlite();
    let base = foreign_zone("plain.example", &[]);
    let bare = without(
        &without(&base, "_mta-sts.plain.example."),
        "_smtp._tls.plain.example.",
    );
    let dns = serve(&[("plain.example.", &bare)]);
    let (code, findings) = audit(&db, &dns, "plain.example", &["--selector", "s1"]);
    assert_eq!(code, 0, "{findings:#?}");
    for id in ["mta_sts.record", "tls_rpt.record"] {
        let f = one(&findings, id);
        assert_eq!(f.status, "INFO", "{f:?}");
        assert!(f.fix.contains(" 3600 IN TXT \"v="), "{f:?}");
    }
    let broken = with_txt(
        &base,
        "_smtp._tls.plain.example.",
        "v=TLSRPTv1; rua=tls@plain.example",
    );
    let dns = serve(&[("plain.example.", &broken)]);
    let (code, findings) = audit(&db, &dns, "plain.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("tls_rpt.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
}

#[test]
fn domain_not_in_the_database_is_audited_with_selector() {
    let db = TestDb::sqlite();
    let dns = serve(&[("stranger.example.", &foreign_zone("stranger.example", &[]))]);
    let (code, findings) = audit(&db, &dns, "stranger.example", &["--selector", "s1"]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    assert_eq!(
        one(&findings, "dkim.record").subject,
        "s1._domainkey.stranger.example"
    );
    assert!(
        !findings.iter().any(|f| f.id == "dkim.key_match"),
        "no private key to match"
    );

    let (code, findings) = audit(&db, &dns, "stranger.example", &["--selector", "other"]);
    assert_eq!(
        problems(&findings),
        [("dkim.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
}

#[test]
fn without_selectors_common_ones_are_probed() {
    let db = TestDb::sqlite();
    let zone = foreign_zone("probe.example", &[]);
    let dns = serve(&[("probe.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "probe.example", &[]);
    assert_eq!(code, 0, "{findings:#?}");
    assert_eq!(
        one(&findings, "dkim.record").subject,
        "s1._domainkey.probe.example"
    );

    let dns = serve(&[("probe.example.", &without(&zone, "s1._domainkey."))]);
    let (code, findings) = audit(&db, &dns, "probe.example", &[]);
    assert_eq!(
        problems(&findings),
        [("dkim.record".into(), "WARN".into())],
        "{findings:#?}"
    );
    assert!(
        one(&findings, "dkim.record")
            .detail
            .contains("pass --selector")
    );
    assert_eq!(code, 1);
}

#[test]
fn a_nameserver_that_never_answers_is_unknown_never_missing() {
    let db = TestDb::sqlite();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let ns = silent.local_addr().expect("addr").to_string();
    let run = db.run(&[
        "--json",
        "audit",
        "dead.example",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        FAMILIES,
        "--selector",
        "s1",
        "--timeout",
        "1",
    ]);
    let json = run.json();
    let findings = json["domains"][0]["findings"].as_array().expect("findings");
    // The runner's own MX lookup (kept under any --only) fails the same way; these families' findings follow.
    let got: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .filter(|(id, _)| !id.starts_with("mx."))
        .collect();
    assert_eq!(
        got,
        [
            ("dkim.record", "UNKNOWN"),
            ("dmarc.record", "UNKNOWN"),
            ("mta_sts.record", "UNKNOWN"),
            ("tls_rpt.record", "UNKNOWN")
        ]
    );
    assert_eq!(run.code, 3);
}

/// The DMARC findings, as (id, status, subject).
fn dmarc(findings: &[F]) -> Vec<(&str, &str, &str)> {
    findings
        .iter()
        .filter(|f| f.id.starts_with("dmarc."))
        .map(|f| (f.id.as_str(), f.status.as_str(), f.subject.as_str()))
        .collect()
}

#[test]
fn subdomain_without_dmarc_record_inherits_the_parent_policy() {
    let db = TestDb::sqlite();
    let sub = without(
        &foreign_zone("sub.org.example", &[]),
        "_dmarc.sub.org.example.",
    );
    // Reports go to a sibling of the subdomain: the same organization, so no authorization is needed.
    let parent = "_dmarc.org.example. 3600 IN TXT \"v=DMARC1; p=reject; rua=mailto:d@reports.org.example\"\n";
    let dns = serve(&[("org.example.", &format!("{sub}{parent}"))]);
    let (code, findings) = audit(&db, &dns, "sub.org.example", &["--selector", "s1"]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    assert_eq!(
        dmarc(&findings),
        [
            ("dmarc.record", "INFO", "_dmarc.sub.org.example"),
            ("dmarc.org_domain", "INFO", "sub.org.example"),
            ("dmarc.policy", "PASS", "_dmarc.org.example"),
            ("dmarc.reports", "PASS", "_dmarc.org.example"),
        ]
    );
    let record = one(&findings, "dmarc.record");
    assert!(
        record
            .detail
            .starts_with("inherited from _dmarc.org.example (policy p=reject applies)"),
        "{record:?}"
    );

    // The parent's sp= is what subdomains get; its fix stays on the parent's record.
    let parent = "_dmarc.org.example. 3600 IN TXT \"v=DMARC1; p=reject; sp=none; rua=mailto:d@org.example\"\n";
    let dns = serve(&[("org.example.", &format!("{sub}{parent}"))]);
    let (code, findings) = audit(&db, &dns, "sub.org.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.policy".into(), "WARN".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 1);
    assert!(
        one(&findings, "dmarc.record")
            .detail
            .contains("policy sp=none applies")
    );
    assert_eq!(
        one(&findings, "dmarc.policy").fix,
        "_dmarc.org.example. 3600 IN TXT \"v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@org.example\""
    );

    // Neither has one: the subdomain fails, and the detail says where the audit looked.
    let dns = serve(&[("org.example.", &sub)]);
    let (code, findings) = audit(&db, &dns, "sub.org.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    let f = one(&findings, "dmarc.record");
    assert!(
        f.detail
            .contains("nor at _dmarc.org.example, _dmarc.example:"),
        "{f:?}"
    );
    assert!(
        f.fix
            .starts_with("_dmarc.sub.org.example. 3600 IN TXT \"v=DMARC1; p=quarantine")
    );
}

#[test]
fn skipped_dmarc_tags_warn_and_records_receivers_discard_fail() {
    let db = TestDb::sqlite();
    let base = foreign_zone("tags.example", &[]);
    let bare = with_txt(
        &base,
        "_dmarc.tags.example.",
        "v=DMARC1; p=reject; rua=dmarc@x",
    );
    let dns = serve(&[("tags.example.", &bare)]);
    let (code, findings) = audit(&db, &dns, "tags.example", &["--selector", "s1"]);
    // Receivers skip the address that is not a URI, so no aggregate report arrives either.
    assert_eq!(
        problems(&findings),
        [
            ("dmarc.tags".into(), "WARN".into()),
            ("dmarc.reports".into(), "WARN".into())
        ],
        "{findings:#?}"
    );
    assert_eq!(code, 1);
    assert_eq!(one(&findings, "dmarc.record").status, "PASS");
    assert_eq!(one(&findings, "dmarc.policy").detail, "p=reject");
    let tags = one(&findings, "dmarc.tags");
    assert!(tags.detail.contains("rua= holds 'dmarc@x'"), "{tags:?}");
    let repaired = "_dmarc.tags.example. 3600 IN TXT \"v=DMARC1; p=reject; rua=mailto:dmarc@x\"";
    assert_eq!(tags.fix, repaired);
    assert_eq!(one(&findings, "dmarc.reports").fix, repaired);

    // Values receivers skip (t=yes, a part that is no tag) warn; the historic pct is not judged at all.
    let sloppy = with_txt(
        &base,
        "_dmarc.tags.example.",
        "v=DMARC1; p=reject; pct=150; t=yes; junk; rua=mailto:postmaster@tags.example",
    );
    let dns = serve(&[("tags.example.", &sloppy)]);
    let (code, findings) = audit(&db, &dns, "tags.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.tags".into(), "WARN".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 1);
    let tags = one(&findings, "dmarc.tags");
    assert!(
        tags.detail.contains("t=yes") && tags.detail.contains("'junk'"),
        "{tags:?}"
    );
    assert!(!tags.detail.contains("pct"), "{tags:?}");
    assert_eq!(one(&findings, "dmarc.historic").status, "INFO");
    assert_eq!(one(&findings, "dmarc.policy").detail, "p=reject");

    // An invalid adkim= makes receivers that parse as mail-auth does (mailctl serve) discard the whole record.
    let discarded = with_txt(
        &base,
        "_dmarc.tags.example.",
        "v=DMARC1; p=reject; adkim=x; rua=mailto:postmaster@tags.example",
    );
    let dns = serve(&[("tags.example.", &discarded)]);
    let (code, findings) = audit(&db, &dns, "tags.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
    let record = one(&findings, "dmarc.record");
    assert!(
        record.detail.contains("adkim=x is not r or s")
            && record.detail.contains("receivers discard it"),
        "{record:?}"
    );

    // An invalid p= still leaves receivers without a policy.
    let broken = with_txt(
        &base,
        "_dmarc.tags.example.",
        "v=DMARC1; p=block; rua=mailto:postmaster@tags.example",
    );
    let dns = serve(&[("tags.example.", &broken)]);
    let (code, findings) = audit(&db, &dns, "tags.example", &["--selector", "s1"]);
    assert_eq!(
        problems(&findings),
        [("dmarc.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);
}

#[test]
fn revoked_key_under_a_common_selector_is_info_not_failure() {
    let db = TestDb::sqlite();
    let zone = format!(
        "{}default._domainkey.revoked.example. 3600 IN TXT \"v=DKIM1; k=rsa; p=\"\n",
        foreign_zone("revoked.example", &[])
    );
    let dns = serve(&[("revoked.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "revoked.example", &[]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    let revoked: Vec<&F> = findings
        .iter()
        .filter(|f| f.subject == "default._domainkey.revoked.example")
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(
        (revoked[0].id.as_str(), revoked[0].status.as_str()),
        ("dkim.record", "INFO")
    );
    assert!(revoked[0].detail.contains("revoked"), "{:?}", revoked[0]);

    // Named explicitly, the same record is a selector in use that no longer verifies.
    let (code, findings) = audit(&db, &dns, "revoked.example", &["--selector", "default"]);
    assert_eq!(
        problems(&findings),
        [("dkim.record".into(), "FAIL".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 2);

    // Only revoked keys among the common selectors: the active one must be elsewhere.
    let dns = serve(&[("revoked.example.", &without(&zone, "s1._domainkey."))]);
    let (code, findings) = audit(&db, &dns, "revoked.example", &[]);
    assert_eq!(
        problems(&findings),
        [("dkim.record".into(), "WARN".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 1);
    let warn = findings
        .iter()
        .find(|f| f.status == "WARN")
        .expect("the WARN");
    assert_eq!(warn.subject, "_domainkey.revoked.example");
    assert!(
        warn.detail.contains("only revoked ones (default)"),
        "{warn:?}"
    );
}

#[test]
fn a_failed_common_selector_lookup_is_reported_not_dropped() {
    let db = TestDb::sqlite();
    // An alias out of every served zone: the server refuses the follow-up query, so that lookup fails.
    let zone = format!(
        "{}default._domainkey.flaky.example. 3600 IN CNAME key.unserved.net.\n",
        foreign_zone("flaky.example", &[])
    );
    let dns = serve(&[("flaky.example.", &zone)]);
    let (code, findings) = audit(&db, &dns, "flaky.example", &[]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert_eq!(code, 0);
    let dkim: Vec<(&str, &str, &str)> = findings
        .iter()
        .filter(|f| f.id == "dkim.record")
        .map(|f| (f.status.as_str(), f.subject.as_str(), f.detail.as_str()))
        .collect();
    assert_eq!(dkim.len(), 2, "{dkim:#?}");
    assert_eq!(dkim[0].0, "PASS");
    assert_eq!(dkim[0].1, "s1._domainkey.flaky.example");
    assert_eq!(dkim[1].0, "INFO");
    assert_eq!(dkim[1].1, "_domainkey.flaky.example");
    assert!(
        dkim[1]
            .2
            .starts_with("probe incomplete: DNS lookup of common selectors (default) failed"),
        "{dkim:#?}"
    );

    // Without any key found, the failed lookup makes the probe UNKNOWN, not "no key".
    let dns = serve(&[("flaky.example.", &without(&zone, "s1._domainkey."))]);
    let (code, findings) = audit(&db, &dns, "flaky.example", &[]);
    assert_eq!(
        problems(&findings),
        [("dkim.record".into(), "UNKNOWN".into())],
        "{findings:#?}"
    );
    assert_eq!(code, 3);
    assert!(one(&findings, "dkim.record").detail.contains("(default)"));
}
