//! DKIM end to end: keys in the store, records served by a real authoritative DNS server on loopback, signing
//! with the binary and verifying through DNS, rotation, import and export, and bad input.

use kit::dns::TestDns;
use kit::{Run, TestDb};

const MESSAGE: &str = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: DKIM test\r\n\
Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <t1@example.org>\r\n\r\nHello Bob,\r\nthis is signed.\r\n";

fn setup(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
}

/// Starts a DNS server serving what `mailctl dns records` says example.org must publish.
fn serve_records(db: &TestDb) -> TestDns {
    let zone = db
        .run(&["dns", "records", "example.org", "--ip", "192.0.2.25"])
        .ok()
        .stdout;
    TestDns::start(&[("example.org.", &zone)])
}

fn sign(db: &TestDb, extra: &[&str]) -> String {
    let mut args = vec!["dkim", "sign", "--domain", "example.org"];
    args.extend_from_slice(extra);
    db.run_stdin(&args, MESSAGE).ok().stdout
}

fn verify(db: &TestDb, dns: &TestDns, message: &str) -> Run {
    db.run_stdin(
        &[
            "--json",
            "dkim",
            "verify",
            "--nameserver",
            &dns.nameserver(),
        ],
        message,
    )
}

fn rsa_and_ed25519_signatures_verify_through_dns(db: &TestDb) {
    setup(db);
    let generated = db
        .run(&["--json", "dkim", "generate", "example.org"])
        .ok()
        .json();
    assert_eq!(generated["state"], "active");
    assert_eq!(generated["bits"], 2048);
    assert_eq!(generated["algorithm"], "rsa-sha256");
    db.run(&[
        "dkim",
        "generate",
        "example.org",
        "--algorithm",
        "ed25519",
        "--selector",
        "ed1",
    ])
    .ok();
    let dns = serve_records(db);

    let signed = sign(db, &[]);
    assert!(
        signed.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{signed}"
    );
    let out = verify(db, &dns, &signed).ok().json();
    assert_eq!(out["pass"], true);
    assert_eq!(out["signatures"][0]["result"], "pass");
    assert_eq!(out["signatures"][0]["domain"], "example.org");

    let signed_ed = sign(db, &["--selector", "ed1"]);
    assert!(
        signed_ed.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; s=ed1;"),
        "{signed_ed}"
    );
    verify(db, &dns, &signed_ed).ok();

    // Both signatures on one message: both must pass.
    let double = db
        .run_stdin(
            &[
                "dkim",
                "sign",
                "--domain",
                "example.org",
                "--selector",
                "ed1",
            ],
            &signed,
        )
        .ok()
        .stdout;
    let out = verify(db, &dns, &double).ok().json();
    assert_eq!(out["signatures"].as_array().unwrap().len(), 2);
}

