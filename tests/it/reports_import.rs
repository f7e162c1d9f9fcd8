//! `mailctl reports import|list|show`: DMARC aggregate and TLS reports in the shapes real reporters send them
//! (Google's zip in a message, Microsoft's capitalized verdicts in a gzip, the RFC 9990 namespace, a TLS report
//! as `application/tlsrpt+gzip`), taken from a Maildir, an mbox file, plain files and standard input, on SQLite
//! and MariaDB; each stored once; hostile input (gzip and zip bombs, DTDs and entities, malformed XML and JSON)
//! rejected one line each with nothing of it stored.

use std::io::Write;

use base64::Engine;
use kit::{Kind, TestDb};
use serde_json::Value;

fn db(kind: Kind) -> TestDb {
    let db = match kind {
        Kind::Sqlite => TestDb::sqlite(),
        Kind::Mariadb => TestDb::mariadb(),
    };
    db.run(&["domain", "add", "example.org"]).ok();
    db
}

/// A DMARC aggregate report the way Google writes it.
fn google(report_id: &str, domain: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>{report_id}</report_id>
    <date_range><begin>1764979200</begin><end>1765065599</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>reject</p><sp>reject</sp><pct>100</pct><np>reject</np>
  </policy_published>
  <record>
    <row><source_ip>192.0.2.25</source_ip><count>12</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results>
      <dkim><domain>{domain}</domain><result>pass</result><selector>mail</selector></dkim>
      <spf><domain>{domain}</domain><result>pass</result></spf>
    </auth_results>
  </record>
  <record>
    <row><source_ip>198.51.100.7</source_ip><count>3</count>
      <policy_evaluated><disposition>reject</disposition><dkim>fail</dkim><spf>fail</spf>
        <reason><type>local_policy</type><comment></comment></reason></policy_evaluated></row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><spf><domain>mailer.test</domain><result>softfail</result></spf></auth_results>
  </record>
</feedback>
"#
    )
}

/// Microsoft's: XML namespaces on the root, `Pass`/`Fail` capitalized, envelope_to, an IPv6 source.
const MICROSOFT: &str = r#"<?xml version="1.0"?>
<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1.0</version>
  <report_metadata>
    <org_name>Enterprise Outlook</org_name>
    <email>dmarcreport@microsoft.com</email>
    <report_id>a1b2c3d4e5f6478a</report_id>
    <date_range><begin>1764979200</begin><end>1765065600</end></date_range>
  </report_metadata>
  <policy_published><domain>example.org</domain><adkim>r</adkim><aspf>r</aspf><p>reject</p><sp>reject</sp>
    <pct>100</pct><fo>0</fo></policy_published>
  <record>
    <row><source_ip>2001:db8::25</source_ip><count>4</count>
      <policy_evaluated><disposition>none</disposition><dkim>Pass</dkim><spf>Fail</spf></policy_evaluated></row>
    <identifiers><envelope_to>outlook.com</envelope_to><envelope_from>example.org</envelope_from>
      <header_from>Example.ORG</header_from></identifiers>
    <auth_results><dkim><domain>example.org</domain><selector>mail</selector><result>Pass</result></dkim>
      <spf><domain>example.org</domain><scope>mfrom</scope><result>Fail</result></spf></auth_results>
  </record>
</feedback>
"#;

/// The RFC 9990 schema: a default namespace, `np`, `testing`, `discovery_method`, a `generator`.
const DMARCBIS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <version>1.0</version>
  <report_metadata>
    <org_name>mail.receiver.example</org_name>
    <email>dmarc-reports@receiver.example</email>
    <report_id>bis-0001</report_id>
    <date_range><begin>1764979200</begin><end>1765065600</end></date_range>
    <generator>Example DMARC Aggregate Reporter v1.2</generator>
  </report_metadata>
  <policy_published><domain>example.org</domain><p>quarantine</p><sp>none</sp><np>reject</np><testing>n</testing>
    <discovery_method>treewalk</discovery_method></policy_published>
  <record>
    <row><source_ip>192.0.2.25</source_ip><count>5</count>
      <policy_evaluated><disposition>pass</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>example.org</header_from><envelope_from>example.org</envelope_from></identifiers>
    <auth_results><dkim><domain>example.org</domain><selector>mail</selector><result>pass</result></dkim>
      <spf><domain>example.org</domain><result>pass</result></spf></auth_results>
  </record>
