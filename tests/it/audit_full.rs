//! A whole audit, every check family at once (SMTP probe included), of a domain provisioned with mailctl and
//! published exactly as `mailctl dns records` says: everything passes. Then single faults, each of which must
//! make exactly one check id fail or warn across all families, with the matching exit code.

use kit::dns::TestDns;
use kit::smtp::{Script, SmtpListener, TestCa};
use kit::{Run, TestDb};

const LISTS: &str = "2.0.0.127.rbl.lists.example. 300 IN A 127.0.0.2\n\
                     test.dbl.lists.example. 300 IN A 127.0.1.2\n";

/// A hosted domain `LABEL.example` on 192.0.2.N (its SMTP listener on 127.0.0.N), with one fault applied.
struct Scenario {
    db: TestDb,
    dns: TestDns,
    smtp: SmtpListener,
    ca: TestCa,
    domain: String,
    listen: String,
}

impl Scenario {
    fn new(
        label: &str,
        n: u8,
        zone_edit: impl Fn(String) -> String,
        script_edit: impl Fn(&mut Script),
    ) -> Scenario {
        let db = TestDb::sqlite();
        let domain = format!("{label}.example");
        let mx = format!("mx.{domain}");
        let ip = format!("192.0.2.{n}");
        db.run(&["domain", "add", &domain]).ok();
        db.run(&["dkim", "generate", &domain, "--algorithm", "ed25519"])
            .ok();
        let zone = db
            .run(&["dns", "records", &domain, "--ip", &ip, "--mx-host", &mx])
            .ok()
            .stdout;
        let reverse = format!("{n}.2.0.192.in-addr.arpa. 300 IN PTR {mx}.\n");
        // The top-level zone `example.` answers NXDOMAIN where DMARC's tree walk climbs (`_dmarc.example.`).
        let dns = TestDns::start(&[
            (&format!("{domain}."), &zone_edit(zone)),
            ("2.0.192.in-addr.arpa.", &reverse),
            ("lists.example.", LISTS),
            ("example.", ""),
        ]);
        let ca = TestCa::new();
        let mut script = Script::healthy(&mx, &domain, ca.server_config(&[&mx], 90));
        script_edit(&mut script);
        let listen = format!("127.0.0.{n}");
        let smtp = SmtpListener::start(&listen, script);
        Scenario {
            db,
            dns,
            smtp,
            ca,
            domain,
            listen,
        }
    }

    fn audit(&self) -> Run {
        let ns = self.dns.nameserver();
        let port = self.smtp.port();
        let pem = self.db.path("ca.pem");
        self.ca.write_pem(&pem);
        let pem = pem.to_string_lossy();
        let args = [
            "--json",
            "audit",
            &self.domain,
            "--nameserver",
            &ns,
            "--smtp-port",
            &port,
            "--timeout",
            "3",
            "--rbl",
            "rbl.lists.example",
            "--dbl",
            "dbl.lists.example",
            "--extra-ca",
            &pem,
            "--connect-to",
            &self.listen,
        ];
        kit::run_command(self.db.command(&args), "")
    }
}

/// Every finding that is neither PASS nor INFO, as `(id, status)`.
fn problems(run: &Run) -> Vec<(String, String)> {
    run.json()["domains"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {}", run.stdout))
        .iter()
        .filter(|f| !matches!(f["status"].as_str(), Some("PASS" | "INFO")))
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ids(run: &Run) -> Vec<String> {
    run.json()["domains"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_domain_published_as_dns_records_says_passes_every_check() {
    let s = Scenario::new("healthy", 201, |z| z, |_| {});
    let run = s.audit();
    assert_eq!(
        problems(&run),
        Vec::<(String, String)>::new(),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ids = ids(&run);
    for family in [
        "mx.", "ptr.", "smtp.", "spf.", "dkim.", "dmarc.", "dnsbl.", "mta_sts.", "tls_rpt.",
    ] {
        assert!(
            ids.iter().any(|i| i.starts_with(family)),
            "no {family} finding: {ids:?}"
        );
    }
    assert!(
        ids.contains(&"dkim.key_match".to_string()),
        "the database key is checked against DNS"
    );
}

fn exactly(
    label: &str,
    n: u8,
    zone_edit: impl Fn(String) -> String,
    script_edit: impl Fn(&mut Script),
    id: &str,
    status: &str,
    code: i32,
) {
    let s = Scenario::new(label, n, zone_edit, script_edit);
    let run = s.audit();
    assert_eq!(
        problems(&run),
        vec![(id.to_string(), status.to_string())],
        "{}",
        run.stdout
    );
    assert_eq!(run.code, code);
}

fn drop_lines(zone: String, needle: &str) -> String {
    zone.lines()
        .filter(|l| !l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn without_dmarc_only_dmarc_record_fails() {
    exactly(
        "nodmarc",
        202,
        |z| drop_lines(z, "_dmarc."),
        |_| {},
        "dmarc.record",
        "FAIL",
        2,
    );
}

#[test]
fn a_plus_all_spf_only_fails_spf_all() {
    exactly(
        "plusall",
        203,
        |z| z.replacen(" -all\"", " +all\"", 1),
        |_| {},
        "spf.all",
        "FAIL",
        2,
    );
}

#[test]
fn without_starttls_only_smtp_starttls_fails() {
    exactly(
        "notls",
        204,
        |z| z,
        |s| s.tls = None,
        "smtp.starttls",
        "FAIL",
        2,
    );
}

#[test]
fn a_monitoring_dmarc_policy_only_warns() {
    exactly(
        "pnone",
        205,
        |z| z.replace("p=quarantine", "p=none"),
        |_| {},
        "dmarc.policy",
        "WARN",
        1,
    );
}
