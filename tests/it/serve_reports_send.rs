//! The DMARC aggregate reports `serve` sends: B receives mail from a.test (some of it passing DMARC, some
//! forged), `mailctl reports send` builds the report a.test asks for and B delivers it to A, where it arrives
//! at the report address, is stored by A's own report ingestion (a round trip through the reading side) and
//! is read by an independent parser (Python's `email`, `gzip` and `xml.etree`). Destinations outside a.test
//! need their `_report._dmarc` authorization; a `!size` limit the report exceeds is honoured; mail to report
//! addresses is never counted; a second run sends nothing.
//!
//! TLS reports: A delivers to B (STARTTLS) and to C (no STARTTLS), both asking for TLS reports; A's reports
//! reach B and C, whose report ingestion stores them, and Python reads the JSON.
//!
//! Test addresses `127.0.41.x`: A (a.test's MX, the reports' destination) is `.2`, B (the reporter) `.3`;
//! the TLS test uses `127.0.42.x`: A `.2`, B `.3`, C `.4`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::worlds::outbound_node::Node;
use crate::worlds::outbound_world::{submit, wait_for};
use kit::TestDb;
use kit::daemon::free_port;
use kit::dns::TestDns;
use kit::serve::ServeOptions;
use kit::serve::mail::{add_mailbox, cli, message};
use kit::smtp_client::SmtpClient;

const N: u8 = 41;

fn zone(b_key: &str) -> String {
    let ip = |h: u8| Ipv4Addr::new(127, 0, N, h);
    format!(
        r#"
a.test.                           IN MX  10 mx.a.test.
mx.a.test.                        IN A   {a}
a.test.                           IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.a.test.                    IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@a.test,mailto:agg@reports.test,mailto:x@other.test,mailto:tiny@a.test!1k"
a.test._report._dmarc.reports.test. IN TXT "v=DMARC1"
reports.test.                     IN MX  10 mx.a.test.
other.test.                       IN MX  10 mx.a.test.
b.test.                           IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.b.test.                    IN TXT "v=DMARC1; p=none"
mx.b.test.                        IN A   {b}
{b_key}
"#,
        a = ip(2),
        b = ip(3),
    )
}

/// Sends `msg` from `sender` to `rcpt` at B.
fn send(b: &Node, sender: &str, rcpt: &str, msg: &[u8]) {
    let mut c = SmtpClient::connect(b.addr("smtp"));
    c.ehlo("mail.a.test");
    c.send_mail(sender, &[rcpt], msg)
        .expect(250, "2.0.0 Ok: queued as ");
    c.command("QUIT").expect(221, "");
}

/// What Python's standard library reads in a report mail: headers and the report, namespaces stripped.
const PARSE: &str = r#"
import email, email.header, gzip, json, sys, xml.etree.ElementTree as ET
msg = email.message_from_bytes(sys.stdin.buffer.read())
xml = None
for part in msg.walk():
    if part.get_content_type() in ("application/gzip", "application/x-gzip"):
        xml = gzip.decompress(part.get_payload(decode=True))
root = ET.fromstring(xml)
for el in root.iter():
    el.tag = el.tag.split("}")[-1]
t = lambda path: root.findtext(path)
records = []
for r in root.findall("record"):
    records.append({
        "source_ip": r.findtext("row/source_ip"),
        "count": int(r.findtext("row/count")),
        "disposition": r.findtext("row/policy_evaluated/disposition"),
        "dkim": r.findtext("row/policy_evaluated/dkim"),
        "spf": r.findtext("row/policy_evaluated/spf"),
        "reason": r.findtext("row/policy_evaluated/reason/type"),
        "header_from": r.findtext("identifiers/header_from"),
        "envelope_from": r.findtext("identifiers/envelope_from"),
        "spf_auth": [(s.findtext("domain"), s.findtext("result")) for s in r.findall("auth_results/spf")],
    })
print(json.dumps({
    "auto_submitted": msg["Auto-Submitted"],
    "from": msg["From"],
    "subject": str(email.header.make_header(email.header.decode_header(msg["Subject"]))),
    "signed": msg["DKIM-Signature"] is not None,
    "org_name": t("report_metadata/org_name"),
    "email": t("report_metadata/email"),
    "report_id": t("report_metadata/report_id"),
    "begin": int(t("report_metadata/date_range/begin")),
    "end": int(t("report_metadata/date_range/end")),
    "domain": t("policy_published/domain"),
    "p": t("policy_published/p"),
    "records": records,
}))
"#;

