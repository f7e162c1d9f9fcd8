//! `mailctl dns records`: every record a mail domain needs, in a zone fragment a real DNS server loads and
//! answers from (queried here through mailctl's own resolver type).

use kit::TestDb;
use kit::dns::TestDns;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn setup(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    db.run(&["dkim", "generate", "example.org", "--selector", "s1"])
        .ok();
}

fn records_cover_mx_spf_dkim_dmarc_mta_sts_tls_rpt_and_ptr(db: &TestDb) {
    setup(db);
    let out = db
        .run(&[
            "--json",
            "dns",
            "records",
            "example.org",
            "--ip",
            "192.0.2.25",
            "--ip",
            "2001:db8::25",
        ])
        .ok()
        .json();
    let records = out["records"].as_array().unwrap();
    let find = |name: &str, rtype: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["name"] == name && r["type"] == rtype)
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(find("example.org.", "MX"), ["10 mail.example.org."]);
    assert_eq!(find("mail.example.org.", "A"), ["192.0.2.25"]);
    assert_eq!(find("mail.example.org.", "AAAA"), ["2001:db8::25"]);
    assert_eq!(
        find("example.org.", "TXT"),
        ["v=spf1 mx ip4:192.0.2.25 ip6:2001:db8::25 -all"]
    );
    assert!(find("s1._domainkey.example.org.", "TXT")[0].starts_with("v=DKIM1; k=rsa; p=MIIB"));
    assert_eq!(
        find("_dmarc.example.org.", "TXT"),
        ["v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"]
    );
    assert!(find("_mta-sts.example.org.", "TXT")[0].starts_with("v=STSv1; id="));
    assert_eq!(
        find("_smtp._tls.example.org.", "TXT"),
        ["v=TLSRPTv1; rua=mailto:postmaster@example.org"]
    );
    // Mail client setup: autoconfig over HTTPS (`[server.https]`) and the SRV records of RFC 6186/8314.
    assert_eq!(find("autoconfig.example.org.", "A"), ["192.0.2.25"]);
    assert_eq!(find("autoconfig.example.org.", "AAAA"), ["2001:db8::25"]);
    assert_eq!(
        find("_submissions._tcp.example.org.", "SRV"),
        ["0 1 465 mail.example.org."]
    );
    assert_eq!(
        find("_submission._tcp.example.org.", "SRV"),
        ["1 1 587 mail.example.org."]
    );
    assert_eq!(
        find("_imaps._tcp.example.org.", "SRV"),
        ["0 1 993 mail.example.org."]
    );
    let ptr: Vec<_> = records.iter().filter(|r| r["type"] == "PTR").collect();
    assert_eq!(ptr.len(), 2);
    assert_eq!(ptr[0]["name"], "25.2.0.192.in-addr.arpa.");
    assert!(
        ptr[1]["name"]
            .as_str()
            .unwrap()
            .ends_with(".8.b.d.0.1.0.0.2.ip6.arpa.")
    );
    assert_eq!(ptr[0]["in_zone"], false);
    assert!(
        ptr[0]["note"]
            .as_str()
            .unwrap()
            .contains("hosting provider")
    );
    let policy = out["mta_sts_policy"].as_str().unwrap();
    assert!(
        policy.contains("mode: testing") && policy.contains("mx: mail.example.org"),
        "{policy}"
    );
    let table = db
        .run(&["dns", "records", "example.org", "--format", "table"])
        .ok()
        .stdout;
    assert!(
        table.contains("_dmarc.example.org.") && table.contains("PTR"),
        "{table}"
    );
    // In a pipe every value is whole and no line ends in padding.
    let dkim = table.lines().find(|l| l.contains("s1._domainkey")).unwrap();
    assert!(dkim.contains("v=DKIM1") && !dkim.contains('…'), "{dkim}");
    assert!(table.lines().all(|l| l == l.trim_end()), "{table:?}");
    // At 80 columns: cut to fit, with a note saying how to get the whole values.
    let mut cmd = db.command(&["dns", "records", "example.org", "--format", "table"]);
    cmd.env("COLUMNS", "80");
    let narrow = kit::run_command(cmd, "").ok().stdout;
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    assert!(
        narrow.contains("note: long values are shortened to fit; --format zone prints them whole"),
        "{narrow}"
    );
}