</feedback>
"#;

/// A TLS report as Google sends it.
const TLSRPT: &str = r#"{"organization-name":"Google Inc.","date-range":{"start-datetime":"2026-12-05T00:00:00Z",
"end-datetime":"2026-12-05T23:59:59Z"},"contact-info":"smtp-tls-reporting@google.com",
"report-id":"2026-12-05T00:00:00Z_example.org","policies":[{"policy":{"policy-type":"sts",
"policy-string":["version: STSv1","mode: enforce","mx: mx.example.org","max_age: 604800"],
"policy-domain":"example.org","mx-host":["mx.example.org"]},"summary":{"total-successful-session-count":120,
"total-failure-session-count":3},"failure-details":[{"result-type":"certificate-expired",
"sending-mta-ip":"209.85.220.41","receiving-mx-hostname":"mx.example.org","receiving-ip":"192.0.2.25",
"failed-session-count":3}]}]}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A report mail with one base64 attachment.
fn mail(subject: &str, content_type: &str, name: &str, data: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "From: noreply-dmarc-support@google.com\r\nTo: dmarc@example.org\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThis is an aggregate report.\r\n\
         --b1\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: attachment; \
         filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    )
}

fn import(db: &TestDb, args: &[&str]) -> (kit::Run, Vec<Value>) {
    let mut all = vec!["--json", "reports", "import"];
    all.extend_from_slice(args);
    let run = db.run(&all);
    let json = run.json().as_array().cloned().unwrap_or_default();
    (run, json)
}

fn statuses(results: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = results
        .iter()
        .map(|r| format!("{} {}", r["status"].as_str().unwrap(), r["report_id"]))
        .collect();
    s.sort();
    s
}

