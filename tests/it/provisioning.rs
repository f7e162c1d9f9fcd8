//! End-to-end provisioning through the real binary, on SQLite and on MariaDB.

use kit::TestDb;

fn add_mailbox(db: &TestDb, address: &str, extra: &[&str]) {
    let mut args = vec!["mailbox", "add", address, "--password-stdin"];
    args.extend_from_slice(extra);
    db.run_stdin(&args, "correct horse battery\n").ok();
}

fn newcomer_provisions_domain_mailboxes_alias_and_catch_all(db: &TestDb) {
    db.run(&[
        "domain",
        "add",
        "example.org",
        "--description",
        "Our domain",
    ])
    .ok();
    add_mailbox(db, "alice@example.org", &["--name", "Alice Liddell"]);
    add_mailbox(db, "Bob@Example.ORG", &[]);
    db.run(&[
        "alias",
        "add",
        "info@example.org",
        "alice@example.org",
        "bob@example.org",
    ])
    .ok();
    db.run(&["alias", "add", "@example.org", "alice@example.org"])
        .ok();

    let mailboxes = db.run(&["--json", "mailbox", "list"]).ok().json();
    let names: Vec<&str> = mailboxes
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["address"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice@example.org", "bob@example.org"]);

    // The rows are postfixadmin's, with postfixadmin's meanings.
    let rows = db.query(
        "SELECT username, maildir, local_part, domain, active, smtp_active FROM mailbox ORDER BY username",
    );
    assert_eq!(
        rows[0],
        [
            "alice@example.org",
            "example.org/alice/",
            "alice",
            "example.org",
            "1",
            "1"
        ]
        .map(|s| Some(s.to_string()))
    );
    let aliases = db.query("SELECT address, goto FROM alias ORDER BY address");
    let aliases: Vec<(String, String)> = aliases
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        aliases,
        [
            ("@example.org", "alice@example.org"),
            ("alice@example.org", "alice@example.org"),
            ("bob@example.org", "bob@example.org"),
            ("info@example.org", "alice@example.org,bob@example.org"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let password = db.query("SELECT password FROM mailbox WHERE username = 'alice@example.org'");
    let hash = password[0][0].clone().unwrap();
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
    assert!(mailctl::password::verify(&hash, "correct horse battery"));

    let list = db.run(&["domain", "list"]).ok().stdout;
    assert!(
        list.contains("example.org") && list.contains("2/unlimited"),
        "{list}"
    );
    let aliases = db.run(&["--json", "alias", "list"]).ok().json();
    assert_eq!(
        aliases.as_array().unwrap().len(),
        2,
        "self-alias rows are not listed by default"
    );
    let all = db.run(&["--json", "alias", "list", "--all"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 4);
}

fn pseudo_domain_all_is_never_shown(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    db.query(
        "INSERT INTO domain (domain, description, transport) VALUES ('ALL', 'superadmin', '')",
    );
    let domains = db.run(&["--json", "domain", "list"]).ok().json();
    assert_eq!(domains.as_array().unwrap().len(), 1);
    db.run(&["domain", "show", "ALL"])
        .fails(2, "invalid domain name 'ALL'");
}

fn internationalized_names_are_stored_as_punycode(db: &TestDb) {
    db.run(&["domain", "add", "Bücher.Example"]).ok();
    add_mailbox(db, "Joerg@bücher.example", &[]);
    let rows = db.query("SELECT domain FROM domain");
    assert_eq!(rows[0][0].as_deref(), Some("xn--bcher-kva.example"));
    let rows = db.query("SELECT username, maildir FROM mailbox");
    assert_eq!(rows[0][0].as_deref(), Some("joerg@xn--bcher-kva.example"));
    assert_eq!(rows[0][1].as_deref(), Some("xn--bcher-kva.example/joerg/"));
    // People read the Unicode form beside the punycode; JSON keeps the stored form.
    let listed = db.run(&["domain", "list"]).ok().stdout;
    assert!(
        listed.contains("xn--bcher-kva.example (bücher.example)"),
        "{listed}"
    );
    let shown = db
        .run(&["mailbox", "show", "joerg@xn--bcher-kva.example"])
        .ok()
        .stdout;
    assert!(
        shown.contains("joerg@xn--bcher-kva.example (joerg@bücher.example)"),
        "{shown}"
    );
    let json = db.run(&["--json", "domain", "list"]).ok().json();
    assert_eq!(json[0]["domain"], "xn--bcher-kva.example");
    // Non-ASCII local parts need SMTPUTF8 end to end; mailctl does not provision them.
    db.run_stdin(
        &["mailbox", "add", "jörg@bücher.example", "--password-stdin"],
        "long enough\n",
    )
    .fails(2, "invalid local part");
}

fn concurrent_adds_never_exceed_the_mailbox_limit(db: &TestDb) {
    db.run(&["domain", "add", "example.org", "--max-mailboxes", "3"])
        .ok();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let address = format!("user{i}@example.org");
            let mut cmd = db.command(&["mailbox", "add", &address, "--password-stdin"]);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().expect("spawn");
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"long enough\n")
                .unwrap();
            child
        })
        .collect();
    let mut ok = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => ok += 1,
            Some(1) => assert!(
                String::from_utf8_lossy(&out.stderr).contains("allows at most 3 mailboxes"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            other => panic!(
                "unexpected exit {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    assert_eq!(ok, 3);
    let count = db.query("SELECT COUNT(*) FROM mailbox");
    assert_eq!(count[0][0].as_deref(), Some("3"));
    let aliases = db.query("SELECT COUNT(*) FROM alias");
    assert_eq!(
        aliases[0][0].as_deref(),
        Some("3"),
        "every mailbox has exactly its self-alias"
    );
}

kit::on_both_backends!(
    newcomer_provisions_domain_mailboxes_alias_and_catch_all,
    pseudo_domain_all_is_never_shown,
    internationalized_names_are_stored_as_punycode,
    concurrent_adds_never_exceed_the_mailbox_limit,
);
