//! `mailctl audit` SMTP probe and MTA-STS policy fetch, end to end: the real binary against a test DNS server and
//! a scriptable SMTP listener (or a tiny HTTPS server) on their own 127.0.0.x address, so tests run in parallel.
//! Certificates come from a throw-away CA trusted through `--extra-ca`.

use std::sync::Arc;

use kit::dns::TestDns;
use kit::smtp::{HttpsServer, Script, SmtpListener, TestCa, policy_response};
use kit::{Run, TestDb};
use serde_json::Value;

/// One audited domain `LABEL.example` with `MX 10 mx.LABEL.example`, and where its test servers listen
/// (127.0.0.N).
///
/// The MX address is 192.0.2.N with a PTR (`mx.LABEL.example` unless a test names another), and the probe is
/// redirected to 127.0.0.N with `--connect-to`: the resolver answers PTR queries under
/// `127.in-addr.arpa` itself (`localhost`, RFC 6761), so a loopback MX address cannot carry a test PTR.
/// [`Case::loopback`] puts the MX on 127.0.0.N itself.
struct Case {
    domain: String,
    mx: String,
    listen: String,
    redirect: bool,
    dns: TestDns,
    db: TestDb,
    ca: TestCa,
}

impl Case {
    /// `extra` is added to the domain's zone (absolute names).
    fn new(label: &str, n: u8, ptr: Option<&str>, extra: &str) -> Case {
        Case::build(label, n, ptr, extra, true)
    }

    /// The MX address is 127.0.0.N itself.
    fn loopback(label: &str, n: u8) -> Case {
        Case::build(label, n, None, "", false)
    }

    fn build(label: &str, n: u8, ptr: Option<&str>, extra: &str, redirect: bool) -> Case {
        let domain = format!("{label}.example");
        let mx = format!("mx.{domain}");
        let mx_ip = if redirect {
            format!("192.0.2.{n}")
        } else {
            format!("127.0.0.{n}")
        };
        let zone = format!("{domain}. IN MX 10 {mx}.\n{mx}. IN A {mx_ip}\n{extra}");
        let ptr = ptr.map(str::to_string).unwrap_or_else(|| mx.clone());
        let reverse = format!("{n}.2.0.192.in-addr.arpa. IN PTR {ptr}.\n");
        let dns = TestDns::start(&[
            (&format!("{domain}."), &zone),
            ("2.0.192.in-addr.arpa.", &reverse),
        ]);
        Case {
            domain,
            mx,
            listen: format!("127.0.0.{n}"),
            redirect,
            dns,
            db: TestDb::sqlite(),
            ca: TestCa::new(),
        }
    }

    fn tls(&self, days_valid: i64) -> Arc<rustls::ServerConfig> {
        self.ca.server_config(&[&self.mx], days_valid)
    }

    /// Runs the audit with the SMTP probe on `port` (timeout 3 s unless `extra` sets one), the test CA trusted
    /// when `trust`.
    fn audit(&self, port: &str, extra: &[&str], trust: bool) -> Run {
        let ns = self.dns.nameserver();
        let mut args = vec![
            "--json",
            "audit",
            &self.domain,
            "--nameserver",
            &ns,
            "--only",
            "smtp",
            "--smtp-port",
            port,
        ];
        if !extra.contains(&"--timeout") {
            args.extend(["--timeout", "3"]);
        }
        args.extend_from_slice(extra);
        if self.redirect {
            args.extend(["--connect-to", &self.listen]);
        }
        let pem = self.db.path("ca.pem");
        let pem = pem.to_string_lossy();
        if trust {
            self.ca.write_pem(std::path::Path::new(&*pem));
            args.extend(["--extra-ca", &pem]);
        }
        kit::run_command(self.db.command(&args), "")
    }
}

