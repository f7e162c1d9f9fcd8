//! Bad input: every case is a one-line error, the documented exit code, and an unchanged database.

use kit::{Run, TestDb};

const FAILED: i32 = 1;
const USAGE: i32 = 2;

/// Runs a command that must fail, and proves the database did not change.
#[track_caller]
fn refused(db: &TestDb, args: &[&str], stdin: &str, code: i32, needle: &str) -> Run {
    let before = db.snapshot();
    let run = db.run_stdin(args, stdin).fails(code, needle);
    assert_eq!(
        before,
        db.snapshot(),
        "database changed after a refused command {args:?}"
    );
    run
}

fn setup(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    db.run_stdin(
        &["mailbox", "add", "alice@example.org", "--password-stdin"],
        "long enough\n",
    )
    .ok();
}

fn invalid_domain_names_are_usage_errors(db: &TestDb) {
    setup(db);
    for bad in [
        "exa mple.org",
        "example..org",
        "localhost",
        "under_score.org",
        "lead-.org",
        "1.2.3.4",
    ] {
        refused(
            db,
            &["domain", "add", bad],
            "",
            USAGE,
            "invalid domain name",
        );
    }
    refused(
        db,
        &["domain", "add", "example.org."],
        "",
        USAGE,
        "trailing dot",
    );
}

fn invalid_local_parts_are_usage_errors(db: &TestDb) {
    setup(db);
    for bad in [
        "a%b@example.org",
        "a!b@example.org",
        "a/b@example.org",
        ".a@example.org",
        "a..b@example.org",
    ] {
        refused(
            db,
            &["mailbox", "add", bad, "--password-stdin"],
            "long enough\n",
            USAGE,
            "invalid local part",
        );
        refused(
            db,
            &["alias", "add", bad, "alice@example.org"],
            "",
            USAGE,
            "invalid local part",
        );
    }
    refused(
        db,
        &["alias", "add", "x@example.org", "not-an-address"],
        "",
        USAGE,
        "invalid address",
    );
}

fn addresses_in_missing_domains_are_refused(db: &TestDb) {
    setup(db);
    refused(
        db,
        &["mailbox", "add", "bob@nowhere.example", "--password-stdin"],
        "long enough\n",
        FAILED,
        "domain nowhere.example does not exist",
    );
    refused(
        db,
        &["alias", "add", "x@nowhere.example", "alice@example.org"],
        "",
        FAILED,
        "domain nowhere.example does not exist",
    );
    refused(
        db,
        &["mailbox", "show", "ghost@example.org"],
        "",
        FAILED,
        "mailbox ghost@example.org does not exist",
    );
    refused(
        db,
        &["domain", "delete", "nowhere.example"],
        "",
        FAILED,
        "domain nowhere.example does not exist",
    );
}

fn duplicates_are_refused(db: &TestDb) {
    setup(db);
    refused(
        db,
        &["domain", "add", "EXAMPLE.org"],
        "",
        FAILED,
        "domain example.org already exists",
    );
    refused(
        db,
        &["mailbox", "add", "Alice@example.org", "--password-stdin"],
        "long enough\n",
        FAILED,
        "mailbox alice@example.org already exists",
    );
    db.run(&["alias", "add", "info@example.org", "alice@example.org"])
        .ok();
    refused(
        db,
        &["alias", "add", "info@example.org", "alice@example.org"],
        "",
        FAILED,
        "already exists",
    );
    refused(
        db,
        &["alias", "add", "alice@example.org", "x@other.example"],
        "",
        FAILED,
        "is a mailbox",
    );
    refused(
        db,
        &["mailbox", "add", "info@example.org", "--password-stdin"],
        "long enough\n",
        FAILED,
        "already an alias",
    );
}

