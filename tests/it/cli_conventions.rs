//! Global conventions: configuration precedence, the embedded default database, exit codes, JSON output,
//! schema migrations, and adopting an existing postfixadmin database without altering it.

use kit::{Kind, TestDb, run_command};

fn first_command_creates_the_default_database_and_says_where() {
    let db = TestDb::sqlite();
    let mut cmd = db.command(&["domain", "list"]);
    cmd.env_remove("MAILCTL_DATABASE_URL");
    let run = run_command(cmd, "").ok();
    let expected = db.path("data/mailctl/mailctl.db");
    assert!(expected.exists(), "no database at {}", expected.display());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&expected).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "password hashes and DKIM keys are for the owner only"
    );
    assert!(
        run.stderr
            .contains(&format!("created new database at {}", expected.display())),
        "{}",
        run.stderr
    );
    let mut again = db.command(&["domain", "list"]);
    again.env_remove("MAILCTL_DATABASE_URL");
    let run = run_command(again, "").ok();
    assert!(!run.stderr.contains("created"), "{}", run.stderr);
}

#[test]
fn default_database_lives_in_the_data_directory() {
    first_command_creates_the_default_database_and_says_where();
}

#[test]
fn flag_beats_environment_beats_config_file() {
    let db = TestDb::sqlite();
    let url_of = |run: kit::Run| run.ok().json()["url"].as_str().unwrap().to_string();
    let file_url = format!("sqlite://{}", db.path("from-file.db").display());
    let env_url = format!("sqlite://{}", db.path("from-env.db").display());
    let flag_url = format!("sqlite://{}", db.path("from-flag.db").display());
    std::fs::write(
        db.path("mailctl.toml"),
        format!("[database]\nurl = \"{file_url}\"\n"),
    )
    .unwrap();

    let mut cmd = db.command(&["--json", "db", "status"]);
    cmd.env_remove("MAILCTL_DATABASE_URL");
    assert_eq!(url_of(run_command(cmd, "")), file_url);

    let mut cmd = db.command(&["--json", "db", "status"]);
    cmd.env("MAILCTL_DATABASE_URL", &env_url);
    assert_eq!(url_of(run_command(cmd, "")), env_url);

    let mut cmd = db.command(&["--json", "db", "status", "--database-url", &flag_url]);
    cmd.env("MAILCTL_DATABASE_URL", &env_url);
    let status = run_command(cmd, "").ok().json();
    assert_eq!(status["url"], flag_url.as_str());
    assert_eq!(status["url_source"], "flag");
}

#[test]
fn bad_config_files_are_usage_errors_naming_the_line() {
    let db = TestDb::sqlite();
    std::fs::write(
        db.path("mailctl.toml"),
        "[database]\nurl = \"sqlite://x.db\"\nulr = 3\n",
    )
    .unwrap();
    db.run(&["domain", "list"])
        .fails(2, "line 3: database.ulr: unknown field `ulr`");
    std::fs::write(db.path("mailctl.toml"), "[passwords]\nscheme = \"rot13\"\n").unwrap();
    db.run(&["domain", "list"])
        .fails(2, "unknown password scheme 'rot13'");
    db.run(&["--config", "/nonexistent/mailctl.toml", "domain", "list"])
        .fails(2, "cannot read config file /nonexistent/mailctl.toml");
}

#[test]
fn malformed_database_urls_are_usage_errors() {
    let db = TestDb::sqlite();
    db.run(&["--database-url", "postgres://x/y", "domain", "list"])
        .fails(2, "unsupported scheme");
    db.run(&[
        "--database-url",
        "mysql://root@127.0.0.1:3306",
        "domain",
        "list",
    ])
    .fails(2, "no database name");
    db.run(&[
        "--database-url",
        "mysql://root@:bad:port/x",
        "domain",
        "list",
    ])
    .fails(2, "invalid database URL");
}

#[test]
fn unreachable_database_server_exits_3_and_hides_the_password() {
    let db = TestDb::sqlite();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let run = db
        .run(&[
            "--database-url",
            "mysql://root:s3cret@127.0.0.1:1/mail",
            "domain",
            "list",
        ])
        .fails(
            3,
            "cannot reach the database mysql://root:***@127.0.0.1:1/mail",
        );
    assert!(!run.stderr.contains("s3cret"));
}

#[test]
fn help_documents_exit_codes() {
    let db = TestDb::sqlite();
    let help = db.run(&["--help"]).ok().stdout;
    assert!(
        help.contains("Exit status:") && help.contains("3  the database"),
        "{help}"
    );
}