fn altering_one_body_byte_fails(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org"]).ok();
    db.run(&[
        "dkim",
        "generate",
        "example.org",
        "--algorithm",
        "ed25519",
        "--selector",
        "ed1",
    ])
    .ok();
    let dns = serve_records(db);
    for extra in [&[][..], &["--selector", "ed1"]] {
        let signed = sign(db, extra);
        let tampered = signed.replace("Hello Bob", "Hello Bot");
        let run = verify(db, &dns, &tampered);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let out = run.json();
        assert_eq!(out["pass"], false);
        assert_eq!(out["signatures"][0]["result"], "fail");
        assert!(
            out["signatures"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("body hash mismatch"),
            "{out}"
        );
        assert!(
            run.stderr.starts_with("error: DKIM verification failed"),
            "{}",
            run.stderr
        );
    }
}

fn a_different_published_key_fails_with_a_key_mismatch(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org", "--selector", "s1"])
        .ok();
    let signed = sign(db, &[]);
    // Another database holds another key under the same name: publish that one instead.
    let other = TestDb::sqlite();
    setup(&other);
    other
        .run(&["dkim", "generate", "example.org", "--selector", "s1"])
        .ok();
    let zone = other.run(&["dns", "records", "example.org"]).ok().stdout;
    let dns = TestDns::start(&[("example.org.", &zone)]);
    let run = verify(db, &dns, &signed);
    assert_eq!(run.code, 1);
    let reason = run.json()["signatures"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("key mismatch"), "{reason}");
    // And mailctl itself notices the published key is not ours.
    let listed = db
        .run(&[
            "--json",
            "dkim",
            "list",
            "--check-dns",
            "--nameserver",
            &dns.nameserver(),
        ])
        .ok()
        .json();
    assert_eq!(listed[0]["dns"]["status"], "mismatch");
}

fn rotation_waits_for_dns_and_keeps_exactly_one_active_key(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org", "--selector", "old"])
        .ok();
    let before = serve_records(db);
    let rotated = db
        .run(&[
            "--json",
            "dkim",
            "rotate",
            "example.org",
            "--selector",
            "new",
        ])
        .ok()
        .json();
    assert_eq!(rotated["state"], "pending");
    let snapshot = db.snapshot();
    let keys =
        |db: &TestDb| db.query("SELECT selector, state FROM mailctl_dkim_keys ORDER BY selector");

    let refused = db
        .run(&[
            "dkim",
            "activate",
            "example.org",
            "new",
            "--nameserver",
            &before.nameserver(),
        ])
        .fails(1, "DNS does not serve new._domainkey.example.org.");
    assert!(refused.stdout.is_empty());
    assert_eq!(snapshot, db.snapshot());
    assert_eq!(
        keys(db)[1],
        [Some("old".to_string()), Some("active".to_string())]
    );

    let after = serve_records(db);
    let listed = db
        .run(&[
            "--json",
            "dkim",
            "list",
            "example.org",
            "--check-dns",
            "--nameserver",
            &after.nameserver(),
        ])
        .ok()
        .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["dns"]["status"] == "matches"),
        "{listed}"
    );
    db.run(&[
        "dkim",
        "activate",
        "example.org",
        "new",
        "--nameserver",
        &after.nameserver(),
    ])
    .ok();
    assert_eq!(
        keys(db),
        [["new", "active"], ["old", "retiring"]].map(|r| r.map(|s| Some(s.to_string())).to_vec())
    );
    let signed = sign(db, &[]);
    assert!(
        signed.contains("s=new;"),
        "new mail is signed with the new key"
    );
    verify(db, &after, &signed).ok();
    let zone = db.run(&["dns", "records", "example.org"]).ok().stdout;
    assert!(
        zone.contains("old._domainkey.example.org."),
        "a retiring key stays published"
    );

    db.run(&["dkim", "activate", "example.org", "new", "--force"])
        .fails(1, "already active");
    db.run(&["dkim", "retire", "example.org", "new"])
        .fails(1, "is the active signing key");
    db.run(&["dkim", "retire", "example.org", "old"]).ok();
    let zone = db.run(&["dns", "records", "example.org"]).ok().stdout;
    assert!(
        !zone.contains("old._domainkey"),
        "retired keys leave the output"
    );
    let listed = db.run(&["--json", "dkim", "list"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let actives = db.query("SELECT COUNT(*) FROM mailctl_dkim_keys WHERE state = 'active'");
    assert_eq!(actives[0][0].as_deref(), Some("1"));
}

fn a_4096_bit_record_is_split_into_255_byte_strings_that_reassemble(db: &TestDb) {
    setup(db);
    db.run(&[
        "dkim",
        "generate",
        "example.org",
        "--algorithm",
        "rsa4096",
        "--selector",
        "big",
    ])
    .ok();
    let zone_line = db
        .run(&["dkim", "show", "example.org", "--format", "zone"])
        .ok()
        .stdout;
    let strings: Vec<&str> = zone_line.split('"').skip(1).step_by(2).collect();
    assert!(strings.len() >= 3, "{zone_line}");
    assert!(strings.iter().all(|s| s.len() <= 255), "{zone_line}");
    let plain = db
        .run(&["dkim", "show", "example.org", "--format", "plain"])
        .ok()
        .stdout;
    let value = plain.lines().nth(1).unwrap();
    assert_eq!(strings.concat(), value);

    let dns = serve_records(db);
    let listed = db
        .run(&[
            "--json",
            "dkim",
            "list",
            "--check-dns",
            "--nameserver",
            &dns.nameserver(),
        ])
        .ok()
        .json();
    assert_eq!(
        listed[0]["dns"]["status"], "matches",
        "the served record reassembles to the key"
    );
    verify(db, &dns, &sign(db, &[])).ok();
}

fn keys_export_with_mode_0600_and_import_elsewhere(db: &TestDb) {
    use std::os::unix::fs::PermissionsExt;
    setup(db);
    db.run(&["dkim", "generate", "example.org", "--selector", "s1"])
        .ok();
    let path = db.path("s1.pem");
    let path = path.to_str().unwrap();
    db.run(&["dkim", "export", "example.org", "s1", "--out", path])
        .ok();
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    db.run(&["dkim", "export", "example.org", "s1", "--out", path])
        .fails(1, "exists");

    let other = TestDb::sqlite();
    setup(&other);
    other
        .run(&["dkim", "import", "example.org", "s1", "--key", path])
        .ok();
    let record = |d: &TestDb| {
        d.run(&["dkim", "show", "example.org", "--format", "plain"])
            .ok()
            .stdout
    };
    assert_eq!(record(db), record(&other));

    // opendkim-genkey writes PKCS#1 ("BEGIN RSA PRIVATE KEY"): adopted as well.
    let pkcs1 = db.path("legacy.pem");
    kit::openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        pkcs1.to_str().unwrap(),
        "2048",
    ]);
    db.run(&[
        "dkim",
        "import",
        "example.org",
        "legacy",
        "--key",
        pkcs1.to_str().unwrap(),
    ])
    .ok();
    let dns = serve_records(db);
    verify(db, &dns, &sign(db, &["--selector", "legacy"])).ok();
}