/// `(id, status)` of every finding, in order.
fn statuses(run: &Run) -> Vec<(String, String)> {
    let json = run.json();
    let findings = json["domains"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {}", run.stdout));
    findings
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or("").to_string(),
                f["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn finding(run: &Run, id: &str) -> Value {
    let json = run.json();
    json["domains"][0]["findings"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["id"] == id).cloned())
        .unwrap_or_else(|| panic!("no {id} finding: {}", run.stdout))
}

/// Asserts the exact findings and the exit code.
#[track_caller]
fn expect(run: &Run, expected: &[(&str, &str)], code: i32) {
    let got = statuses(run);
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(i, s)| (i.to_string(), s.to_string()))
        .collect();
    assert_eq!(got, want, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
}

const HEALTHY: &[(&str, &str)] = &[
    ("smtp.connect", "PASS"),
    ("smtp.banner", "PASS"),
    ("smtp.banner_name", "PASS"),
    ("smtp.ehlo", "PASS"),
    ("smtp.starttls", "PASS"),
    ("smtp.certificate", "PASS"),
    ("smtp.rcpt_unknown", "PASS"),
];

/// HEALTHY with one id's status replaced.
fn healthy_but(id: &str, status: &'static str) -> Vec<(&'static str, &'static str)> {
    HEALTHY
        .iter()
        .map(|&(i, s)| (i, if i == id { status } else { s }))
        .collect()
}

#[test]
fn healthy_mx_passes_every_smtp_check_and_never_sends_data() {
    let case = Case::new("healthy", 11, None, "");
    let smtp = SmtpListener::start(
        &case.listen,
        Script::healthy(&case.mx, &case.domain, case.tls(90)),
    );
    let run = case.audit(&smtp.port(), &["--relay-test"], true);
    let mut want = HEALTHY.to_vec();
    want.push(("smtp.relay", "PASS"));
    expect(&run, &want, 0);
    let commands = smtp.commands();
    assert!(
        !commands.iter().any(|c| c.eq_ignore_ascii_case("DATA")),
        "{commands:?}"
    );
    assert_eq!(
        commands.iter().filter(|c| c.starts_with("EHLO ")).count(),
        2,
        "{commands:?}"
    );
    assert!(commands.contains(&"STARTTLS".to_string()), "{commands:?}");
    assert_eq!(
        commands[commands.len() - 2..],
        ["RSET", "QUIT"],
        "{commands:?}"
    );
    let rcpt = commands
        .iter()
        .find(|c| c.starts_with("RCPT TO:") && c.ends_with("@healthy.example>"))
        .expect("unknown-recipient RCPT");
    assert_eq!(
        rcpt.len(),
        "RCPT TO:<>".len() + 24 + "@healthy.example".len()
    );
}

#[test]
fn missing_starttls_fails_only_smtp_starttls() {
    let case = Case::new("nostarttls", 12, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.tls = None;
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &[], true);
    let want: Vec<_> = healthy_but("smtp.starttls", "FAIL")
        .into_iter()
        .filter(|(id, _)| *id != "smtp.certificate")
        .collect();
    expect(&run, &want, 2);
    assert!(
        finding(&run, "smtp.starttls")["fix"]
            .as_str()
            .unwrap_or("")
            .contains("smtpd_tls")
    );
}

#[test]
fn banner_name_other_than_forward_confirmed_ptr_warns() {
    let case = Case::new("bannerwarn", 13, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.banner = "220 localhost.localdomain ESMTP".into();
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &[], true);
    expect(&run, &healthy_but("smtp.banner_name", "WARN"), 1);
    let f = finding(&run, "smtp.banner_name");
    assert!(
        f["fix"]
            .as_str()
            .unwrap_or("")
            .contains("myhostname = mx.bannerwarn.example"),
        "{f}"
    );
}

#[test]
fn banner_name_other_than_unconfirmed_ptr_warns_leaving_the_failure_to_ptr_fcrdns() {
    let case = Case::new("bannerfail", 19, Some("host.bannerfail.example"), "");
    let smtp = SmtpListener::start(
        &case.listen,
        Script::healthy(&case.mx, &case.domain, case.tls(90)),
    );
    let run = case.audit(&smtp.port(), &["--only", "ptr"], true);
    // One fault (the PTR name has no address), one failing id.
    let mut want = vec![
        ("ptr.exists", "PASS"),
        ("ptr.fcrdns", "FAIL"),
        ("ptr.generic", "PASS"),
    ];
    want.extend(healthy_but("smtp.banner_name", "WARN"));
    expect(&run, &want, 2);
    let f = finding(&run, "smtp.banner_name");
    assert!(
        f["detail"].as_str().unwrap_or("").contains("ptr.fcrdns"),
        "{f}"
    );
}

#[test]
fn certificate_for_another_name_fails() {
    let case = Case::new("wrongname", 14, None, "");
    let tls = case.ca.server_config(&["other.example"], 90);
    let smtp = SmtpListener::start(&case.listen, Script::healthy(&case.mx, &case.domain, tls));
    let run = case.audit(&smtp.port(), &[], true);
    expect(&run, &healthy_but("smtp.certificate", "FAIL"), 2);
    let detail = finding(&run, "smtp.certificate")["detail"].to_string();
    assert!(
        detail.contains("does not cover mx.wrongname.example"),
        "{detail}"
    );
}

#[test]
fn certificate_expiring_in_five_days_warns() {
    let case = Case::new("expiring", 15, None, "");
    let smtp = SmtpListener::start(
        &case.listen,
        Script::healthy(&case.mx, &case.domain, case.tls(5)),
    );
    let run = case.audit(&smtp.port(), &[], true);
    expect(&run, &healthy_but("smtp.certificate", "WARN"), 1);
    let detail = finding(&run, "smtp.certificate")["detail"].to_string();
    assert!(detail.contains("expires on"), "{detail}");
}

#[test]
fn certificate_from_an_unknown_ca_warns() {
    let case = Case::new("untrusted", 20, None, "");
    let smtp = SmtpListener::start(
        &case.listen,
        Script::healthy(&case.mx, &case.domain, case.tls(90)),
    );
    let run = case.audit(&smtp.port(), &[], false);
    expect(&run, &healthy_but("smtp.certificate", "WARN"), 1);
    let detail = finding(&run, "smtp.certificate")["detail"].to_string();
    assert!(detail.contains("only opportunistic senders"), "{detail}");
}

#[test]
fn untrusted_certificate_fails_when_the_domain_publishes_mta_sts() {
    let extra = "_mta-sts.stsuntrusted.example. IN TXT \"v=STSv1; id=20260101\"\n";
    let case = Case::new("stsuntrusted", 26, None, extra);
    let smtp = SmtpListener::start(
        &case.listen,
        Script::healthy(&case.mx, &case.domain, case.tls(90)),
    );
    let run = case.audit(&smtp.port(), &[], false);
    expect(&run, &healthy_but("smtp.certificate", "FAIL"), 2);
    let detail = finding(&run, "smtp.certificate")["detail"].to_string();
    assert!(
        detail.contains("senders honouring your MTA-STS policy will refuse delivery"),
        "{detail}"
    );
}

#[test]
fn client_refusal_at_rcpt_is_unknown_not_a_rejected_recipient() {
    let case = Case::new("clientrefused", 27, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.unknown_reply =
        Some("554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied".into());
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &[], true);
    expect(&run, &healthy_but("smtp.rcpt_unknown", "UNKNOWN"), 3);
    let detail = finding(&run, "smtp.rcpt_unknown")["detail"].to_string();
    assert!(
        detail.contains("the server refused the auditing client, not the recipient"),
        "{detail}"
    );
}

#[test]
fn refused_sender_is_unknown_for_the_relay_test_not_relaying_refused() {
    let case = Case::new("relaysender", 28, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.mail_reply =
        Some("553 5.1.8 <postmaster@h>: Sender address rejected: Domain not found".into());
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &["--relay-test"], true);
    let mut want = healthy_but("smtp.rcpt_unknown", "UNKNOWN");
    want.push(("smtp.relay", "UNKNOWN"));
    expect(&run, &want, 3);
    let detail = finding(&run, "smtp.relay")["detail"].to_string();
    assert!(detail.contains("relaying was never tried"), "{detail}");
    let commands = smtp.commands();
    let senders: Vec<&String> = commands
        .iter()
        .filter(|c| c.starts_with("MAIL FROM:"))
        .collect();
    assert_eq!(senders.len(), 2, "{commands:?}");
    assert!(
        senders
            .iter()
            .all(|c| c.starts_with("MAIL FROM:<postmaster@") && !c.contains("example.com")),
        "the relay test's sender is the auditing host's postmaster: {commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.contains("relay-test@")),
        "{commands:?}"
    );
}

#[test]
fn relay_rcpt_refused_for_the_client_is_unknown_and_a_relay_refusal_passes() {
    let case = Case::new("relayclient", 29, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.relay_reply =
        Some("554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied".into());
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &["--relay-test"], true);
    let mut want = HEALTHY.to_vec();
    want.push(("smtp.relay", "UNKNOWN"));
    expect(&run, &want, 3);
    drop(smtp);
    // Postfix's defer_unauth_destination refuses relaying with a 4xx: still refused.
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.relay_reply = Some("454 4.7.1 <relay-test@example.net>: Relay access denied".into());
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &["--relay-test"], true);
    let mut want = HEALTHY.to_vec();
    want.push(("smtp.relay", "PASS"));
    expect(&run, &want, 0);
}

