//! Bulk provisioning end to end: `mailctl import FILE.csv [--dry-run]` and `mailctl export [--format csv|json]`,
//! through the real binary, on SQLite and on MariaDB.

use kit::{Kind, Run, TestDb};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

/// Another fresh database of the same backend as `db`.
fn fresh_like(db: &TestDb) -> TestDb {
    match db.kind {
        Kind::Sqlite => TestDb::sqlite(),
        Kind::Mariadb => TestDb::mariadb(),
    }
}

fn add_mailbox(db: &TestDb, address: &str, extra: &[&str]) {
    let mut args = vec!["mailbox", "add", address, "--password-stdin"];
    args.extend_from_slice(extra);
    db.run_stdin(&args, &format!("{PASSWORD}\n")).ok();
}

/// Writes `content` to a file in the test's directory and returns its path.
fn write_file(db: &TestDb, name: &str, content: &[u8]) -> String {
    let path = db.path(name);
    std::fs::write(&path, content).expect("write CSV");
    path.display().to_string()
}

/// Removes the `created` / `modified` timestamps everywhere in a JSON document.
fn strip_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("created");
            map.remove("modified");
            map.values_mut().for_each(strip_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_timestamps),
        _ => {}
    }
}

/// The JSON export without timestamps, which legitimately differ between two databases.
fn export_json_without_timestamps(db: &TestDb) -> Value {
    let mut dump = db.run(&["export", "--format", "json"]).ok().json();
    strip_timestamps(&mut dump);
    dump
}

/// The stored password hash of one mailbox.
fn password_hash(db: &TestDb, address: &str) -> String {
    let rows = db.query(&format!(
        "SELECT password FROM mailbox WHERE username = '{address}'"
    ));
    rows[0][0].clone().expect("password hash")
}