fn bad_dkim_input_is_refused_and_stores_nothing(db: &TestDb) {
    setup(db);
    db.run(&["domain", "add", "sleepy.example", "--inactive"])
        .ok();
    db.run(&["dkim", "generate", "example.org", "--selector", "s1"])
        .ok();
    let before = db.snapshot();
    let keys =
        || db.query("SELECT domain, selector, state FROM mailctl_dkim_keys ORDER BY selector");
    let keys_before = keys();

    db.run(&["dkim", "generate", "nowhere.example"])
        .fails(1, "domain nowhere.example does not exist");
    db.run(&["dkim", "generate", "sleepy.example"])
        .fails(1, "domain sleepy.example is inactive");
    db.run(&["dkim", "generate", "example.org", "--selector", "s1"])
        .fails(1, "already exists");
    for bad in ["S1", "a_b", "a.b", "x-"] {
        db.run(&["dkim", "generate", "example.org", "--selector", bad])
            .fails(2, "invalid DKIM selector");
    }
    db.run(&["dkim", "generate", "example.org", "--algorithm", "rsa1024"])
        .fails_clap();
    db.run(&["dkim", "rotate", "sleepy.example"])
        .fails(1, "inactive");
    db.run_stdin(
        &["dkim", "sign", "--domain", "example.org"],
        "Subject: no from\r\n\r\nbody\r\n",
    )
    .fails(1, "no From header");
    db.run_stdin(&["dkim", "sign", "--domain", "example.org"], "")
        .fails(1, "no message");
    db.run_stdin(&["dkim", "sign", "--domain", "sleepy.example"], MESSAGE)
        .fails(1, "inactive");
    db.run_stdin(
        &["dkim", "verify", "--nameserver", "127.0.0.1:1"],
        "From: a@example.org\r\n\r\nx\r\n",
    )
    .fails(1, "no DKIM-Signature");

    let missing = db.path("missing.pem");
    db.run(&[
        "dkim",
        "import",
        "example.org",
        "s2",
        "--key",
        missing.to_str().unwrap(),
    ])
    .fails(1, "cannot read key file");
    let garbage = db.path("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    db.run(&[
        "dkim",
        "import",
        "example.org",
        "s2",
        "--key",
        garbage.to_str().unwrap(),
    ])
    .fails(1, "not a PEM private key");
    let ec = db.path("ec.pem");
    kit::openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        ec.to_str().unwrap(),
    ]);
    db.run(&[
        "dkim",
        "import",
        "example.org",
        "s2",
        "--key",
        ec.to_str().unwrap(),
    ])
    .fails(1, "only RSA and Ed25519");
    let small = db.path("small.pem");
    kit::openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        small.to_str().unwrap(),
    ]);
    db.run(&[
        "dkim",
        "import",
        "example.org",
        "s2",
        "--key",
        small.to_str().unwrap(),
    ])
    .fails(1, "1024 bits; at least 2048");

    assert_eq!(before, db.snapshot());
    assert_eq!(keys_before, keys());
}