#[test]
fn accepting_an_unknown_recipient_fails_rcpt_unknown() {
    let case = Case::new("backscatter", 16, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.accept_unknown = true;
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &[], true);
    expect(&run, &healthy_but("smtp.rcpt_unknown", "FAIL"), 2);
    let detail = finding(&run, "smtp.rcpt_unknown")["detail"].to_string();
    assert!(detail.contains("backscatter"), "{detail}");
}

#[test]
fn open_relay_fails_relay_test_without_data() {
    let case = Case::new("openrelay", 17, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.open_relay = true;
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &["--relay-test"], true);
    let mut want = HEALTHY.to_vec();
    want.push(("smtp.relay", "FAIL"));
    expect(&run, &want, 2);
    let commands = smtp.commands();
    assert!(
        commands.contains(&"RCPT TO:<relay-test@example.net>".to_string()),
        "{commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.eq_ignore_ascii_case("DATA")),
        "{commands:?}"
    );
    assert_eq!(
        commands[commands.len() - 2..],
        ["RSET", "QUIT"],
        "{commands:?}"
    );
}

#[test]
fn silent_server_fails_banner() {
    let case = Case::new("silent", 25, None, "");
    let mut script = Script::healthy(&case.mx, &case.domain, case.tls(90));
    script.banner = String::new();
    let smtp = SmtpListener::start(&case.listen, script);
    let run = case.audit(&smtp.port(), &["--timeout", "1"], true);
    expect(
        &run,
        &[("smtp.connect", "PASS"), ("smtp.banner", "FAIL")],
        2,
    );
    let detail = finding(&run, "smtp.banner")["detail"].to_string();
    assert!(detail.contains("no banner within 1 s"), "{detail}");
}