fn the_zone_loads_into_a_dns_server_and_answers(db: &TestDb) {
    setup(db);
    let zone = db
        .run(&[
            "dns",
            "records",
            "example.org",
            "--ip",
            "192.0.2.25",
            "--dmarc-policy",
            "reject",
        ])
        .ok()
        .stdout;
    assert!(
        zone.contains("; 25.2.0.192.in-addr.arpa."),
        "PTR is a comment in the zone: {zone}"
    );
    let dns = TestDns::start(&[("example.org.", &zone)]);
    let resolver = mailctl::dns::Resolver::new(Some(&dns.nameserver())).unwrap();
    block_on(async {
        let spf = resolver.txt("example.org").await.unwrap();
        assert_eq!(spf, ["v=spf1 mx ip4:192.0.2.25 -all"]);
        let dmarc = resolver.txt("_dmarc.example.org").await.unwrap();
        assert_eq!(
            dmarc,
            ["v=DMARC1; p=reject; rua=mailto:postmaster@example.org"]
        );
        assert_eq!(
            resolver.txt("_smtp._tls.example.org").await.unwrap().len(),
            1
        );
        assert!(
            resolver
                .txt("nothing.example.org")
                .await
                .unwrap()
                .is_empty(),
            "NXDOMAIN is no records"
        );
        let mx = resolver
            .authenticator()
            .resolver()
            .mx_lookup("example.org.")
            .await
            .unwrap();
        assert_eq!(mx.answers().len(), 1);
        let a = resolver
            .authenticator()
            .resolver()
            .ipv4_lookup("mta-sts.example.org.")
            .await
            .unwrap();
        assert_eq!(a.answers().len(), 1);
    });
}