fn concurrent_generates_leave_exactly_one_active_key(db: &TestDb) {
    setup(db);
    let children: Vec<_> = (0..6)
        .map(|i| {
            let selector = format!("c{i}");
            let mut cmd = db.command(&[
                "dkim",
                "generate",
                "example.org",
                "--algorithm",
                "ed25519",
                "--selector",
                &selector,
            ]);
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let states =
        db.query("SELECT state, COUNT(*) FROM mailctl_dkim_keys GROUP BY state ORDER BY state");
    assert_eq!(
        states,
        [["active", "1"], ["pending", "5"]].map(|r| r.map(|s| Some(s.to_string())).to_vec())
    );
}

fn headers_added_after_signing_do_not_break_the_signature(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org"]).ok();
    let dns = serve_records(db);
    let bare = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nbody\r\n";
    let signed = db
        .run_stdin(&["dkim", "sign", "--domain", "example.org"], bare)
        .ok()
        .stdout;
    // What Postfix's cleanup adds to locally submitted mail.
    let (signature, rest) = signed.split_at(signed.find("From: ").unwrap());
    let later = format!(
        "{signature}Message-ID: <x@example.org>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n{rest}"
    );
    verify(db, &dns, &later).ok();
    // A second From is exactly what oversigning forbids.
    let forged = format!("{signature}From: mallory@example.org\r\n{rest}");
    assert_eq!(verify(db, &dns, &forged).code, 1);
}

fn messages_without_exactly_one_from_are_refused(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org"]).ok();
    let sign = |m: &str| db.run_stdin(&["dkim", "sign", "--domain", "example.org"], m);
    sign("From: a@example.org\r\nFrom: b@example.org\r\n\r\nx\r\n").fails(1, "2 From headers");
    sign("From: a@example.org, b@example.org\r\n\r\nx\r\n").fails(1, "exactly one mailbox");
    sign("garbage without a colon\n").fails(1, "cannot be parsed");
    db.run_stdin(
        &["dkim", "verify", "--nameserver", "127.0.0.1:1"],
        "garbage\n",
    )
    .fails(1, "cannot be parsed");
    let unaligned = sign("From: a@other.example\r\n\r\nx\r\n").ok();
    assert!(
        unaligned.stderr.contains("not be counted") || unaligned.stderr.contains("not count"),
        "{}",
        unaligned.stderr
    );
}

fn ed25519_pem_keys_are_imported_and_bad_imports_refused(db: &TestDb) {
    setup(db);
    db.run(&["domain", "add", "sleepy.example", "--inactive"])
        .ok();
    let pem = db.path("ed.pem");
    kit::openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        pem.to_str().unwrap(),
    ]);
    let pem = pem.to_str().unwrap();
    let imported = db
        .run(&[
            "--json",
            "dkim",
            "import",
            "example.org",
            "ed",
            "--key",
            pem,
        ])
        .ok()
        .json();
    assert_eq!(imported["algorithm"], "ed25519-sha256");
    assert_eq!(imported["state"], "active");
    let dns = serve_records(db);
    verify(db, &dns, &sign(db, &[])).ok();

    let before = db.snapshot();
    db.run(&["dkim", "import", "example.org", "ed", "--key", pem])
        .fails(1, "already exists");
    db.run(&["dkim", "import", "nowhere.example", "ed", "--key", pem])
        .fails(1, "does not exist");
    db.run(&["dkim", "import", "sleepy.example", "ed", "--key", pem])
        .fails(1, "inactive");
    db.run(&["dkim", "import", "example.org", "dir", "--key", "/"])
        .fails(1, "cannot read key file");
    assert_eq!(before, db.snapshot());
}