#[test]
fn loopback_mx_reports_banner_name_as_info_without_comparing() {
    let case = Case::loopback("loopback", 24);
    let smtp = SmtpListener::start(
        &case.listen,
        Script::healthy(&case.mx, &case.domain, case.tls(90)),
    );
    let run = case.audit(&smtp.port(), &[], true);
    expect(&run, &healthy_but("smtp.banner_name", "INFO"), 0);
}

#[test]
fn nothing_listening_is_unknown_not_a_failure() {
    let case = Case::loopback("closed", 18);
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.18:0").expect("bind");
        probe.local_addr().expect("addr").port().to_string()
    };
    let run = case.audit(&port, &[], true);
    expect(&run, &[("smtp.connect", "UNKNOWN")], 3);
    let detail = finding(&run, "smtp.connect")["detail"].to_string();
    assert!(detail.contains("blocks outbound port 25"), "{detail}");
}

/// A domain with an MTA-STS TXT record and `mta-sts.DOMAIN` at 127.0.0.N, served by an HTTPS server with
/// `policy`.
fn audit_policy(label: &str, n: u8, policy: &str) -> Run {
    let domain = format!("{label}.example");
    let ip = format!("127.0.0.{n}");
    let extra = format!(
        "_mta-sts.{domain}. IN TXT \"v=STSv1; id=20260101\"\nmta-sts.{domain}. IN A {ip}\n"
    );
    let case = Case::new(label, n, None, &extra);
    let tls = case.ca.server_config(&[&format!("mta-sts.{domain}")], 90);
    let https = HttpsServer::start(&ip, tls, policy_response(policy));
    let ns = case.dns.nameserver();
    let pem = case.db.path("ca.pem");
    case.ca.write_pem(&pem);
    let (pem, port) = (pem.to_string_lossy(), https.port());
    let cmd = case.db.command(&[
        "--json",
        "audit",
        &domain,
        "--nameserver",
        &ns,
        "--no-connect",
        "--fetch-policy",
        "--only",
        "mta_sts.policy,mta_sts.mode,mta_sts.mx",
        "--timeout",
        "3",
        "--extra-ca",
        &pem,
        "--https-port",
        &port,
    ]);
    kit::run_command(cmd, "")
}