/// Asserts a failed import: exit 1, one indented `  line N: ...` line per expected row error (naming the line
/// and containing the needle), then exactly one `error: ...` summary line containing `summary`.
#[track_caller]
fn assert_row_errors(run: &Run, expected: &[(u64, &str)], summary: &str) {
    assert_eq!(
        run.code, 1,
        "wrong exit code\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        !run.stdout.contains("imported"),
        "a failed import must not report success: {}",
        run.stdout
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    let (last, rows) = lines.split_last().expect("stderr is empty");
    assert!(
        last.starts_with("error: ") && last.contains(summary),
        "last stderr line is not the summary {summary:?}: {}",
        run.stderr
    );
    assert_eq!(
        rows.len(),
        expected.len(),
        "wrong number of row errors: {}",
        run.stderr
    );
    for row in rows {
        assert!(
            row.starts_with("  line "),
            "not an indented row error: {row:?}\n{}",
            run.stderr
        );
    }
    for (line, needle) in expected {
        let prefix = format!("  line {line}: ");
        let found = rows.iter().find(|r| r.starts_with(&prefix));
        let Some(found) = found else {
            panic!("no error for line {line}: {}", run.stderr);
        };
        assert!(
            found.contains(needle),
            "error for line {line} does not mention {needle:?}: {}",
            run.stderr
        );
    }
}

fn export_then_import_into_an_empty_database_round_trips(db: &TestDb) {
    db.run(&[
        "domain",
        "add",
        "example.org",
        "--description",
        "Example, \"Inc.\"",
        "--max-mailboxes",
        "10",
        "--max-aliases",
        "20",
        "--max-quota-mb",
        "2048",
        "--domain-quota-mb",
        "10240",
    ])
    .ok();
    db.run(&[
        "domain",
        "add",
        "example.net",
        "--max-mailboxes",
        "5",
        "--max-aliases",
        "-1",
    ])
    .ok();
    db.run(&[
        "domain",
        "add",
        "backup.example",
        "--backup-mx",
        "--description",
        "relay only",
    ])
    .ok();
    db.run(&["domain", "add", "old.example", "--inactive"]).ok();
    db.run(&["alias-domain", "add", "example.com", "example.org"])
        .ok();
    add_mailbox(
        db,
        "alice@example.org",
        &["--name", "Alice \"Al\" Liddell, Esq."],
    );
    add_mailbox(db, "bob@example.org", &["--quota-mb", "512"]);
    db.run(&["mailbox", "update", "bob@example.org", "--smtp", "false"])
        .ok();
    add_mailbox(db, "carol@example.org", &[]);
    db.run(&["mailbox", "disable", "carol@example.org"]).ok();
    add_mailbox(db, "dave@example.net", &["--quota-mb", "0"]);
    add_mailbox(db, "erin@example.net", &["--inactive", "--quota-mb", "100"]);
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
    db.run(&[
        "alias",
        "add",
        "sales@example.org",
        "info@example.org",
        "partner@elsewhere.example",
        "--inactive",
    ])
    .ok();
    db.run(&[
        "alias",
        "update",
        "alice@example.org",
        "alice@example.org",
        "other@ext.example",
    ])
    .ok();
    db.run(&[
        "alias",
        "update",
        "dave@example.net",
        "dave-elsewhere@ext.example",
    ])
    .ok();

    let csv = db.run(&["export"]).ok().stdout;
    assert_eq!(
        csv,
        db.run(&["export", "--format", "csv"]).ok().stdout,
        "CSV is the default format"
    );
    assert!(
        csv.starts_with("kind,address,target,name,password,password_hash,"),
        "{csv}"
    );
    assert!(
        csv.contains("{SHA512-CRYPT}$6$"),
        "hashes are exported: {csv}"
    );
    assert!(
        !csv.contains(PASSWORD),
        "plain passwords are never exported: {csv}"
    );

    let copy = fresh_like(db);
    copy.snapshot();
    let file = write_file(&copy, "export.csv", csv.as_bytes());
    let imported = copy.run(&["import", &file]).ok();
    assert!(
        imported
            .stdout
            .contains("imported 5 domains, 1 alias domains, 5 mailboxes, 5 aliases"),
        "{}",
        imported.stdout
    );

    // CSV carries no timestamps: the two exports are byte for byte the same.
    assert_eq!(copy.run(&["export"]).ok().stdout, csv);
    // The JSON export is the same apart from the creation times.
    let original = export_json_without_timestamps(db);
    let imported = export_json_without_timestamps(&copy);
    assert_eq!(imported, original);
    assert_eq!(original["domains"].as_array().unwrap().len(), 5);
    assert_eq!(original["alias_domains"].as_array().unwrap().len(), 1);
    assert_eq!(original["mailboxes"].as_array().unwrap().len(), 5);
    assert_eq!(original["aliases"].as_array().unwrap().len(), 5);

    // Password hashes are carried over untouched, so every old password still works.
    for mailbox in [
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
        "dave@example.net",
        "erin@example.net",
    ] {
        let hash = password_hash(&copy, mailbox);
        assert_eq!(hash, password_hash(db, mailbox), "{mailbox}");
        assert!(mailctl::password::verify(&hash, PASSWORD), "{mailbox}");
    }

    // What the JSON export does not show is rebuilt too: the rows Postfix and Dovecot read.
    let rows_of = |d: &TestDb| {
        (
            d.query(
                "SELECT username, maildir, local_part, domain, quota, active, smtp_active \
                 FROM mailbox ORDER BY username",
            ),
            d.query("SELECT address, goto, domain, active FROM alias ORDER BY address"),
            d.query(
                "SELECT domain, description, aliases, mailboxes, maxquota, quota, transport, backupmx, active \
                 FROM domain ORDER BY domain",
            ),
        )
    };
    assert_eq!(rows_of(&copy), rows_of(db));
    let carol = copy.query("SELECT active FROM alias WHERE address = 'carol@example.org'");
    assert_eq!(
        carol[0][0].as_deref(),
        Some("1"),
        "a disabled mailbox's self-alias stays active (so no catch-all takes its mail)"
    );
}

fn import_of_a_hand_written_csv_hashes_plain_passwords(db: &TestDb) {
    db.snapshot();
    // Columns in any order and any case, rows in any order: the mailbox comes before its domain.
    let csv = "Kind,Address,Name,Password,Quota_MB,Max_Quota_MB,Target,SMTP_Active\n\
               mailbox,Alice@Hand.Example,Alice,correct horse battery,100,,,\n\
               alias,postmaster@hand.example,,,,,\"alice@hand.example, bob@hand.example\",\n\
               domain,hand.example,Made by hand,,,500,,\n\
               mailbox,bob@hand.example,,another long password,,,,no\n";
    let file = write_file(db, "hand.csv", csv.as_bytes());
    let run = db.run(&["import", &file]).ok();
    assert!(
        run.stdout
            .contains("imported 1 domains, 0 alias domains, 2 mailboxes, 1 aliases"),
        "{}",
        run.stdout
    );

    for (address, password) in [
        ("alice@hand.example", "correct horse battery"),
        ("bob@hand.example", "another long password"),
    ] {
        let hash = password_hash(db, address);
        assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{address}: {hash}");
        assert!(mailctl::password::verify(&hash, password), "{address}");
        assert!(!mailctl::password::verify(&hash, "wrong password"));
    }
    let rows = db
        .query("SELECT username, name, quota, smtp_active, maildir FROM mailbox ORDER BY username");
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                some("alice@hand.example"),
                some("Alice"),
                some(&(100 * 1_024_000).to_string()),
                some("1"),
                some("hand.example/alice/"),
            ],
            vec![
                some("bob@hand.example"),
                some(""),
                // No quota given: the domain's maximum per mailbox, as with `mailbox add`.
                some(&(500 * 1_024_000).to_string()),
                some("0"),
                some("hand.example/bob/"),
            ],
        ]
    );
    let alias = db.run(&["--json", "alias", "show", "postmaster@hand.example"]);
    let alias = alias.ok().json();
    assert_eq!(
        alias["destinations"],
        serde_json::json!(["alice@hand.example", "bob@hand.example"])
    );
    let domain = db.run(&["--json", "domain", "show", "hand.example"]).ok();
    assert!(domain.stdout.contains("Made by hand"), "{}", domain.stdout);
}