fn mailbox_count_and_quota_limits_are_enforced(db: &TestDb) {
    db.run(&[
        "domain",
        "add",
        "small.example",
        "--max-mailboxes",
        "2",
        "--max-quota-mb",
        "100",
    ])
    .ok();
    db.run(&[
        "domain",
        "update",
        "small.example",
        "--domain-quota-mb",
        "150",
    ])
    .ok();
    let add = |addr: &str, quota: &str| {
        db.run_stdin(
            &[
                "mailbox",
                "add",
                addr,
                "--password-stdin",
                "--quota-mb",
                quota,
            ],
            "long enough\n",
        )
    };
    refused(
        db,
        &[
            "mailbox",
            "add",
            "a@small.example",
            "--password-stdin",
            "--quota-mb",
            "200",
        ],
        "long enough\n",
        FAILED,
        "over domain small.example's limit of 100 MB",
    );
    add("a@small.example", "100").ok();
    refused(
        db,
        &[
            "mailbox",
            "add",
            "b@small.example",
            "--password-stdin",
            "--quota-mb",
            "60",
        ],
        "long enough\n",
        FAILED,
        "total quota of 150 MB would be exceeded",
    );
    add("b@small.example", "50").ok();
    refused(
        db,
        &[
            "mailbox",
            "add",
            "c@small.example",
            "--password-stdin",
            "--quota-mb",
            "1",
        ],
        "long enough\n",
        FAILED,
        "allows at most 2 mailboxes and has 2",
    );
    refused(
        db,
        &["mailbox", "update", "b@small.example", "--quota-mb", "51"],
        "",
        FAILED,
        "would be exceeded",
    );
    db.run(&["domain", "add", "closed.example", "--max-aliases", "-1"])
        .ok();
    refused(
        db,
        &["alias", "add", "x@closed.example", "a@small.example"],
        "",
        FAILED,
        "allows no aliases",
    );
}

fn alias_loops_are_refused(db: &TestDb) {
    setup(db);
    db.run(&["alias", "add", "a@example.org", "b@example.org"])
        .ok();
    refused(
        db,
        &["alias", "add", "b@example.org", "a@example.org"],
        "",
        FAILED,
        "alias loop: b@example.org -> a@example.org -> b@example.org",
    );
    refused(
        db,
        &["alias", "add", "self@example.org", "self@example.org"],
        "",
        FAILED,
        "alias loop",
    );
    db.run(&["alias", "add", "d@example.org", "a@example.org"])
        .ok();
    db.run(&["alias", "update", "a@example.org", "d@example.org"])
        .fails(
            FAILED,
            "alias loop: a@example.org -> d@example.org -> a@example.org",
        );
    // zz@ has no row of its own, so a catch-all would receive it: @example.org -> b2 -> zz -> @example.org.
    db.run(&["alias", "add", "b2@example.org", "zz@example.org"])
        .ok();
    refused(
        db,
        &["alias", "add", "@example.org", "b2@example.org"],
        "",
        FAILED,
        "alias loop",
    );
    // Through an alias domain: x@example.net means x@example.org.
    db.run(&["alias-domain", "add", "example.net", "example.org"])
        .ok();
    refused(
        db,
        &["alias", "add", "e@example.org", "e@example.net"],
        "",
        FAILED,
        "alias loop",
    );
    // A mailbox that forwards and keeps a copy names itself: not a loop. Coming back through another alias is.
    db.run(&[
        "alias",
        "update",
        "alice@example.org",
        "alice@example.org",
        "fwd@elsewhere.example",
    ])
    .ok();
    db.run(&["alias", "add", "x@example.org", "alice@example.org"])
        .ok();
    refused(
        db,
        &[
            "alias",
            "update",
            "alice@example.org",
            "alice@example.org",
            "x@example.org",
        ],
        "",
        FAILED,
        "alias loop: alice@example.org -> x@example.org -> alice@example.org",
    );
}

fn bad_passwords_are_refused(db: &TestDb) {
    setup(db);
    let add = ["mailbox", "add", "bob@example.org", "--password-stdin"];
    refused(db, &add, "", USAGE, "password is empty");
    refused(db, &add, "\n", USAGE, "password is empty");
    refused(db, &add, "short\n", USAGE, "too short");
    refused(
        db,
        &["mailbox", "add", "bob@example.org"],
        "",
        USAGE,
        "no password given",
    );
    refused(
        db,
        &["mailbox", "passwd", "alice@example.org", "--password-stdin"],
        "abc\n",
        USAGE,
        "too short",
    );
    refused(
        db,
        &[
            "mailbox",
            "add",
            "bob@example.org",
            "--password-stdin",
            "--scheme",
            "MD5",
        ],
        "long enough\n",
        USAGE,
        "unknown password scheme",
    );
}

