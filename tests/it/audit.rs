//! `mailctl audit` as a whole: MX checks, output formats, exit codes, argument errors, `--all`.

use kit::TestDb;
use kit::dns::TestDns;

const ZONE: &str = "\
healthy.example.\t300\tIN\tMX\t10 mx.healthy.example.
mx.healthy.example.\t300\tIN\tA\t127.0.0.10
nullmx.example.\t300\tIN\tMX\t0 .
nomx.example.\t300\tIN\tA\t127.0.0.11
alias.example.\t300\tIN\tMX\t10 mx.alias.example.
mx.alias.example.\t300\tIN\tCNAME\tmx.healthy.example.
noaddr.example.\t300\tIN\tMX\t10 mx.noaddr.example.
";

fn zones() -> TestDns {
    TestDns::start(&[("example.", ZONE)])
}

fn audit(db: &TestDb, dns: &TestDns, args: &[&str]) -> kit::Run {
    let ns = dns.nameserver();
    let mut full = vec![
        "--json",
        "audit",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "mx",
    ];
    full.extend_from_slice(args);
    db.run(&full)
}

fn statuses(run: &kit::Run) -> Vec<(String, String)> {
    run.json()["domains"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_healthy_mx_passes_and_exits_0() {
    let (db, dns) = (TestDb::sqlite(), zones());
    let run = audit(&db, &dns, &["healthy.example"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        statuses(&run),
        pairs(&[("mx.present", "PASS"), ("mx.address", "PASS")])
    );
    assert!(
        run.json()["domains"][0]["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("10 mx.healthy.example")
    );
}

#[test]
fn mx_faults_fail_with_their_own_id() {
    let (db, dns) = (TestDb::sqlite(), zones());
    let run = audit(&db, &dns, &["nomx.example"]);
    assert_eq!(run.code, 2);
    assert_eq!(statuses(&run), pairs(&[("mx.present", "FAIL")]));
    assert!(
        run.json()["domains"][0]["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("IN MX 10 mail.nomx.example.")
    );

    let run = audit(&db, &dns, &["alias.example"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        statuses(&run),
        pairs(&[
            ("mx.present", "PASS"),
            ("mx.cname", "FAIL"),
            ("mx.address", "PASS")
        ])
    );

    let run = audit(&db, &dns, &["noaddr.example"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        statuses(&run),
        pairs(&[("mx.present", "PASS"), ("mx.address", "FAIL")])
    );

    let run = audit(&db, &dns, &["nullmx.example"]);
    assert_eq!(run.code, 0);
    assert_eq!(statuses(&run), pairs(&[("mx.present", "INFO")]));
    assert!(run.stdout.contains("accepts no mail"));
}

#[test]
fn a_nameserver_that_never_answers_is_unknown_not_missing() {
    let db = TestDb::sqlite();
    // Nothing listens on port 1: every query fails after the retry.
    let run = db.run(&[
        "--json",
        "audit",
        "healthy.example",
        "--nameserver",
        "127.0.0.1:1",
        "--timeout",
        "1",
        "--no-connect",
        "--only",
        "mx",
    ]);
    assert_eq!(run.code, 3);
    let findings = run.json()["domains"][0]["findings"].clone();
    assert_eq!(findings[0]["status"], "UNKNOWN");
    assert!(
        findings[0]["detail"]
            .as_str()
            .unwrap()
            .contains("could not test"),
        "{findings}"
    );
}

#[test]
fn nagios_and_table_formats() {
    let (db, dns) = (TestDb::sqlite(), zones());
    let ns = dns.nameserver();
    let run = db.run(&[
        "audit",
        "healthy.example",
        "nomx.example",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "mx",
        "--format",
        "nagios",
    ]);
    assert_eq!(run.code, 2);
    let line = run.stdout.trim();
    assert!(
        line.starts_with("MAILCTL AUDIT CRITICAL - nomx.example mx.present FAIL"),
        "{line}"
    );
    assert!(line.ends_with("| pass=2 warn=0 fail=1 unknown=0"), "{line}");
    assert_eq!(run.stdout.lines().count(), 1);

    let run = db.run(&[
        "audit",
        "healthy.example",
        "nomx.example",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "mx",
        "--format",
        "table",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stdout.contains("DOMAIN") && run.stdout.contains("nomx.example"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .trim_end()
            .ends_with("FAIL: 2 passed, 0 info, 0 warnings, 1 failed, 0 could not be tested"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\u{1b}'), "no colour codes in a pipe");
}

#[test]
fn bad_audit_arguments_exit_3_before_any_lookup() {
    let db = TestDb::sqlite();
    for (args, needle) in [
        (&["audit", "bad..example"][..], "invalid domain name"),
        (&["audit", "--bogus", "example.org"], "unexpected argument"),
        (
            &["audit", "example.org", "--nameserver", "ns.example"],
            "invalid nameserver",
        ),
        (
            &["audit", "example.org", "--format", "xml"],
            "invalid value 'xml'",
        ),
        (&["audit", "example.org", "--timeout", "0"], "--timeout"),
        (
            &["audit", "example.org", "--rbl", "not a zone"],
            "blocklist zone",
        ),
        (&["audit"], "required"),
        (
            &["audit", "example.org", "--only", "spff"],
            "unknown check 'spff'",
        ),
        (
            &["audit", "example.org", "--skip", "mx.present.x"],
            "unknown check",
        ),
    ] {
        db.run(args).fails(3, needle);
    }
    std::fs::write(db.path("mailctl.toml"), "bogus = 1\n").unwrap();
    db.run(&["audit", "example.org"]).fails(3, "unknown field");
}

#[test]
fn all_audits_every_active_domain_in_the_database() {
    let (db, dns) = (TestDb::sqlite(), zones());
    db.run(&["domain", "add", "healthy.example"]).ok();
    db.run(&["domain", "add", "nomx.example"]).ok();
    db.run(&["domain", "add", "sleepy.example", "--inactive"])
        .ok();
    let run = audit(&db, &dns, &["--all"]);
    assert_eq!(run.code, 2);
    let domains: Vec<String> = run.json()["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(domains, ["healthy.example", "nomx.example"]);
    let fresh = TestDb::sqlite();
    let mut cmd = fresh.command(&["audit", "--all"]);
    cmd.env_remove("MAILCTL_DATABASE_URL");
    kit::run_command(cmd, "").fails(3, "needs a database");
    assert!(
        !fresh.path("data/mailctl/mailctl.db").exists(),
        "audit never creates a database"
    );
}

/// `--all` as an admin runs it at a terminal (a real pty, through util-linux's `script`): a progress bar on
/// stderr while the domains are audited, then one summary row per domain, then the details of the domains
/// that are not OK only, coloured, every line within the width.
#[test]
fn all_at_a_terminal_shows_progress_then_a_summary_then_what_is_wrong() {
    let (db, dns) = (TestDb::sqlite(), zones());
    for d in ["healthy.example", "nomx.example", "alias.example"] {
        db.run(&["domain", "add", d]).ok();
    }
    let ns = dns.nameserver();
    let args = [
        "audit",
        "--all",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "mx",
    ];
    let plain = db.command(&args);
    let quoted: Vec<String> = std::iter::once(plain.get_program())
        .chain(plain.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_clear();
    for (k, v) in plain.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .env("COLUMNS", "80");
    let run = kit::run_command(cmd, "");
    // `script` passes the exit code on and writes what the terminal showed (stdout and stderr) to its stdout.
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let screen = run.stdout.replace("\r\n", "\n");
    assert!(
        screen.contains("auditing [") && screen.contains("/3"),
        "a progress bar while auditing:\n{screen}"
    );
    let summary = screen
        .find("DOMAIN")
        .unwrap_or_else(|| panic!("a summary table:\n{screen}"));
    let after: Vec<&str> = screen[summary..].lines().collect();
    assert!(
        after[0].contains("STATUS") && after[0].contains("FAIL"),
        "{screen}"
    );
    for (row, domain, status) in [
        (1, "alias.example", "FAIL"),
        (2, "healthy.example", "PASS"),
        (3, "nomx.example", "FAIL"),
    ] {
        assert!(
            after[row].starts_with(domain) && after[row].contains(status),
            "row {row} is {domain} {status}:\n{screen}"
        );
    }
    let details = after[4..].join("\n");
    assert!(
        details.contains("nomx.example  \u{1b}[31mFAIL\u{1b}[0m  (")
            && details.contains("alias.example  \u{1b}[31mFAIL\u{1b}[0m  ("),
        "the domains that are not OK get their details, coloured:\n{screen}"
    );
    assert!(
        !details.contains("healthy.example  "),
        "an OK domain gets no details:\n{screen}"
    );
    for line in &after {
        let visible = line
            .replace("\u{1b}[31m", "")
            .replace("\u{1b}[33m", "")
            .replace("\u{1b}[32m", "")
            .replace("\u{1b}[34m", "")
            .replace("\u{1b}[0m", "");
        assert!(
            visible.chars().count() <= 80,
            "wider than 80: {visible:?}\n{screen}"
        );
    }
}

#[test]
fn only_and_skip_select_findings() {
    let (db, dns) = (TestDb::sqlite(), zones());
    let ns = dns.nameserver();
    let run = db.run(&[
        "--json",
        "audit",
        "healthy.example",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "mx.present",
    ]);
    assert_eq!(statuses(&run), pairs(&[("mx.present", "PASS")]));
    let run = db.run(&[
        "--json",
        "audit",
        "healthy.example",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "mx",
        "--skip",
        "mx.address",
    ]);
    assert_eq!(statuses(&run), pairs(&[("mx.present", "PASS")]));
}

#[test]
fn an_audit_that_tests_nothing_is_unknown_not_ok() {
    let (db, dns) = (TestDb::sqlite(), zones());
    let ns = dns.nameserver();
    let run = db.run(&[
        "--json",
        "audit",
        "healthy.example",
        "--nameserver",
        &ns,
        "--no-connect",
        "--only",
        "smtp",
    ]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(run.stdout.contains("no check ran"), "{}", run.stdout);
    // A dead nameserver under --only smtp: the MX lookup's UNKNOWN stays visible.
    let run = db.run(&[
        "--json",
        "audit",
        "healthy.example",
        "--nameserver",
        "127.0.0.1:1",
        "--timeout",
        "1",
        "--only",
        "smtp",
    ]);
    assert_eq!(run.code, 3);
    assert_eq!(statuses(&run), pairs(&[("mx.present", "UNKNOWN")]));
}

/// A domain where every DNS family finds something wrong: an MX without PTR, `+all` SPF, a DKIM key in the
/// database that DNS does not publish, no DMARC, no MTA-STS, no TLS-RPT.
const BROKEN: &str = "\
broken.example.\t300\tIN\tMX\t10 mx.broken.example.
mx.broken.example.\t300\tIN\tA\t192.0.2.77
broken.example.\t300\tIN\tTXT\t\"v=spf1 +all\"
";

#[test]
fn the_report_fits_the_terminal_and_its_fixes_can_be_copied_whole() {
    let db = TestDb::sqlite();
    db.run(&["domain", "add", "broken.example"]).ok();
    db.run(&["dkim", "generate", "broken.example", "--selector", "s1"])
        .ok();
    let dns = TestDns::start(&[("broken.example.", BROKEN), ("example.", "")]);
    let ns = dns.nameserver();
    let report = |columns: &str| {
        let mut cmd = db.command(&[
            "audit",
            "broken.example",
            "--nameserver",
            &ns,
            "--no-connect",
            "--timeout",
            "2",
        ]);
        cmd.env("COLUMNS", columns).env_remove("NO_COLOR");
        kit::run_command(cmd, "")
    };
    let mut widest = 0;
    for columns in [80usize, 120] {
        let run = report(&columns.to_string());
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert!(
            lines[0].starts_with("broken.example  FAIL  ("),
            "{}",
            run.stdout
        );
        // Finding lines fit; fixes (indented four spaces) are never cut.
        for l in lines.iter().filter(|l| !l.starts_with("    ")) {
            assert!(
                l.chars().count() <= columns,
                "wider than {columns}: {l:?}\n{}",
                run.stdout
            );
            widest = widest.max(l.chars().count());
        }
        let first = lines
            .iter()
            .find(|l| l.len() > 4 && !l.starts_with("broken"))
            .unwrap();
        assert!(
            first.starts_with("FAIL"),
            "the worst comes first:\n{}",
            run.stdout
        );
        let to_fix = lines
            .iter()
            .position(|l| *l == "To fix")
            .unwrap_or_else(|| panic!("no To fix section:\n{}", run.stdout));
        let fixes = lines[to_fix..].join("\n");
        assert!(
            fixes.contains("s1._domainkey.broken.example. 3600 IN TXT")
                && fixes.contains("v=DKIM1"),
            "the DKIM record is there to copy:\n{fixes}"
        );
        assert!(fixes.contains("_dmarc.broken.example."), "{fixes}");
        // The fix for +all keeps the domain's own server allowed: never a bare -all.
        assert!(
            fixes.contains("broken.example. 3600 IN TXT \"v=spf1 mx")
                && !fixes.contains("\"v=spf1 -all\""),
            "{fixes}"
        );
        assert_eq!(
            *lines.last().unwrap(),
            "FAIL (exit 2): receivers refuse or junk this mail; fix the failures first"
        );
        assert!(!run.stdout.contains('\u{1b}'), "no colour in a pipe");
    }
    assert!(widest > 80, "at 120 columns the lines use the room");
}