fn dry_run_reports_and_changes_nothing(db: &TestDb) {
    db.run(&["domain", "add", "existing.example"]).ok();
    add_mailbox(db, "someone@existing.example", &[]);
    let before = db.snapshot();
    let csv = "kind,address,target,password\n\
               domain,new.example,,\n\
               mailbox,ann@new.example,,correct horse battery\n\
               alias,@new.example,ann@new.example,\n\
               alias_domain,new-alias.example,new.example,\n\
               alias,hello@existing.example,someone@existing.example,\n";
    let file = write_file(db, "plan.csv", csv.as_bytes());
    let run = db.run(&["import", "--dry-run", &file]).ok();
    assert!(
        run.stdout
            .contains("would import 1 domains, 1 alias domains, 1 mailboxes, 2 aliases"),
        "{}",
        run.stdout
    );
    assert_eq!(db.snapshot(), before);

    // A dry run checks every row against the database like the real thing.
    let bad =
        "kind,address,target,password\nmailbox,someone@existing.example,,correct horse battery\n";
    let file = write_file(db, "bad.csv", bad.as_bytes());
    let run = db.run(&["import", "--dry-run", &file]);
    assert_row_errors(&run, &[(2, "already exists")], "nothing was imported");
    assert_eq!(db.snapshot(), before);

    // And the same file without --dry-run really imports.
    db.run(&["import", &write_file(db, "plan.csv", csv.as_bytes())])
        .ok();
    assert_ne!(db.snapshot(), before);
    db.run(&["mailbox", "show", "ann@new.example"]).ok();
}