fn control_characters_in_free_text_are_refused(db: &TestDb) {
    setup(db);
    refused(
        db,
        &[
            "mailbox",
            "update",
            "alice@example.org",
            "--name",
            "Eve\r\nBcc: victim@example.net",
        ],
        "",
        USAGE,
        "control characters",
    );
    refused(
        db,
        &["domain", "update", "example.org", "--description", "a\nb"],
        "",
        USAGE,
        "control characters",
    );
}

fn deleting_a_domain_with_contents_needs_force(db: &TestDb) {
    setup(db);
    db.run(&["alias", "add", "@example.org", "alice@example.org"])
        .ok();
    db.run(&["alias-domain", "add", "example.net", "example.org"])
        .ok();
    refused(
        db,
        &["domain", "delete", "example.org"],
        "",
        FAILED,
        "use --force",
    );
    let out = db
        .run(&["domain", "delete", "example.org", "--force"])
        .ok()
        .stdout;
    assert!(
        out.contains("with 1 mailbox, 1 alias and 1 alias-domain mapping"),
        "{out}"
    );
    for sql in [
        "SELECT COUNT(*) FROM mailbox WHERE domain = 'example.org'",
        "SELECT COUNT(*) FROM alias WHERE domain = 'example.org'",
        "SELECT COUNT(*) FROM alias_domain WHERE target_domain = 'example.org'",
        "SELECT COUNT(*) FROM domain WHERE domain = 'example.org'",
    ] {
        assert_eq!(db.query(sql)[0][0].as_deref(), Some("0"), "{sql}");
    }
}

fn limits_below_current_usage_and_absurd_sizes_are_refused(db: &TestDb) {
    setup(db);
    db.run_stdin(
        &[
            "mailbox",
            "add",
            "bob@example.org",
            "--password-stdin",
            "--quota-mb",
            "50",
        ],
        "long enough\n",
    )
    .ok();
    refused(
        db,
        &["domain", "update", "example.org", "--max-mailboxes", "1"],
        "",
        FAILED,
        "has 2 mailboxes",
    );
    refused(
        db,
        &["domain", "update", "example.org", "--max-quota-mb", "10"],
        "",
        FAILED,
        "lower them first",
    );
    refused(
        db,
        &[
            "domain",
            "update",
            "example.org",
            "--max-quota-mb",
            "99999999999999999",
        ],
        "",
        USAGE,
        "up to",
    );
    refused(
        db,
        &[
            "domain",
            "add",
            "big.example",
            "--domain-quota-mb",
            "9223372036854775807",
        ],
        "",
        USAGE,
        "up to",
    );
    let long = format!(
        "{}@{}.example.org",
        "a".repeat(60),
        ["b".repeat(60), "c".repeat(60), "d".repeat(60)].join(".")
    );
    refused(
        db,
        &["alias", "add", &long, "alice@example.org"],
        "",
        USAGE,
        "longer than 254 characters",
    );
}

fn alias_domains_cannot_close_a_loop(db: &TestDb) {
    setup(db);
    db.run(&["domain", "add", "example.net"]).ok();
    db.run(&["alias", "add", "x@example.org", "x@example.net"])
        .ok();
    // example.net -> example.org would make x@example.org -> x@example.net -> x@example.org.
    refused(
        db,
        &["alias-domain", "add", "example.net", "example.org"],
        "",
        FAILED,
        "alias loop",
    );
}

fn forced_domain_delete_takes_its_empty_alias_domains_along(db: &TestDb) {
    setup(db);
    db.run(&["alias-domain", "add", "example.net", "example.org"])
        .ok();
    db.run(&["domain", "delete", "example.org", "--force"]).ok();
    let domains = db.run(&["--json", "domain", "list"]).ok().json();
    assert_eq!(
        domains,
        serde_json::json!([]),
        "example.net would accept mail for nothing"
    );
}