fn stored(db: &TestDb) -> Vec<Value> {
    db.run(&["--json", "reports", "list", "--since", "2000-01-01"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap()
}

fn every_shape_is_stored_once(kind: Kind) {
    let db = db(kind);
    // A Maildir: Google's zip in one message, Microsoft's gzip in another.
    let maildir = db.path("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let g = google("4235345345345", "example.org");
    let zipped = zip(&[(
        "google.com!example.org!1764979200!1765065599.xml",
        g.as_bytes(),
    )]);
    std::fs::write(
        maildir.join("new/1.eml"),
        mail(
            "Report domain: example.org",
            "application/zip",
            "google.zip",
            &zipped,
        ),
    )
    .unwrap();
    std::fs::write(
        maildir.join("cur/2.eml:2,S"),
        mail(
            "Report Domain: example.org Submitter: enterprise.protection.outlook.com",
            "application/gzip",
            "enterprise.protection.outlook.com!example.org!1764979200!1765065600.xml.gz",
            &gzip(MICROSOFT.as_bytes()),
        ),
    )
    .unwrap();
    // An mbox with the TLS report and a report about a domain not hosted here.
    let mbox = format!(
        "From noreply Mon Dec  7 10:00:00 2026\n{}\nFrom noreply Mon Dec  7 11:00:00 2026\n{}\n",
        mail(
            "Report Domain: example.org",
            "application/tlsrpt+gzip",
            "google.com!example.org!1764892800!1764979199!001.json.gz",
            &gzip(TLSRPT.as_bytes()),
        )
        .replace("\r\n", "\n"),
        mail(
            "Report domain: elsewhere.test",
            "application/zip",
            "x.zip",
            &zip(&[("x.xml", google("999", "elsewhere.test").as_bytes())]),
        )
        .replace("\r\n", "\n"),
    );
    std::fs::write(db.path("reports.mbox"), mbox).unwrap();
    std::fs::write(db.path("bis.xml"), DMARCBIS).unwrap();

    let maildir_arg = maildir.to_string_lossy().into_owned();
    let (mbox_arg, bis_arg) = (db.path("reports.mbox"), db.path("bis.xml"));
    let (mbox_arg, bis_arg) = (mbox_arg.to_string_lossy(), bis_arg.to_string_lossy());
    let (run, results) = import(&db, &[&maildir_arg, &mbox_arg, &bis_arg]);
    let run = run.ok();
    assert_eq!(
        statuses(&results),
        [
            "not_hosted \"999\"",
            "stored \"2026-12-05T00:00:00Z_example.org\"",
            "stored \"4235345345345\"",
            "stored \"a1b2c3d4e5f6478a\"",
            "stored \"bis-0001\"",
        ],
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("about elsewhere.test, which is not hosted here: ignored"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("4 stored, 0 already stored, 1 not about a hosted domain, 0 rejected"),
        "{}",
        run.stderr
    );
    let listed = stored(&db);
    assert_eq!(listed.len(), 4);

    // Again, and from standard input: nothing changes.
    let (again, results) = import(&db, &[&maildir_arg, &mbox_arg]);
    again.ok();
    assert!(
        results
            .iter()
            .all(|r| r["status"] == "already_stored" || r["status"] == "not_hosted"),
        "{results:?}"
    );
    let piped = db
        .run_stdin(&["--json", "reports", "import", "-"], DMARCBIS)
        .ok();
    assert_eq!(piped.json()[0]["status"], "already_stored");
    assert_eq!(stored(&db), listed);

    // What was stored is what the reporters said, their quirks read as the schema means them.
    let id = |report_id: &str| {
        listed
            .iter()
            .find(|r| r["report_id"] == report_id)
            .unwrap_or_else(|| panic!("{report_id} in {listed:?}"))["id"]
            .to_string()
    };
    let ms = db
        .run(&["--json", "reports", "show", &id("a1b2c3d4e5f6478a")])
        .ok()
        .json();
    assert_eq!(ms["report"]["org_name"], "Enterprise Outlook");
    assert_eq!(ms["report"]["policy"], "p=reject sp=reject adkim=r aspf=r");
    assert_eq!(
        (
            ms["report"]["messages"].as_i64(),
            ms["report"]["failed"].as_i64()
        ),
        (Some(4), Some(0))
    );
    let r = &ms["records"][0];
    assert_eq!(
        (
            &r["source_ip"],
            &r["dkim"],
            &r["spf"],
            &r["header_from"],
            &r["envelope_from"]
        ),
        (
            &Value::from("2001:db8::25"),
            &Value::from("pass"),
            &Value::from("fail"),
            &Value::from("example.org"),
            &Value::from("example.org")
        )
    );
    assert_eq!(r["dkim_auth"], "example.org/mail=pass");
    assert_eq!(r["spf_auth"], "example.org=fail");

    let g = db
        .run(&["--json", "reports", "show", &id("4235345345345")])
        .ok()
        .json();
    assert_eq!(g["report"]["messages"], 15);
    assert_eq!(g["report"]["failed"], 3);
    assert_eq!(g["report"]["begin"], "2025-12-06T00:00:00Z");
    let records = g["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["disposition"], "reject");
    assert_eq!(records[1]["reason"], "local_policy");
    assert_eq!(records[1]["spf_auth"], "mailer.test=softfail");

    let bis = db
        .run(&["--json", "reports", "show", &id("bis-0001")])
        .ok()
        .json();
    assert_eq!(bis["report"]["policy"], "p=quarantine sp=none np=reject");

    let tls = db
        .run(&[
            "--json",
            "reports",
            "show",
            &id("2026-12-05T00:00:00Z_example.org"),
        ])
        .ok()
        .json();
    assert_eq!(tls["report"]["kind"], "tls");
    assert_eq!(tls["report"]["org_name"], "Google Inc.");
    assert_eq!(
        (
            tls["report"]["messages"].as_i64(),
            tls["report"]["failed"].as_i64()
        ),
        (Some(123), Some(3))
    );
    let results = tls["results"].as_array().unwrap();
    let failure = results
        .iter()
        .find(|r| r["result"] == "certificate-expired")
        .unwrap_or_else(|| panic!("{results:?}"));
    assert_eq!(failure["count"], 3);
    assert_eq!(failure["sending_ip"], "209.85.220.41");
    assert_eq!(failure["receiving_mx"], "mx.example.org");
    assert!(
        results
            .iter()
            .any(|r| r["result"] == "success" && r["count"] == 120)
    );

    // The table names them too; the list filters by domain and period.
    let table = db
        .run(&["reports", "show", &id("4235345345345")])
        .ok()
        .stdout;
    assert!(
        table.contains("198.51.100.7") && table.contains("local_policy"),
        "{table}"
    );
    let none = db
        .run(&[
            "--json",
            "reports",
            "list",
            "--domain",
            "other.test",
            "--since",
            "2000-01-01",
        ])
        .ok();
    assert_eq!(none.json(), serde_json::json!([]));
    db.run(&["reports", "list", "--since", "7w"])
        .fails(2, "--since \"7w\"");
    db.run(&["reports", "show", "999"])
        .fails(1, "report 999 does not exist");

    // Deleting the domain takes its reports with it, those about its subdomains too.
    std::fs::write(db.path("sub.xml"), google("sub-1", "news.example.org")).unwrap();
    let (sub, results) = import(&db, &[&db.path("sub.xml").to_string_lossy()]);
    sub.ok();
    assert_eq!(results[0]["status"], "stored");
    db.run(&["domain", "delete", "example.org", "--force"]).ok();
    assert!(stored(&db).is_empty());
}

#[test]
fn reports_in_every_shape_are_stored_once_on_sqlite() {
    every_shape_is_stored_once(Kind::Sqlite);
}

#[test]
fn reports_in_every_shape_are_stored_once_on_mariadb() {
    every_shape_is_stored_once(Kind::Mariadb);
}

#[test]
fn hostile_and_broken_reports_are_rejected_one_line_each_and_nothing_of_them_is_stored() {
    let db = db(Kind::Sqlite);
    let files: Vec<(&str, Vec<u8>)> = vec![
        // 64 MiB of zeros in a 64 KiB gzip: far past any report's ratio.
        ("bomb.xml.gz", gzip(&vec![0u8; 64 << 20])),
        // The same in a zip, next to a good report that is kept.
        (
            "mixed.zip",
            zip(&[
                ("zeros.xml", &vec![b' '; 64 << 20]),
                ("good.xml", google("kept-1", "example.org").as_bytes()),
            ]),
        ),
        (
            "entities.xml",
            br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">
<!ENTITY xxe SYSTEM "file:///etc/passwd">]><feedback><report_metadata><org_name>&xxe;</org_name>
<report_id>&lol2;</report_id></report_metadata></feedback>"#
                .to_vec(),
        ),
        (
            "truncated.xml",
            google("cut-1", "example.org").as_bytes()[..600].to_vec(),
        ),
        ("broken.json", b"{\"organization-name\": \"x\", \"policies\": [".to_vec()),
        ("picture.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
        (
            "no-id.xml",
            google("", "example.org").into_bytes(),
        ),
    ];
    let mut args = Vec::new();
    for (name, data) in &files {
        std::fs::write(db.path(name), data).unwrap();
        args.push(db.path(name).to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (run, results) = import(&db, &args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rejected: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("rejected: "))
        .collect();
    assert_eq!(rejected.len(), 7, "{}", run.stderr);
    for (needle, file) in [
        ("decompression bomb", "bomb.xml.gz"),
        ("decompression bomb", "zeros.xml"),
        ("DTD", "entities.xml"),
        ("not a DMARC aggregate report", "truncated.xml"),
        ("not a TLS report", "broken.json"),
        ("not a report", "picture.png"),
        ("without report_id", "no-id.xml"),
    ] {
        assert!(
            rejected
                .iter()
                .any(|l| l.contains(file) && l.contains(needle)),
            "{file}: {needle}: {}",
            run.stderr
        );
    }
    assert!(
        run.stderr.lines().last().unwrap().starts_with(
            "error: 1 stored, 0 already stored, 0 not about a hosted domain, 7 rejected"
        ),
        "{}",
        run.stderr
    );
    assert!(
        results
            .iter()
            .any(|r| r["status"] == "stored" && r["report_id"] == "kept-1")
    );
    let kept: Vec<Value> = stored(&db);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["report_id"], "kept-1");

    db.run(&["reports", "import", "/nonexistent/reports"])
        .fails(1, "/nonexistent/reports");
}