fn activation_is_refused_for_a_different_key_or_an_unanswering_dns(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org", "--selector", "a1"])
        .ok();
    db.run(&["dkim", "rotate", "example.org", "--selector", "a2"])
        .ok();
    let states = || db.query("SELECT selector, state FROM mailctl_dkim_keys ORDER BY selector");
    let before = states();
    let other = TestDb::sqlite();
    setup(&other);
    other
        .run(&["dkim", "generate", "example.org", "--selector", "a2"])
        .ok();
    let wrong = TestDns::start(&[(
        "example.org.",
        &other.run(&["dns", "records", "example.org"]).ok().stdout,
    )]);
    db.run(&[
        "dkim",
        "activate",
        "example.org",
        "a2",
        "--nameserver",
        &wrong.nameserver(),
    ])
    .fails(
        1,
        "does not match the key: DNS publishes a different public key",
    );
    // A server that refuses the zone is no answer at all: exit 3, not "missing".
    let elsewhere = TestDns::start(&[("other.example.", "other.example. 300 IN A 192.0.2.1\n")]);
    db.run(&[
        "dkim",
        "activate",
        "example.org",
        "a2",
        "--nameserver",
        &elsewhere.nameserver(),
    ])
    .fails(3, "DNS lookup of a2._domainkey.example.org. failed");
    assert_eq!(before, states());
}

fn retired_selectors_are_never_reused(db: &TestDb) {
    setup(db);
    db.run(&["dkim", "generate", "example.org", "--algorithm", "ed25519"])
        .ok();
    let first = db.run(&["--json", "dkim", "list"]).ok().json()[0]["selector"]
        .as_str()
        .unwrap()
        .to_string();
    db.run(&[
        "dkim",
        "rotate",
        "example.org",
        "--algorithm",
        "ed25519",
        "--selector",
        "next",
    ])
    .ok();
    db.run(&["dkim", "activate", "example.org", "next", "--force"])
        .ok();
    db.run(&["dkim", "retire", "example.org", &first]).ok();
    let erased = db.query(&format!(
        "SELECT private_key FROM mailctl_dkim_keys WHERE selector = '{first}'"
    ));
    assert_eq!(
        erased[0][0].as_deref(),
        Some(""),
        "a retired key's private key is erased"
    );
    db.run(&[
        "dkim",
        "rotate",
        "example.org",
        "--algorithm",
        "ed25519",
        "--selector",
        &first,
    ])
    .fails(1, "was used by a retired key");
    let again = db
        .run(&[
            "--json",
            "dkim",
            "rotate",
            "example.org",
            "--algorithm",
            "ed25519",
        ])
        .ok()
        .json();
    assert_ne!(again["selector"].as_str().unwrap(), first);
    db.run(&["dkim", "show", "example.org", "--selector", &first])
        .fails(1, "does not exist");
}

trait ClapFailure {
    fn fails_clap(self);
}

impl ClapFailure for Run {
    /// Usage errors found by the argument parser itself: exit 2 and a message naming the value.
    fn fails_clap(self) {
        assert_eq!(self.code, 2, "{}", self.stderr);
        assert!(
            self.stderr.starts_with("error: invalid value"),
            "{}",
            self.stderr
        );
    }
}

kit::on_both_backends!(
    rsa_and_ed25519_signatures_verify_through_dns,
    altering_one_body_byte_fails,
    a_different_published_key_fails_with_a_key_mismatch,
    rotation_waits_for_dns_and_keeps_exactly_one_active_key,
    a_4096_bit_record_is_split_into_255_byte_strings_that_reassemble,
    keys_export_with_mode_0600_and_import_elsewhere,
    bad_dkim_input_is_refused_and_stores_nothing,
    concurrent_generates_leave_exactly_one_active_key,
    headers_added_after_signing_do_not_break_the_signature,
    messages_without_exactly_one_from_are_refused,
    ed25519_pem_keys_are_imported_and_bad_imports_refused,
    activation_is_refused_for_a_different_key_or_an_unanswering_dns,
    retired_selectors_are_never_reused,
);