fn every_data_command_speaks_json(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    db.run(&[
        "--json",
        "mailbox",
        "add",
        "alice@example.org",
        "--random-password",
    ])
    .ok();
    db.run(&["alias", "add", "info@example.org", "alice@example.org"])
        .ok();
    db.run(&["alias-domain", "add", "example.net", "example.org"])
        .ok();
    for args in [
        &["domain", "list"][..],
        &["domain", "show", "example.org"],
        &["mailbox", "list"],
        &["mailbox", "list", "example.org"],
        &["mailbox", "show", "alice@example.org"],
        &["alias", "list"],
        &["alias", "show", "info@example.org"],
        &["alias-domain", "list"],
        &["db", "status"],
        &["db", "migrate"],
        &["export"],
        &["config", "postfix"],
        &["config", "dovecot"],
        &["domain", "update", "example.org", "--description", "x"],
        &["mailbox", "disable", "alice@example.org"],
        &["alias", "delete", "info@example.org"],
    ] {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let run = db.run(&full).ok();
        run.json();
    }
}

fn random_passwords_are_shown_once_and_work(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    let out = db
        .run(&[
            "--json",
            "mailbox",
            "add",
            "alice@example.org",
            "--random-password",
        ])
        .ok()
        .json();
    let password = out["generated_password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 20);
    let hash = db.query("SELECT password FROM mailbox")[0][0]
        .clone()
        .unwrap();
    assert!(mailctl::password::verify(&hash, &password));
    let shown = db
        .run(&["--json", "mailbox", "show", "alice@example.org"])
        .ok()
        .json();
    assert!(shown.get("generated_password").is_none());
    assert!(
        !db.run(&["mailbox", "show", "alice@example.org"])
            .ok()
            .stdout
            .contains(&password)
    );

    db.run_stdin(
        &[
            "mailbox",
            "passwd",
            "alice@example.org",
            "--password-stdin",
            "--scheme",
            "BLF-CRYPT",
        ],
        "new password 1\n",
    )
    .ok();
    let hash = db.query("SELECT password FROM mailbox")[0][0]
        .clone()
        .unwrap();
    assert!(hash.starts_with("{BLF-CRYPT}$2y$"), "{hash}");
    assert!(mailctl::password::verify(&hash, "new password 1"));
    db.run_stdin(
        &[
            "mailbox",
            "passwd",
            "alice@example.org",
            "--password-stdin",
            "--scheme",
            "argon2id",
        ],
        "new password 2\n",
    )
    .ok();
    let hash = db.query("SELECT password FROM mailbox")[0][0]
        .clone()
        .unwrap();
    assert!(hash.starts_with("{ARGON2ID}$argon2id$"), "{hash}");
    assert!(mailctl::password::verify(&hash, "new password 2"));
}

fn mailbox_lifecycle_updates_postfixadmin_rows(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    db.run_stdin(
        &["mailbox", "add", "alice@example.org", "--password-stdin"],
        "long enough\n",
    )
    .ok();
    db.run(&[
        "mailbox",
        "update",
        "alice@example.org",
        "--name",
        "Alice",
        "--quota-mb",
        "2",
        "--smtp",
        "false",
    ])
    .ok();
    let row = db.query("SELECT name, quota, smtp_active, active FROM mailbox")[0].clone();
    assert_eq!(
        row,
        ["Alice", "2048000", "0", "1"].map(|s| Some(s.to_string()))
    );
    db.run(&["mailbox", "disable", "alice@example.org"]).ok();
    let active = db.query("SELECT mailbox.active, alias.active FROM mailbox JOIN alias ON alias.address = mailbox.username");
    // The self-alias stays active, so a catch-all cannot swallow a disabled mailbox's mail.
    assert_eq!(active[0], [Some("0".to_string()), Some("1".to_string())]);
    db.run(&["user", "enable", "alice@example.org"]).ok();
    db.run(&["alias", "add", "info@example.org", "alice@example.org"])
        .ok();
    let run = db.run(&["mailbox", "delete", "alice@example.org"]).ok();
    assert!(
        run.stderr.contains("info@example.org"),
        "deleting should name aliases still pointing at it: {}",
        run.stderr
    );
    assert_eq!(
        db.query("SELECT COUNT(*) FROM alias WHERE address = 'alice@example.org'")[0][0].as_deref(),
        Some("0")
    );
}

/// The newest schema version.
const LATEST: i64 = 11;

fn db_migrate_and_status_report_the_schema_version(db: &TestDb) {
    let status = db.run(&["--json", "db", "status"]).ok().json();
    assert_eq!(status["current_version"], 0);
    let all: Vec<i64> = (1..=LATEST).collect();
    assert_eq!(status["pending"], serde_json::json!(all));
    let migrated = db.run(&["--json", "db", "migrate"]).ok().json();
    for (i, version) in all.into_iter().enumerate() {
        assert_eq!(migrated["applied"][i]["version"], version);
    }
    let status = db.run(&["--json", "db", "status"]).ok().json();
    assert_eq!(status["current_version"], LATEST);
    assert_eq!(status["pending"], serde_json::json!([]));
    let again = db.run(&["db", "migrate"]).ok().stdout;
    assert!(again.contains("up to date"), "{again}");
}

/// An existing postfixadmin database (with columns mailctl does not know and a superadmin `ALL` row) is read
/// and written by mailctl without any change to postfixadmin's table definitions.
fn existing_postfixadmin_database_is_adopted_unaltered(db: &TestDb) {
    type Rows = Vec<Vec<Option<String>>>;
    let (ddl, show): (&[&str], fn(&TestDb) -> Rows) = match db.kind {
        Kind::Sqlite => (
            &[
                "CREATE TABLE domain (domain varchar(255) NOT NULL PRIMARY KEY, description varchar(255) NOT NULL, aliases int NOT NULL DEFAULT 0, mailboxes int NOT NULL DEFAULT 0, maxquota bigint NOT NULL DEFAULT 0, quota bigint NOT NULL DEFAULT 0, transport varchar(255) NOT NULL, backupmx int NOT NULL DEFAULT 0, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active int NOT NULL DEFAULT 1, password_expiry int DEFAULT 0, custom_note text)",
                "CREATE TABLE mailbox (username varchar(255) NOT NULL PRIMARY KEY, password varchar(255) NOT NULL, name varchar(255) NOT NULL, maildir varchar(255) NOT NULL, quota bigint NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active int NOT NULL DEFAULT 1, phone varchar(30) NOT NULL DEFAULT '', email_other varchar(255) NOT NULL DEFAULT '', token varchar(255) NOT NULL DEFAULT '', token_validity datetime NOT NULL DEFAULT '2000-01-01 00:00:00', password_expiry datetime NOT NULL DEFAULT '2000-01-01 00:00:00', smtp_active int NOT NULL DEFAULT 1)",
                "CREATE TABLE alias (address varchar(255) NOT NULL PRIMARY KEY, goto text NOT NULL, domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active int NOT NULL DEFAULT 1)",
                "CREATE TABLE alias_domain (alias_domain varchar(255) NOT NULL PRIMARY KEY, target_domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active int NOT NULL DEFAULT 1)",
                "CREATE TABLE admin (username varchar(255) NOT NULL PRIMARY KEY, password varchar(255) NOT NULL)",
            ],
            |db| {
                db.query("SELECT name, sql FROM sqlite_master WHERE tbl_name NOT LIKE 'mailctl_%' ORDER BY name")
            },
        ),
        Kind::Mariadb => (
            &[
                "CREATE TABLE domain (domain varchar(255) NOT NULL, description varchar(255) CHARACTER SET utf8 NOT NULL, aliases int(10) NOT NULL DEFAULT 0, mailboxes int(10) NOT NULL DEFAULT 0, maxquota bigint(20) NOT NULL DEFAULT 0, quota bigint(20) NOT NULL DEFAULT 0, transport varchar(255) NOT NULL, backupmx tinyint(1) NOT NULL DEFAULT 0, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1, password_expiry int DEFAULT 0, custom_note text, PRIMARY KEY (domain)) ENGINE=InnoDB DEFAULT CHARSET=latin1 COMMENT='Postfix Admin - Virtual Domains'",
                "CREATE TABLE mailbox (username varchar(255) NOT NULL, password varchar(255) NOT NULL, name varchar(255) CHARACTER SET utf8 NOT NULL, maildir varchar(255) NOT NULL, quota bigint(20) NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1, phone varchar(30) NOT NULL DEFAULT '', email_other varchar(255) NOT NULL DEFAULT '', token varchar(255) NOT NULL DEFAULT '', token_validity datetime NOT NULL DEFAULT '2000-01-01 00:00:00', password_expiry datetime NOT NULL DEFAULT '2000-01-01 00:00:00', smtp_active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (username), KEY domain (domain)) ENGINE=InnoDB DEFAULT CHARSET=latin1",
                "CREATE TABLE alias (address varchar(255) NOT NULL, goto text NOT NULL, domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (address), KEY domain (domain)) ENGINE=InnoDB DEFAULT CHARSET=latin1",
                "CREATE TABLE alias_domain (alias_domain varchar(255) NOT NULL, target_domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (alias_domain)) ENGINE=InnoDB DEFAULT CHARSET=latin1",
                "CREATE TABLE admin (username varchar(255) NOT NULL, password varchar(255) NOT NULL, PRIMARY KEY (username)) ENGINE=InnoDB",
            ],
            |db| {
                ["admin", "alias", "alias_domain", "domain", "mailbox"]
                    .iter()
                    .flat_map(|t| db.query(&format!("SHOW CREATE TABLE {t}")))
                    .collect()
            },
        ),
    };
    for stmt in ddl {
        db.query(stmt);
    }
    db.query("INSERT INTO domain (domain, description, transport) VALUES ('ALL', '', '')");
    db.query("INSERT INTO domain (domain, description, transport, created, modified) VALUES ('old.example', 'legacy', 'virtual', '2019-05-01 10:00:00', '2019-05-01 10:00:00')");
    db.query("INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain) VALUES ('legacy@old.example', '$1$saltsalt$qjXMvbEw8oaL.CzflDugX/', 'Legacy', 'old.example/legacy/', 0, 'legacy', 'old.example')");
    db.query("INSERT INTO alias (address, goto, domain) VALUES ('legacy@old.example', 'legacy@old.example', 'old.example')");
    let before = show(db);

    let domains = db.run(&["--json", "domain", "list"]).ok().json();
    assert_eq!(
        domains.as_array().unwrap().len(),
        1,
        "ALL must not be listed: {domains}"
    );
    assert_eq!(domains[0]["created"], "2019-05-01T10:00:00Z");
    let mailbox = db
        .run(&["--json", "mailbox", "show", "legacy@old.example"])
        .ok()
        .json();
    assert_eq!(mailbox["password_scheme"], "MD5-CRYPT");
    db.run_stdin(
        &["mailbox", "add", "new@old.example", "--password-stdin"],
        "long enough\n",
    )
    .ok();
    db.run(&["alias", "add", "@old.example", "legacy@old.example"])
        .ok();

    // The one change: postfixadmin's own nullable `mailbox.totp_secret` (its 3.3 upgrade adds it too), and its
    // app password, TOTP exception and vacation tables beside the others.
    let postfixadmin_33 = [
        "mailbox_app_password",
        "mailbox_app_password_username",
        "totp_exception_address",
        "sqlite_autoindex_totp_exception_address_1",
        "vacation",
        "vacation_notification",
        "sqlite_autoindex_vacation_1",
        "sqlite_autoindex_vacation_notification_1",
        "sqlite_sequence",
    ];
    let after: Rows = show(db)
        .into_iter()
        .filter(|row| {
            !postfixadmin_33
                .iter()
                .any(|t| row.first().and_then(|c| c.as_deref()) == Some(*t))
        })
        .map(|row| {
            row.into_iter()
                .map(|cell| {
                    cell.map(|c| {
                        c.replace(", totp_secret varchar(255) DEFAULT NULL", "")
                            .replace("  `totp_secret` varchar(255) DEFAULT NULL,\n", "")
                    })
                })
                .collect()
        })
        .collect();
    assert_eq!(before, after, "postfixadmin's table definitions changed");
    let version = db.query("SELECT MAX(version) FROM mailctl_schema_migrations");
    assert_eq!(version[0][0].as_deref(), Some(LATEST.to_string().as_str()));
}

fn a_postfixadmin_schema_missing_columns_is_reported_plainly(db: &TestDb) {
    // postfixadmin before 3.0 had no smtp_active column.
    db.query("CREATE TABLE mailbox (username varchar(255) NOT NULL PRIMARY KEY, password varchar(255) NOT NULL, name varchar(255) NOT NULL, maildir varchar(255) NOT NULL, quota bigint NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL, created datetime NOT NULL, modified datetime NOT NULL, active int NOT NULL DEFAULT 1)");
    db.run(&["domain", "list"])
        .fails(1, "table mailbox lacks columns mailctl needs");
}

kit::on_both_backends!(
    every_data_command_speaks_json,
    random_passwords_are_shown_once_and_work,
    mailbox_lifecycle_updates_postfixadmin_rows,
    db_migrate_and_status_report_the_schema_version,
    existing_postfixadmin_database_is_adopted_unaltered,
    a_postfixadmin_schema_missing_columns_is_reported_plainly,
);

#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    for args in [&["completions", "bash"][..], &["--help"][..]] {
        let mut child = Command::new(kit::mailctl())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mailctl runs");
        let mut first = [0u8; 64];
        child
            .stdout
            .take()
            .unwrap()
            .read_exact(&mut first)
            .expect("some output");
        // The pipe is closed now (`| head -c 64`).
        let out = child.wait_with_output().expect("mailctl exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn tables_fit_the_width_and_cut_with_an_ellipsis() {
    let db = TestDb::sqlite();
    let description = "the domain of the long-running rowing club and its many committees";
    db.run(&["domain", "add", "example.org", "--description", description])
        .ok();
    let whole = db.run(&["domain", "list"]).ok().stdout;
    assert!(
        whole.contains(description),
        "a pipe gets every value whole: {whole}"
    );
    let mut cmd = db.command(&["domain", "list"]);
    cmd.env("COLUMNS", "80");
    let narrow = kit::run_command(cmd, "").ok().stdout;
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    assert!(
        narrow.contains('…') && narrow.contains("example.org"),
        "{narrow}"
    );
}