kit::on_both_backends!(
    limits_below_current_usage_and_absurd_sizes_are_refused,
    alias_domains_cannot_close_a_loop,
    forced_domain_delete_takes_its_empty_alias_domains_along,
    invalid_domain_names_are_usage_errors,
    invalid_local_parts_are_usage_errors,
    addresses_in_missing_domains_are_refused,
    duplicates_are_refused,
    mailbox_count_and_quota_limits_are_enforced,
    alias_loops_are_refused,
    bad_passwords_are_refused,
    control_characters_in_free_text_are_refused,
    deleting_a_domain_with_contents_needs_force,
);

/// Header injection through provisioning: names, descriptions and addresses given to the `add` commands with
/// CR, LF or another control character are refused (exit 2, one line naming the field), nothing written.
mod control_characters_on_add {
    use super::{USAGE, refused, setup};
    use kit::TestDb;

    /// Line breaks of every kind, plus the other characters that end or rewrite a header line somewhere:
    /// tab, escape, DEL, NEL (U+0085), and the Unicode line and paragraph separators.
    const HOSTILE: [&str; 9] = [
        "\r\n", "\n", "\r", "\t", "\x1b", "\x7f", "\u{85}", "\u{2028}", "\u{2029}",
    ];

    fn names_and_descriptions_with_control_characters_are_refused(db: &TestDb) {
        setup(db);
        for c in HOSTILE {
            let shown = c.escape_debug().to_string();
            let injected = format!("Eve{c}Bcc: victim@example.net");
            let run = refused(
                db,
                &[
                    "mailbox",
                    "add",
                    "bob@example.org",
                    "--password-stdin",
                    "--name",
                    &injected,
                ],
                "long enough\n",
                USAGE,
                "name '",
            );
            assert!(
                run.stderr.contains("control characters"),
                "{shown}: {}",
                run.stderr
            );
            refused(
                db,
                &["domain", "add", "new.example", "--description", &injected],
                "",
                USAGE,
                "description '",
            );
            refused(
                db,
                &[
                    "domain",
                    "update",
                    "example.org",
                    "--description",
                    &injected,
                ],
                "",
                USAGE,
                "description '",
            );
        }
    }

    fn addresses_and_domains_with_control_characters_are_refused(db: &TestDb) {
        setup(db);
        for c in HOSTILE {
            let local = format!("bo{c}b@example.org");
            let domain = format!("evil{c}example.org");
            let target = format!("alice@example.org{c}Bcc: evil@far.test");
            refused(
                db,
                &["domain", "add", &domain],
                "",
                USAGE,
                "invalid domain name",
            );
            refused(
                db,
                &["mailbox", "add", &local, "--password-stdin"],
                "long enough\n",
                USAGE,
                "invalid local part",
            );
            refused(
                db,
                &["alias", "add", &local, "alice@example.org"],
                "",
                USAGE,
                "invalid local part",
            );
            refused(
                db,
                &["alias", "add", "x@example.org", &target],
                "",
                USAGE,
                "invalid local part 'alice@example.org",
            );
            refused(
                db,
                &[
                    "alias",
                    "add",
                    "x@example.org",
                    &format!("alice@exa{c}mple.org"),
                ],
                "",
                USAGE,
                "invalid domain name",
            );
            refused(
                db,
                &["alias-domain", "add", &domain, "example.org"],
                "",
                USAGE,
                "invalid domain name",
            );
        }
    }

    kit::on_both_backends!(
        names_and_descriptions_with_control_characters_are_refused,
        addresses_and_domains_with_control_characters_are_refused,
    );
}

/// A config value holding a line break or a terminal escape is quoted in the error escaped, on one line
/// (the fuzzer found validation errors that copied such values through raw).
#[test]
fn config_values_with_control_characters_give_a_one_line_error() {
    let db = TestDb::sqlite();
    std::fs::write(
        db.path("mailctl.toml"),
        "[server]\nhostname = \"mail.example.org\"\nmetrics = \"a\\nb\\u001b[2J\"\n\
         [server.listen]\nsmtp = \"127.0.0.1:0\"\nsubmission = \"off\"\nsubmissions = \"off\"\n",
    )
    .unwrap();
    let run = db
        .run(&["serve", "--check-config"])
        .fails(USAGE, "server.metrics");
    assert!(run.stderr.contains("a\\nb\\u{1b}[2J"), "{}", run.stderr);
}