fn row_errors_name_their_lines_and_nothing_is_imported(db: &TestDb) {
    db.run(&["domain", "add", "known.example", "--max-aliases", "1"])
        .ok();
    add_mailbox(db, "taken@known.example", &[]);
    let before = db.snapshot();

    // Rows that cannot even be parsed: each is named, and nothing reaches the database.
    let csv = "kind,address,target,password,quota_mb,active\n\
               domain,new.example,,,,\n\
               mailbox,not an address,,correct horse battery,,\n\
               mailbox,ok@new.example,,correct horse battery,,\n\
               mailbox_group,y@new.example,,correct horse battery,,\n\
               mailbox,nopass@new.example,,,,\n\
               mailbox,q@new.example,,correct horse battery,lots,\n\
               alias,a@new.example,ok@new.example,,,maybe\n\
               ,x@new.example,,,,\n";
    let file = write_file(db, "parse.csv", csv.as_bytes());
    let run = db.run(&["import", &file]);
    assert_row_errors(
        &run,
        &[
            (3, "not an address"),
            (5, "unknown kind 'mailbox_group'"),
            (6, "password"),
            (7, "quota_mb 'lots' is not a whole number"),
            (8, "active 'maybe'"),
            (9, "column kind is empty"),
        ],
        "6 rows are invalid; nothing was imported",
    );
    assert_eq!(db.snapshot(), before);

    // Rows that parse but are refused by the database's rules: all reported, the good rows rolled back.
    let csv = "kind,address,target,password\n\
               domain,new.example,,\n\
               mailbox,ok@new.example,,correct horse battery\n\
               mailbox,x@nowhere.example,,correct horse battery\n\
               mailbox,taken@known.example,,correct horse battery\n\
               mailbox,short@new.example,,abc\n\
               mailbox,ok@new.example,,correct horse battery\n\
               domain,known.example,,\n\
               alias,one@known.example,taken@known.example,\n\
               alias,two@known.example,taken@known.example,\n\
               alias,loop-a@new.example,loop-b@new.example,\n\
               alias,loop-b@new.example,loop-a@new.example,\n\
               alias,@nowhere.example,ok@new.example,\n\
               alias,fine@new.example,ok@new.example,\n";
    let file = write_file(db, "rules.csv", csv.as_bytes());
    let run = db.run(&["import", &file]);
    assert_row_errors(
        &run,
        &[
            (4, "domain nowhere.example does not exist"),
            (5, "mailbox taken@known.example already exists"),
            (6, "password is too short"),
            (7, "mailbox ok@new.example already exists"),
            (8, "domain known.example already exists"),
            (10, "domain known.example allows at most 1 aliases"),
            (12, "alias loop"),
            (13, "domain nowhere.example does not exist"),
        ],
        "8 rows failed; nothing was imported",
    );
    let summary = run.stderr.lines().last().unwrap();
    assert!(summary.contains("rules.csv"), "{summary}");
    assert_eq!(db.snapshot(), before);

    // Importing an export into the database it came from duplicates every row: refused as a whole.
    let csv = db.run(&["export"]).ok().stdout;
    let file = write_file(db, "again.csv", csv.as_bytes());
    let run = db.run(&["import", &file]);
    assert_row_errors(
        &run,
        &[
            (2, "domain known.example already exists"),
            (3, "mailbox taken@known.example already exists"),
        ],
        "2 rows failed",
    );
    assert_eq!(db.snapshot(), before);
}

fn a_row_with_a_missing_field_is_refused(db: &TestDb) {
    let before = db.snapshot();
    // Line numbers are lines of the file: a blank line and a quoted line break still count.
    let csv = "kind,address,target,name\n\
               domain,a.example,,\"first line\nsecond line\"\n\
               \n\
               domain,b.example\n\
               domain,c.example,,C\n\
               mailbox,x@c.example,,X,extra\n";
    let file = write_file(db, "short.csv", csv.as_bytes());
    let run = db.run(&["import", &file]);
    assert_row_errors(
        &run,
        &[
            (5, "expected 4 fields like the header, found 2"),
            (7, "expected 4 fields like the header, found 5"),
        ],
        "2 rows are invalid; nothing was imported",
    );
    assert_eq!(db.snapshot(), before);

    // A field that is not UTF-8 is a row error too, with its line.
    let mut bytes = b"kind,address,target,name\ndomain,d.example,,".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let file = write_file(db, "latin1.csv", &bytes);
    let run = db.run(&["import", &file]);
    assert_row_errors(&run, &[(2, "not valid UTF-8")], "1 rows are invalid");
    assert_eq!(db.snapshot(), before);
}

fn an_unreadable_csv_is_a_one_line_error(db: &TestDb) {
    let before = db.snapshot();
    let missing = db.path("no-such-file.csv").display().to_string();
    db.run(&["import", &missing])
        .fails(1, &format!("cannot read {missing}"));
    db.run(&["import", "--dry-run", &missing])
        .fails(1, "no-such-file.csv");

    let directory = db.dir.path().display().to_string();
    db.run(&["import", &directory])
        .fails(1, &format!("cannot read {directory}"));

    let file = write_file(
        db,
        "colour.csv",
        b"kind,address,colour\ndomain,x.example,red\n",
    );
    db.run(&["import", &file])
        .fails(2, "unknown column 'colour'");
    let file = write_file(db, "nokind.csv", b"address,target\nx.example,\n");
    db.run(&["import", &file])
        .fails(2, "the header has no column 'kind'");
    let file = write_file(db, "empty.csv", b"");
    db.run(&["import", &file]).fails(2, "empty.csv");

    assert_eq!(db.snapshot(), before);
}