/// What Python's standard library reads in a TLS report mail: headers and the gzipped JSON.
const PARSE_TLS: &str = r#"
import email, gzip, json, sys
msg = email.message_from_bytes(sys.stdin.buffer.read())
report = None
for part in msg.walk():
    if part.get_content_type() == "application/tlsrpt+gzip":
        report = json.loads(gzip.decompress(part.get_payload(decode=True)))
print(json.dumps({
    "report_type": msg.get_param("report-type"),
    "domain": msg["TLS-Report-Domain"],
    "submitter": msg["TLS-Report-Submitter"],
    "auto_submitted": msg["Auto-Submitted"],
    "report": report,
}))
"#;

fn python_reads(mail: &[u8]) -> serde_json::Value {
    python(PARSE, mail)
}

fn python(script: &str, mail: &[u8]) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (.ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(mail)
        .expect("write to python");
    let out = child.wait_with_output().expect("python finishes");
    assert!(
        out.status.success(),
        "python could not read the report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

#[test]
fn serve_reports_dmarc_results_to_the_domains_that_ask_and_the_reports_round_trip() {
    let a_db = TestDb::sqlite();
    for domain in ["a.test", "reports.test", "other.test"] {
        cli(&a_db, &format!("domain add {domain}"));
    }
    for mailbox in [
        "alice@a.test",
        "dmarc@a.test",
        "tiny@a.test",
        "agg@reports.test",
        "x@other.test",
    ] {
        add_mailbox(&a_db, mailbox, &[]);
    }
    // The reporter keeps its events on MariaDB (the TLS test's reporter on SQLite).
    let b_db = TestDb::mariadb();
    cli(&b_db, "domain add b.test");
    add_mailbox(&b_db, "bob@b.test", &[]);
    add_mailbox(&b_db, "postmaster@b.test", &[]);
    cli(&b_db, "dkim generate b.test --selector rep");
    let b_key = b_db
        .run(&["dkim", "show", "b.test", "--format", "zone"])
        .ok()
        .stdout;
    let dns = TestDns::start(&[("test.", &zone(&b_key))]);
    let ip = |h: u8| Ipv4Addr::new(127, 0, N, h);
    let port = free_port(&[ip(2), ip(3)]);
    let a_options = ServeOptions::default()
        .dns(&dns)
        .hostname("mx.a.test")
        .check("dkim", "mark")
        .check("dmarc", "mark")
        .server_key(
            "reports.addresses",
            r#"["dmarc@a.test", "agg@reports.test", "tiny@a.test"]"#,
        );
    let mut a = Node::new(&a_db, a_options, ip(2), port, false);
    let b_options = ServeOptions::default()
        .dns(&dns)
        .hostname("mx.b.test")
        .server_key("metrics", "\"127.0.0.1:0\"")
        .check("spf", "mark")
        .check("dkim", "mark")
        .check("dmarc", "mark");
    let mut b = Node::new(&b_db, b_options, ip(3), port, false);
    a.start();
    b.start();

    // Three messages that pass a.test's DMARC through aligned SPF, one forged (its envelope is someone
    // else's, nothing aligns: p=reject, filed as Junk by B), one to B's report address (never counted).
    for i in 0..3 {
        let msg = message(
            "alice@a.test",
            "bob@b.test",
            "hello",
            &format!("ok{i}@a.test"),
        );
        send(&b, "alice@a.test", "bob@b.test", &msg);
    }
    let forged = message("ceo@a.test", "bob@b.test", "wire money", "forged@a.test");
    send(&b, "x@evil.test", "bob@b.test", &forged);
    let to_reports = message("alice@a.test", "postmaster@b.test", "hi", "pm@a.test");
    send(&b, "alice@a.test", "postmaster@b.test", &to_reports);

    // What is due, without sending anything: one report about a.test with two records (the events are
    // written within a second of the messages).
    let mut due = serde_json::Value::Null;
    wait_for(&b, "B recorded the four messages", 10, || {
        due = b
            .server
            .run(&["--json", "reports", "send", "--now", "--dry-run"])
            .ok()
            .json();
        due["reports"][0]["messages"] == 4
    });
    let reports = due["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{due}");
    let report = &reports[0];
    assert_eq!(report["domain"], "a.test");
    assert_eq!(report["records"], 2);
    assert_eq!(report["outcome"], "due");
    let destinations = report["destinations"].as_array().unwrap();
    let refused = |address: &str| {
        destinations
            .iter()
            .find(|d| d["address"] == address)
            .unwrap_or_else(|| panic!("{address} missing in {due}"))["refused"]
            .clone()
    };
    assert!(refused("dmarc@a.test").is_null(), "{due}");
    assert!(
        refused("agg@reports.test").is_null(),
        "authorized by a.test._report._dmarc.reports.test: {due}"
    );
    let unauthorized = refused("x@other.test");
    assert!(
        unauthorized
            .as_str()
            .is_some_and(|r| r.contains("a.test._report._dmarc.other.test")),
        "{due}"
    );
    assert!(
        refused("tiny@a.test")
            .as_str()
            .is_some_and(|r| r.contains("larger than the 1024 bytes")),
        "{due}"
    );
    assert!(
        report["dkim"]
            .as_str()
            .is_some_and(|d| d.starts_with("d=b.test s=rep")),
        "{due}"
    );

    // As a person reads it: one line per report, each destination refused with its reason.
    let table = b
        .server
        .run(&["reports", "send", "--now", "--dry-run"])
        .ok()
        .stdout;
    eprintln!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("dmarc a.test ") && lines[0].ends_with("2 records, 4 messages  due"),
        "{table}"
    );
    for expected in [
        "  to dmarc@a.test",
        "  not to x@other.test: other.test does not accept",
    ] {
        assert!(
            lines.contains(&expected) || lines.iter().any(|l| l.starts_with(expected)),
            "{expected:?} missing in {table}"
        );
    }

    // Sent: queued at B, delivered by B to A, where the report addresses store it.
    let sent = b
        .server
        .run(&["--json", "reports", "send", "--now"])
        .ok()
        .json();
    let outcome = sent["reports"][0]["outcome"].as_str().unwrap().to_string();
    assert!(outcome.starts_with("queued as "), "{sent}");
    let mut stored = serde_json::Value::Null;
    wait_for(&a, "A stored B's report", 20, || {
        stored = a
            .server
            .run(&["--json", "reports", "list", "--since", "2000-01-01"])
            .ok()
            .json();
        stored.as_array().is_some_and(|r| !r.is_empty())
    });
    let received = &stored[0];
    assert_eq!(received["kind"], "dmarc");
    assert_eq!(received["domain"], "a.test");
    assert_eq!(received["org_name"], "b.test");
    assert_eq!(received["email"], "postmaster@b.test");
    assert_eq!(
        (received["messages"].as_i64(), received["failed"].as_i64()),
        (Some(4), Some(1)),
        "{received}"
    );
    let shown = a
        .server
        .run(&["--json", "reports", "show", &received["id"].to_string()])
        .ok()
        .json();
    let records = shown["records"].as_array().unwrap();
    assert_eq!(records[0]["count"], 3);
    assert_eq!(records[0]["spf"], "pass");
    assert_eq!(records[0]["disposition"], "none");
    assert_eq!(records[1]["count"], 1);
    assert_eq!(records[1]["disposition"], "quarantine");
    assert_eq!(records[1]["envelope_from"], "evil.test");

    // Both authorized destinations got one copy, the refused ones none.
    wait_for(&a, "agg@reports.test has the report", 10, || {
        !a.server.inbox("agg@reports.test").is_empty()
    });
    for (mailbox, copies) in [
        ("dmarc@a.test", 1),
        ("agg@reports.test", 1),
        ("x@other.test", 0),
        ("tiny@a.test", 0),
    ] {
        assert_eq!(a.server.inbox(mailbox).len(), copies, "{mailbox}");
    }

    // An independent parser reads the mail A received (its DKIM signature passed A's check).
    let mail = &a.server.inbox("dmarc@a.test")[0];
    let text = String::from_utf8_lossy(mail);
    assert!(text.contains("dkim=pass header.d=b.test"), "{text}");
    let parsed = python_reads(mail);
    assert_eq!(parsed["auto_submitted"], "auto-generated");
    assert_eq!(parsed["signed"], true);
    assert_eq!(parsed["org_name"], "b.test");
    assert_eq!(parsed["email"], "postmaster@b.test");
    assert_eq!(parsed["domain"], "a.test");
    assert_eq!(parsed["p"], "reject");
    assert_eq!(parsed["report_id"], sent["reports"][0]["report_id"]);
    assert!(
        parsed["subject"]
            .as_str()
            .is_some_and(|s| s.contains("Report Domain: a.test")),
        "{parsed}"
    );
    assert!(parsed["begin"].as_i64() <= parsed["end"].as_i64());
    let records = parsed["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{parsed}");
    assert_eq!(records[0]["count"], 3);
    assert_eq!(records[0]["source_ip"], "127.0.0.1");
    assert_eq!(records[0]["disposition"], "none");
    assert_eq!(records[0]["spf"], "pass");
    assert_eq!(records[0]["header_from"], "a.test");
    assert_eq!(records[1]["count"], 1);
    assert_eq!(records[1]["disposition"], "quarantine");
    assert_eq!(records[1]["reason"], "local_policy");
    assert_eq!(records[1]["dkim"], "fail");
    assert_eq!(records[1]["spf"], "fail");
    assert_eq!(
        records[1]["spf_auth"],
        serde_json::json!([["evil.test", "none"]])
    );

    // What was sent, as B lists it.
    let listed = b
        .server
        .run(&[
            "--json",
            "reports",
            "list",
            "--sent",
            "--since",
            "2000-01-01",
        ])
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["domain"], "a.test");
    assert_eq!(listed[0]["messages"], 4);
    assert_eq!(
        listed[0]["destinations"],
        serde_json::json!(["dmarc@a.test", "agg@reports.test"])
    );
    assert_eq!(listed[0]["outcome"].as_str(), Some(outcome.as_str()));

    // Everything seen is reported: a second run finds nothing due.
    let again = b
        .server
        .run(&["--json", "reports", "send", "--now", "--dry-run"])
        .ok()
        .json();
    assert_eq!(again["reports"], serde_json::json!([]), "{again}");

    // serve sends by itself: what it saw before today goes out shortly after a start. Two more messages,
    // moved to yesterday, then a restart.
    for i in 0..2 {
        let msg = message(
            "alice@a.test",
            "bob@b.test",
            "later",
            &format!("late{i}@a.test"),
        );
        send(&b, "alice@a.test", "bob@b.test", &msg);
    }
    wait_for(&b, "B recorded the two messages", 10, || {
        let due = b
            .server
            .run(&["--json", "reports", "send", "--now", "--dry-run"])
            .ok()
            .json();
        due["reports"][0]["messages"] == 2
    });
    b_db.query("UPDATE mailctl_report_events SET at = at - 86400");
    b.server.restart();
    wait_for(&a, "A stored the report B sent by itself", 40, || {
        let stored = a
            .server
            .run(&["--json", "reports", "list", "--since", "2000-01-01"])
            .ok()
            .json();
        stored.as_array().is_some_and(|r| r.len() == 2)
    });
    let body = kit::http::get(b.addr("metrics"), "/metrics").body;
    assert!(
        body.contains("mailctl_reports_sent_total{kind=\"dmarc\",result=\"queued\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("mailctl_report_events_dropped_total 0"),
        "{body}"
    );
}

#[test]
fn serve_sends_tls_reports_about_its_deliveries_to_the_domains_that_ask() {
    const N: u8 = 42;
    let ip = |h: u8| Ipv4Addr::new(127, 0, N, h);
    let a_db = TestDb::sqlite();
    cli(&a_db, "domain add a.test");
    add_mailbox(&a_db, "alice@a.test", &[]);
    cli(&a_db, "dkim generate a.test --selector tls");
    let a_key = a_db
        .run(&["dkim", "show", "a.test", "--format", "zone"])
        .ok()
        .stdout;
    let b_db = TestDb::sqlite();
    cli(&b_db, "domain add b.test");
    let c_db = TestDb::sqlite();
    cli(&c_db, "domain add n.test");
    for (db, domain) in [(&b_db, "b.test"), (&c_db, "n.test")] {
        add_mailbox(db, &format!("bob@{domain}"), &[]);
        add_mailbox(db, &format!("tls@{domain}"), &[]);
    }
    let zone = format!(
        r#"
a.test.             IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
b.test.             IN MX  10 mx.b.test.
mx.b.test.          IN A   {b}
_smtp._tls.b.test.  IN TXT "v=TLSRPTv1; rua=mailto:tls@b.test,https://reports.b.test/tls"
n.test.             IN MX  10 mx.n.test.
mx.n.test.          IN A   {c}
_smtp._tls.n.test.  IN TXT "v=TLSRPTv1; rua=mailto:tls@n.test"
{a_key}
"#,
        b = ip(3),
        c = ip(4),
    );
    let dns = TestDns::start(&[("test.", &zone)]);
    let port = free_port(&[ip(2), ip(3), ip(4)]);
    let a_options = ServeOptions::default()
        .dns(&dns)
        .server_key("reports.from", "\"postmaster@a.test\"")
        .server_key("reports.org_name", "\"A Test\"");
    let mut a = Node::new(&a_db, a_options, ip(2), port, true);
    let b_options = ServeOptions::default()
        .dns(&dns)
        .server_key("reports.addresses", r#"["tls@b.test"]"#);
    let mut b = Node::new(&b_db, b_options, ip(3), port, false);
    // C offers no STARTTLS.
    let c_options = ServeOptions {
        tls: false,
        ..ServeOptions::default()
    }
    .dns(&dns)
    .server_key("reports.addresses", r#"["tls@n.test"]"#);
    let mut c = Node::new(&c_db, c_options, ip(4), port, false);
    b.start();
    c.start();
    a.start();

    let msg = message("alice@a.test", "bob@b.test", "two hops", "tls1@a.test");
    submit(&a, &["bob@b.test", "bob@n.test"], &msg);
    wait_for(&a, "both copies arrived", 15, || {
        !b.server.inbox("bob@b.test").is_empty() && !c.server.inbox("bob@n.test").is_empty()
    });

    let mut due = serde_json::Value::Null;
    wait_for(&a, "A recorded both sessions", 10, || {
        due = a
            .server
            .run(&["--json", "reports", "send", "--now", "--dry-run"])
            .ok()
            .json();
        due["reports"].as_array().is_some_and(|r| r.len() == 2)
    });
    let report = |domain: &str| {
        due["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["domain"] == domain)
            .unwrap_or_else(|| panic!("no report about {domain}: {due}"))
            .clone()
    };
    let to_b = report("b.test");
    assert_eq!(to_b["kind"], "tls");
    assert_eq!(
        (to_b["records"].as_i64(), to_b["messages"].as_i64()),
        (Some(1), Some(1))
    );
    let destinations = to_b["destinations"].as_array().unwrap();
    assert_eq!(destinations[0]["address"], "tls@b.test");
    assert!(destinations[0]["refused"].is_null());
    assert!(
        destinations[1]["refused"]
            .as_str()
            .is_some_and(|r| r.contains("HTTPS")),
        "{due}"
    );
    assert!(
        to_b["dkim"]
            .as_str()
            .is_some_and(|d| d.starts_with("d=a.test s=tls")),
        "{due}"
    );

    let sent = a
        .server
        .run(&["--json", "reports", "send", "--now"])
        .ok()
        .json();
    for r in sent["reports"].as_array().unwrap() {
        assert!(
            r["outcome"].as_str().unwrap().starts_with("queued as "),
            "{sent}"
        );
    }
    let stored = |node: &Node| {
        node.server
            .run(&["--json", "reports", "list", "--since", "2000-01-01"])
            .ok()
            .json()
    };
    wait_for(&a, "B and C stored A's reports", 20, || {
        stored(&b).as_array().is_some_and(|r| !r.is_empty())
            && stored(&c).as_array().is_some_and(|r| !r.is_empty())
    });
    let at_b = &stored(&b)[0];
    assert_eq!(at_b["kind"], "tls");
    assert_eq!(at_b["org_name"], "A Test");
    assert_eq!(
        (at_b["messages"].as_i64(), at_b["failed"].as_i64()),
        (Some(1), Some(0)),
        "{at_b}"
    );
    let at_c = &stored(&c)[0];
    assert_eq!(
        (at_c["messages"].as_i64(), at_c["failed"].as_i64()),
        (Some(1), Some(1)),
        "{at_c}"
    );
    let shown = c
        .server
        .run(&["--json", "reports", "show", &at_c["id"].to_string()])
        .ok()
        .json();
    assert!(
        shown["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["result"] == "starttls-not-supported" && r["receiving_mx"] == "mx.n.test"),
        "{shown}"
    );

    // Python reads the report mail C kept.
    let mail = &c.server.inbox("tls@n.test")[0];
    let parsed = python(PARSE_TLS, mail);
    assert_eq!(parsed["report_type"], "tlsrpt");
    assert_eq!(parsed["domain"], "n.test");
    assert_eq!(parsed["submitter"], "a.test");
    assert_eq!(parsed["auto_submitted"], "auto-generated");
    let report = &parsed["report"];
    assert_eq!(report["organization-name"], "A Test");
    assert_eq!(report["contact-info"], "postmaster@a.test");
    let policy = &report["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "no-policy-found");
    assert_eq!(policy["policy"]["policy-domain"], "n.test");
    assert_eq!(policy["summary"]["total-successful-session-count"], 0);
    assert_eq!(policy["summary"]["total-failure-session-count"], 1);
    let failure = &policy["failure-details"][0];
    assert_eq!(failure["result-type"], "starttls-not-supported");
    assert_eq!(failure["receiving-mx-hostname"], "mx.n.test");
    assert_eq!(failure["receiving-ip"], ip(4).to_string());

    // Delivering a TLS report is never counted in the next one (else each would call for another, for ever).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let again = a
        .server
        .run(&["--json", "reports", "send", "--now", "--dry-run"])
        .ok()
        .json();
    assert_eq!(again["reports"], serde_json::json!([]), "{again}");
}