#[test]
fn fetched_policy_matching_the_mx_passes() {
    let run = audit_policy(
        "stsgood",
        21,
        "version: STSv1\r\nmode: enforce\r\nmx: *.stsgood.example\r\nmax_age: 604800\r\n",
    );
    let want = [
        ("mta_sts.policy", "PASS"),
        ("mta_sts.mode", "PASS"),
        ("mta_sts.mx", "PASS"),
    ];
    expect(&run, &want, 0);
}

#[test]
fn fetched_policy_not_matching_the_mx_fails_mta_sts_mx() {
    let run = audit_policy(
        "stsbad",
        22,
        "version: STSv1\nmode: enforce\nmx: mail.elsewhere.example\nmax_age: 604800\n",
    );
    let want = [
        ("mta_sts.policy", "PASS"),
        ("mta_sts.mode", "PASS"),
        ("mta_sts.mx", "FAIL"),
    ];
    expect(&run, &want, 2);
    let f = finding(&run, "mta_sts.mx");
    assert!(
        f["detail"]
            .as_str()
            .unwrap_or("")
            .contains("mx.stsbad.example"),
        "{f}"
    );
    assert!(
        f["fix"]
            .as_str()
            .unwrap_or("")
            .contains("mx: mx.stsbad.example"),
        "{f}"
    );
}

#[test]
fn unparsable_policy_fails_mta_sts_policy() {
    let run = audit_policy("stsgarbage", 23, "<html>hello</html>\n");
    expect(&run, &[("mta_sts.policy", "FAIL")], 2);
}

/// `MAX_ADDRESSES` and `MAX_CONCURRENT` of the probe.
const MAX_ADDRESSES: usize = 10;
const MAX_CONCURRENT: usize = 16;

#[test]
fn fan_out_is_capped_per_domain_and_per_process() {
    // Three domains of 12 MX addresses each, audited with --all: 10 addresses per domain are probed, the other 2
    // named in one INFO, and no more than 16 sessions are open at once although 30 probes are due together.
    let db = TestDb::sqlite();
    let labels = ["fan1", "fan2", "fan3"];
    let mut zone = String::new();
    for (d, label) in labels.iter().enumerate() {
        db.run(&["domain", "add", &format!("{label}.example")]).ok();
        zone.push_str(&format!("{label}.example. IN MX 10 mx.{label}.example.\n"));
        for i in 0..12 {
            zone.push_str(&format!(
                "mx.{label}.example. IN A 192.0.2.{}\n",
                100 + 20 * d + i
            ));
        }
    }
    let dns = TestDns::start(&[("example.", &zone)]);
    let ca = TestCa::new();
    let listen = "127.0.0.30";
    let mut script = Script::healthy(
        "mx.fan.example",
        "fan.example",
        ca.server_config(&["x"], 90),
    );
    script.tls = None;
    script.greeting_delay = std::time::Duration::from_millis(1000);
    let smtp = SmtpListener::start(listen, script);
    let (ns, port) = (dns.nameserver(), smtp.port());
    let cmd = db.command(&[
        "--json",
        "audit",
        "--all",
        "--nameserver",
        &ns,
        "--only",
        "smtp.connect",
        "--smtp-port",
        &port,
        "--timeout",
        "5",
        "--connect-to",
        listen,
    ]);
    let run = kit::run_command(cmd, "");
    let json = run.json();
    let domains = json["domains"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert_eq!(domains.len(), labels.len(), "{}", run.stdout);
    for report in domains {
        let findings = report["findings"].as_array().expect("findings");
        let status = |s: &str| findings.iter().filter(|f| f["status"] == s).count();
        assert_eq!(status("PASS"), MAX_ADDRESSES, "{report}");
        assert_eq!(status("INFO"), 1, "{report}");
        assert_eq!(findings.len(), MAX_ADDRESSES + 1, "{report}");
        let info = findings
            .iter()
            .find(|f| f["status"] == "INFO")
            .expect("INFO");
        assert_eq!(info["subject"], report["domain"], "{info}");
        assert!(
            info["detail"]
                .as_str()
                .unwrap_or("")
                .contains("first 10 of 12 MX addresses"),
            "{info}"
        );
    }
    assert_eq!(smtp.sessions(), labels.len() * MAX_ADDRESSES);
    assert_eq!(smtp.max_sessions(), MAX_CONCURRENT, "sessions open at once");
    assert_eq!(run.code, 0, "{}", run.stderr);
}