fn import_from_stdin_with_a_dash_works(db: &TestDb) {
    let csv = "kind,address,password,password_hash\n\
               domain,stdin.example,,\n\
               mailbox,in@stdin.example,correct horse battery,\n";
    let before = db.snapshot();
    let run = db.run_stdin(&["import", "-", "--dry-run"], csv).ok();
    assert!(
        run.stdout.contains("would import 1 domains"),
        "{}",
        run.stdout
    );
    assert_eq!(db.snapshot(), before);

    let run = db.run_stdin(&["import", "-"], csv).ok();
    assert!(
        run.stdout
            .contains("imported 1 domains, 0 alias domains, 1 mailboxes, 0 aliases"),
        "{}",
        run.stdout
    );
    let hash = password_hash(db, "in@stdin.example");
    assert!(mailctl::password::verify(&hash, PASSWORD), "{hash}");

    // An export piped straight into another database's import.
    let copy = fresh_like(db);
    copy.snapshot();
    let csv = db.run(&["export"]).ok().stdout;
    copy.run_stdin(&["import", "-"], &csv).ok();
    assert_eq!(
        export_json_without_timestamps(&copy),
        export_json_without_timestamps(db)
    );

    // Errors from standard input name their lines as well.
    let before = db.snapshot();
    let run = db.run_stdin(
        &["import", "-"],
        "kind,address,password\nmailbox,in@stdin.example,correct horse battery\n",
    );
    assert_row_errors(&run, &[(2, "already exists")], "nothing was imported");
    assert_eq!(db.snapshot(), before);
}

/// Mailboxes go in batches of 500 that count each domain once: the domain's limit still holds row by row,
/// across batch boundaries, with mailboxes of the same file, existing aliases and duplicates in the file.
fn limits_hold_across_batches(db: &TestDb) {
    db.run(&["domain", "add", "big.example", "--max-mailboxes", "600"])
        .ok();
    db.run(&[
        "alias",
        "add",
        "existing@big.example",
        "someone@else.example",
    ])
    .ok();
    let before = db.snapshot();
    let hash = mailctl::password::hash(mailctl::password::Scheme::Sha512Crypt, "correct horse")
        .expect("hash");
    let mut csv =
        String::from("kind,address,password_hash\nmailbox,existing@big.example,") + &hash + "\n";
    for i in 0..700 {
        csv.push_str(&format!("mailbox,user{i}@big.example,{hash}\n"));
    }
    csv.push_str(&format!("mailbox,user5@big.example,{hash}\n"));
    let file = write_file(db, "big.csv", csv.as_bytes());
    let run = db.run(&["import", &file]);
    let mut expected: Vec<(u64, &str)> = vec![
        (2, "existing@big.example is already an alias"),
        (703, "mailbox user5@big.example already exists"),
    ];
    // user600 is line 603: the 601st mailbox.
    expected.extend((603..=702).map(|line| {
        (
            line,
            "domain big.example allows at most 600 mailboxes and has 600",
        )
    }));
    assert_row_errors(&run, &expected, "102 rows failed; nothing was imported");
    let lines: Vec<u64> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  line ")?.split(':').next()?.parse().ok())
        .collect();
    assert!(lines.is_sorted(), "row errors in file order: {lines:?}");
    assert_eq!(db.snapshot(), before);

    // Without the limit and the two bad rows: all 700, with the hash as given.
    db.run(&["domain", "update", "big.example", "--max-mailboxes", "0"])
        .ok();
    let good: String = csv
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1 && *i != 702)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let file = write_file(db, "good.csv", good.as_bytes());
    let run = db.run(&["import", &file]).ok();
    assert!(
        run.stdout
            .contains("imported 0 domains, 0 alias domains, 700 mailboxes"),
        "{}",
        run.stdout
    );
    let export = db
        .run(&["--json", "export", "--format", "json"])
        .ok()
        .json();
    assert_eq!(export["mailboxes"].as_array().unwrap().len(), 700);
    assert_eq!(password_hash(db, "user699@big.example"), hash);
}

kit::on_both_backends!(
    limits_hold_across_batches,
    export_then_import_into_an_empty_database_round_trips,
    import_of_a_hand_written_csv_hashes_plain_passwords,
    dry_run_reports_and_changes_nothing,
    row_errors_name_their_lines_and_nothing_is_imported,
    a_row_with_a_missing_field_is_refused,
    an_unreadable_csv_is_a_one_line_error,
    import_from_stdin_with_a_dash_works,
);