fn server_identity_comes_from_the_config_file(db: &TestDb) {
    setup(db);
    std::fs::write(
        db.path("mailctl.toml"),
        "[server]\nhostname = \"mx1.example.org\"\npublic_ips = [\"198.51.100.7\"]\n\
         [server.listen]\nsubmissions = \"off\"\n\
         [server.https]\nimap_host = \"imap.example.org\"\nimap_port = 10993\nmta_sts_mode = \"enforce\"\n",
    )
    .unwrap();
    let out = db
        .run(&["--json", "dns", "records", "example.org"])
        .ok()
        .json();
    let values: Vec<String> = out["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["name"].as_str().unwrap(),
                r["type"].as_str().unwrap(),
                r["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        values.contains(&"example.org. MX 10 mx1.example.org.".to_string()),
        "{values:?}"
    );
    assert!(
        values.contains(&"mx1.example.org. A 198.51.100.7".to_string()),
        "{values:?}"
    );
    // The client SRV records follow [server.https] and [server.listen]; the MTA-STS mode what serve serves.
    assert!(
        values.contains(&"_imaps._tcp.example.org. SRV 0 1 10993 imap.example.org.".to_string()),
        "{values:?}"
    );
    assert!(
        !values.iter().any(|v| v.starts_with("_submissions._tcp.")),
        "no submissions listener, no record: {values:?}"
    );
    assert!(
        out["mta_sts_policy"]
            .as_str()
            .unwrap()
            .contains("mode: enforce"),
        "{out}"
    );
    // A flag beats the file.
    let out = db
        .run(&[
            "--json",
            "dns",
            "records",
            "example.org",
            "--mx-host",
            "smtp.example.org",
        ])
        .ok()
        .json();
    assert_eq!(out["records"][0]["value"], "10 smtp.example.org.");
}

fn an_mx_outside_the_domain_and_missing_ips_are_explained(db: &TestDb) {
    setup(db);
    let zone = db
        .run(&[
            "dns",
            "records",
            "example.org",
            "--mx-host",
            "mx.provider.example",
            "--ip",
            "192.0.2.9",
        ])
        .ok()
        .stdout;
    assert!(
        zone.contains("; mx.provider.example.\t3600\tIN\tA\t192.0.2.9"),
        "{zone}"
    );
    assert!(
        zone.contains("NOTE: the MX host mx.provider.example is outside example.org"),
        "{zone}"
    );
    TestDns::start(&[("example.org.", &zone)]);
    let out = db
        .run(&["--json", "dns", "records", "example.org"])
        .ok()
        .json();
    assert!(
        out["notes"][0].as_str().unwrap().contains("no IPs known"),
        "{out}"
    );
    assert_eq!(
        out["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "A")
            .count(),
        0
    );
}

fn bad_dns_records_input_is_refused(db: &TestDb) {
    setup(db);
    db.run(&["dns", "records", "nowhere.example"])
        .fails(1, "domain nowhere.example does not exist");
    db.run(&["dns", "records", "example.org", "--mx-host", "bad_host"])
        .fails(2, "MX host");
    db.run(&[
        "dns",
        "records",
        "example.org",
        "--report-address",
        "nobody",
    ])
    .fails(2, "invalid address");
    let run = db.run(&["dns", "records", "example.org", "--ip", "300.1.1.1"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("error: invalid value '300.1.1.1'"),
        "{}",
        run.stderr
    );
}

fn helo_spf_report_uris_and_address_warnings(db: &TestDb) {
    setup(db);
    db.run(&["domain", "add", "sleepy.example", "--inactive"])
        .ok();
    let out = db
        .run(&[
            "--json",
            "dns",
            "records",
            "example.org",
            "--ip",
            "10.0.0.5",
            "--report-address",
            "dmarc?x@reports.example",
        ])
        .ok()
        .json();
    let records = out["records"].as_array().unwrap();
    let helo = records
        .iter()
        .find(|r| r["name"] == "mail.example.org." && r["type"] == "TXT")
        .unwrap();
    assert_eq!(helo["value"], "v=spf1 ip4:10.0.0.5 -all");
    let dmarc = records
        .iter()
        .find(|r| r["name"] == "_dmarc.example.org.")
        .unwrap();
    assert_eq!(
        dmarc["value"],
        "v=DMARC1; p=quarantine; rua=mailto:dmarc%3Fx@reports.example"
    );
    let notes = out["notes"].to_string();
    assert!(
        notes.contains("10.0.0.5 is not a public address"),
        "{notes}"
    );
    assert!(
        notes.contains("example.org._report._dmarc.reports.example."),
        "{notes}"
    );
    db.run(&["dns", "records", "sleepy.example"])
        .fails(1, "domain sleepy.example is inactive");
}

/// The apex SPF value and the notes of `dns records example.org --json`.
fn spf_and_notes(db: &TestDb) -> (String, String) {
    let out = db
        .run(&[
            "--json",
            "dns",
            "records",
            "example.org",
            "--ip",
            "192.0.2.25",
        ])
        .ok()
        .json();
    let spf = out["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "example.org." && r["type"] == "TXT")
        .map(|r| r["value"].as_str().unwrap().to_string())
        .expect("an SPF record");
    (spf, out["notes"].to_string())
}

fn a_relay_host_adds_its_spf_include_and_says_what_the_ptr_no_longer_does(db: &TestDb) {
    setup(db);
    let (spf, notes) = spf_and_notes(db);
    assert_eq!(spf, "v=spf1 mx ip4:192.0.2.25 -all");
    assert!(!notes.contains("relay"), "{notes}");

    // The configured relay, with its provider's SPF domain.
    std::fs::write(
        db.path("mailctl.toml"),
        "[server.outbound.relay]\nurl = \"smtp://smtp.provider.example\"\n\
         spf_include = \"_spf.provider.example\"\n",
    )
    .unwrap();
    let (spf, notes) = spf_and_notes(db);
    assert_eq!(
        spf,
        "v=spf1 mx ip4:192.0.2.25 include:_spf.provider.example -all"
    );
    assert!(
        notes.contains(
            "leaves through the relay host smtp://smtp.provider.example:587: receivers check the relay's IP"
        ),
        "{notes}"
    );
    let zone = db
        .run(&["dns", "records", "example.org", "--ip", "192.0.2.25"])
        .ok()
        .stdout;
    assert!(
        zone.contains("so this PTR only matters for mail this server sends itself"),
        "{zone}"
    );

    // A route in the database wins; without an include, the notes say what is missing.
    db.run(&["relay", "set", "example.org", "smtps://relay.other.example"])
        .ok();
    let (spf, notes) = spf_and_notes(db);
    assert_eq!(spf, "v=spf1 mx ip4:192.0.2.25 -all");
    assert!(notes.contains("smtps://relay.other.example:465"), "{notes}");
    assert!(notes.contains("no SPF include for the relay"), "{notes}");
    db.run(&[
        "relay",
        "set",
        "example.org",
        "smtps://relay.other.example",
        "--spf-include",
        "spf.other.example",
    ])
    .ok();
    let (spf, _) = spf_and_notes(db);
    assert_eq!(
        spf,
        "v=spf1 mx ip4:192.0.2.25 include:spf.other.example -all"
    );

    // A broken relay section is named.
    std::fs::write(
        db.path("mailctl.toml"),
        "[server.outbound.relay]\nurl = \"gopher://x\"\n",
    )
    .unwrap();
    db.run(&["relay", "delete", "example.org"]).ok();
    db.run(&["dns", "records", "example.org"])
        .fails(2, "server.outbound.relay.url: unknown scheme");

    // A deleted domain takes its route with it.
    std::fs::write(db.path("mailctl.toml"), "").unwrap();
    db.run(&["relay", "set", "example.org", "smtps://relay.other.example"])
        .ok();
    db.run(&["domain", "delete", "example.org"]).ok();
    assert_eq!(
        db.run(&["relay", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );
}

kit::on_both_backends!(
    a_relay_host_adds_its_spf_include_and_says_what_the_ptr_no_longer_does,
    records_cover_mx_spf_dkim_dmarc_mta_sts_tls_rpt_and_ptr,
    the_zone_loads_into_a_dns_server_and_answers,
    server_identity_comes_from_the_config_file,
    an_mx_outside_the_domain_and_missing_ips_are_explained,
    bad_dns_records_input_is_refused,
    helo_spf_report_uris_and_address_warnings,
);
