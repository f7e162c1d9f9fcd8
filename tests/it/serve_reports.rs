//! Reports arriving by mail at `mailctl serve`: DMARC aggregate and TLS reports written by mail-auth's report
//! writer (an independent implementation, the one Stalwart sends with) are mailed to the report addresses and
//! show up in `mailctl reports`; the message is still in the mailbox unless `keep = false`; ordinary mail to
//! postmaster is just delivered; a report that was stored before stays one report.

use std::net::IpAddr;

use kit::TestDb;
use kit::serve::mail::{add_mailbox, cli, example, message};
use kit::serve::{ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;
use mail_auth::report::tlsrpt::{
    DateRange, FailureDetails, Policy, PolicyDetails, PolicyType, ResultType, Summary, TlsReport,
};
use mail_auth::report::{ActionDisposition, Disposition, DmarcResult, Record, Report};

const REPORTER: &str = "noreply-dmarc-support@google.test";

/// A DMARC aggregate report about example.test as mail-auth writes it (gzipped XML attached).
fn dmarc_mail(report_id: &str, to: &str) -> String {
    dmarc_mail_about("example.test", report_id, to)
}

/// The same about `domain`.
fn dmarc_mail_about(domain: &str, report_id: &str, to: &str) -> String {
    let ip: IpAddr = "192.0.2.25".parse().unwrap();
    let report = Report::new()
        .with_org_name("google.test")
        .with_email(REPORTER)
        .with_report_id(report_id)
        .with_date_range_begin(1_764_979_200)
        .with_date_range_end(1_765_065_599)
        .with_domain(domain)
        .with_p(Disposition::Reject)
        .with_sp(Disposition::Reject)
        .with_record(
            Record::new()
                .with_source_ip(ip)
                .with_count(9)
                .with_action_disposition(ActionDisposition::None)
                .with_dmarc_dkim_result(DmarcResult::Pass)
                .with_dmarc_spf_result(DmarcResult::Fail)
                .with_header_from("example.test"),
        )
        .with_record(
            Record::new()
                .with_source_ip("198.51.100.7".parse().unwrap())
                .with_count(2)
                .with_action_disposition(ActionDisposition::Reject)
                .with_dmarc_dkim_result(DmarcResult::Fail)
                .with_dmarc_spf_result(DmarcResult::Fail)
                .with_header_from("example.test"),
        );
    report
        .to_rfc5322("google.test", ("Google", REPORTER), [to].into_iter())
        .expect("mail-auth writes the report mail")
}

/// A TLS report about example.test as mail-auth writes it (`application/tlsrpt+gzip`).
fn tls_mail(to: &str) -> String {
    let report = TlsReport {
        organization_name: Some("Google Inc.".into()),
        date_range: DateRange::from_timestamps(1_764_892_800, 1_764_979_199),
        contact_info: Some("smtp-tls-reporting@google.test".into()),
        report_id: "tls-1".into(),
        policies: vec![Policy {
            policy: PolicyDetails {
                policy_type: PolicyType::Sts,
                policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
                policy_domain: "example.test".into(),
                mx_host: vec!["mx.example.test".into()],
            },
            summary: Summary {
                total_success: 40,
                total_failure: 2,
            },
            failure_details: vec![FailureDetails {
                failed_session_count: 2,
                ..FailureDetails::new(ResultType::StartTlsNotSupported)
                    .with_receiving_mx_hostname("mx.example.test")
            }],
        }],
    };
    report
        .to_rfc5322(
            "example.test",
            "google.test",
            ("Google", "smtp-tls-reporting@google.test"),
            [to].into_iter(),
        )
        .expect("mail-auth writes the TLS report mail")
}

fn send(server: &TestServer, to: &[&str], mail: &[u8]) {
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.google.test");
    c.send_mail(REPORTER, to, mail)
        .expect(250, "2.0.0 Ok: queued as ");
    c.command("QUIT").expect(221, "2.0.0");
}

fn reports(db: &TestDb) -> Vec<serde_json::Value> {
    db.run(&["--json", "reports", "list", "--since", "2000-01-01"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn reports_mailed_to_postmaster_are_stored_and_still_delivered() {
    let db = TestDb::sqlite();
    example(&db);
    cli(&db, "alias add postmaster@example.test alice@example.test");
    let options = ServeOptions::default().server_key("metrics", "\"127.0.0.1:0\"");
    let server = TestServer::start(&db, options);

    send(
        &server,
        &["postmaster@example.test"],
        dmarc_mail("g-1", "postmaster@example.test").as_bytes(),
    );
    send(
        &server,
        &["postmaster@example.test"],
        tls_mail("postmaster@example.test").as_bytes(),
    );
    // The same report again (a reporter retrying), and ordinary mail to postmaster.
    send(
        &server,
        &["postmaster@example.test"],
        dmarc_mail("g-1", "postmaster@example.test").as_bytes(),
    );
    send(
        &server,
        &["postmaster@example.test"],
        &message(
            "someone@far.test",
            "postmaster@example.test",
            "hello",
            "hello@far.test",
        ),
    );

    let stored = reports(&db);
    assert_eq!(stored.len(), 2, "{stored:?}");
    let dmarc = stored.iter().find(|r| r["kind"] == "dmarc").unwrap();
    assert_eq!(dmarc["report_id"], "g-1");
    assert_eq!(dmarc["domain"], "example.test");
    assert_eq!(
        (dmarc["messages"].as_i64(), dmarc["failed"].as_i64()),
        (Some(11), Some(2))
    );
    assert!(
        dmarc["source"].as_str().unwrap().starts_with("mail "),
        "{dmarc}"
    );
    let shown = db
        .run(&["--json", "reports", "show", &dmarc["id"].to_string()])
        .ok()
        .json();
    let records = shown["records"].as_array().unwrap();
    assert_eq!(records[0]["source_ip"], "192.0.2.25");
    assert_eq!(records[0]["dkim"], "pass");
    assert_eq!(records[1]["disposition"], "reject");

    let tls = stored.iter().find(|r| r["kind"] == "tls").unwrap();
    assert_eq!(
        (tls["messages"].as_i64(), tls["failed"].as_i64()),
        (Some(42), Some(2))
    );
    let shown = db
        .run(&["--json", "reports", "show", &tls["id"].to_string()])
        .ok()
        .json();
    assert!(
        shown["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["result"] == "starttls-not-supported" && r["count"] == 2),
        "{shown}"
    );

    // And `reports summary` reads them (PTR names from a loopback DNS server that knows none).
    let dns = kit::dns::TestDns::start(&[("2.0.192.in-addr.arpa.", "")]);
    let ns = dns.nameserver();
    let summary = db.run(&[
        "--json",
        "reports",
        "summary",
        "example.test",
        "--since",
        "2000-01-01",
        "--nameserver",
        &ns,
    ]);
    let d = &summary.json()["domains"][0];
    assert_eq!(
        (d["messages"].as_i64(), d["dmarc_pass"].as_i64()),
        (Some(11), Some(9))
    );
    assert_eq!(
        (d["tls_sessions"].as_i64(), d["tls_failed"].as_i64()),
        (Some(42), Some(2))
    );
    assert_eq!(
        d["tls_failures"],
        serde_json::json!([["starttls-not-supported", 2]])
    );

    // Everything was delivered too: three reports and the greeting.
    assert_eq!(server.inbox("alice@example.test").len(), 4);
    let body = kit::http::get(server.addr("metrics"), "/metrics").body;
    for (labels, value) in [
        (r#"kind="dmarc",result="stored""#, 1.0),
        (r#"kind="dmarc",result="duplicate""#, 1.0),
        (r#"kind="tls",result="stored""#, 1.0),
        (r#"kind="dmarc",result="rejected""#, 0.0),
    ] {
        let name = format!("mailctl_reports_received_total{{{labels}}}");
        assert_eq!(
            kit::http::sample(&body, &name),
            Some(value),
            "{name} in:\n{body}"
        );
    }
    let log = server.log();
    assert!(log.contains("report stored"), "{log}");
    assert!(log.contains("report stored before: unchanged"), "{log}");
}

#[test]
fn with_keep_false_a_report_address_only_stores_and_a_broken_report_is_still_delivered() {
    let db = TestDb::sqlite();
    example(&db);
    add_mailbox(&db, "dmarc@example.test", &[]);
    let options = ServeOptions::default()
        .server_key("reports.addresses", r#"["DMARC@example.test"]"#)
        .server_key("reports.keep", "false");
    let server = TestServer::start(&db, options);

    send(
        &server,
        &["dmarc@example.test"],
        dmarc_mail("k-1", "dmarc@example.test").as_bytes(),
    );
    assert_eq!(reports(&db).len(), 1);
    assert!(
        server.inbox("dmarc@example.test").is_empty(),
        "stored, not delivered"
    );

    // A report mail whose attachment is broken is delivered, so nothing is lost.
    let broken = dmarc_mail("k-2", "dmarc@example.test").replace("H4sI", "AAAA");
    send(&server, &["dmarc@example.test"], broken.as_bytes());
    assert_eq!(reports(&db).len(), 1);
    assert_eq!(server.inbox("dmarc@example.test").len(), 1);

    // A report about a domain not hosted here is not stored, so the mailbox keeps it.
    let foreign = dmarc_mail_about("elsewhere.test", "k-4", "dmarc@example.test");
    send(&server, &["dmarc@example.test"], foreign.as_bytes());
    assert_eq!(reports(&db).len(), 1);
    assert_eq!(server.inbox("dmarc@example.test").len(), 2);

    // postmaster is no report address when addresses are configured.
    cli(&db, "alias add postmaster@example.test bob@example.test");
    send(
        &server,
        &["postmaster@example.test"],
        dmarc_mail("k-3", "postmaster@example.test").as_bytes(),
    );
    assert_eq!(reports(&db).len(), 1);
    assert_eq!(server.inbox("bob@example.test").len(), 1);
}

#[test]
fn bad_report_settings_stop_serve_with_exit_2_naming_the_key() {
    let db = TestDb::sqlite();
    for (key, value, expected) in [
        (
            "reports.addresses",
            r#"["not an address"]"#,
            "server.reports.addresses",
        ),
        (
            "reports.keep",
            "\"no\"",
            "server.reports.keep: invalid type",
        ),
        ("reports.store", "true", "unknown field `store`"),
    ] {
        let options = ServeOptions::default().server_key(key, value);
        let server = TestServer::configure(&db, options);
        server.run(&["serve", "--check-config"]).fails(2, expected);
    }
}
