//! The generated Postfix and Dovecot lookup files, run for real: each file's query is taken exactly as written,
//! its `%` variables are filled in the way Postfix and Dovecot fill them, and the SQL is run against the test
//! database (SQLite and MariaDB) to check the answers a mail server would get.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kit::{Kind, TestDb};

const PASSWORD: &str = "correct horse battery";

fn add_mailbox(db: &TestDb, address: &str) {
    db.run_stdin(
        &["mailbox", "add", address, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
}

/// A domain with two mailboxes, a distribution alias, a catch-all, an alias domain, a disabled mailbox, a
/// backup-MX domain and an inactive domain holding a mailbox.
fn provision(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    add_mailbox(db, "alice@example.org");
    add_mailbox(db, "bob@example.org");
    add_mailbox(db, "dave@example.org");
    db.run(&["mailbox", "disable", "dave@example.org"]).ok();
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
    db.run(&["alias-domain", "add", "example.net", "example.org"])
        .ok();
    db.run(&["domain", "add", "backup.example", "--backup-mx"])
        .ok();
    db.run(&["domain", "add", "closed.example"]).ok();
    add_mailbox(db, "carol@closed.example");
    db.run(&["domain", "update", "closed.example", "--inactive"])
        .ok();
}

/// Runs `mailctl config KIND --out DIR` and returns DIR.
fn generate(db: &TestDb, kind: &str) -> PathBuf {
    let dir = db.path(&format!("{kind}-maps"));
    db.run(&["config", kind, "--out", dir.to_str().unwrap()])
        .ok();
    dir
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("cannot read generated {}: {e}", dir.join(name).display()))
}

/// The value of the one `KEY = value` line of a generated file, exactly as written.
#[track_caller]
fn setting(content: &str, key: &str) -> String {
    let prefix = format!("{key} = ");
    let values: Vec<&str> = content
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    assert_eq!(
        values.len(),
        1,
        "expected exactly one '{key} =' line in:\n{content}"
    );
    values[0].to_string()
}

/// The backend prefix of the Postfix map files.
fn map_kind(db: &TestDb) -> &'static str {
    match db.kind {
        Kind::Sqlite => "sqlite",
        Kind::Mariadb => "mysql",
    }
}

/// A lookup key as an SQL string body, the way Postfix and Dovecot escape it (the test keys are plain).
fn sql_quoted(s: &str) -> String {
    assert!(!s.contains('\\'), "test keys have no backslashes: {s}");
    s.replace('\'', "''")
}

/// Expands `%s`, `%u`, `%d` (and `%%`) like Postfix's mysql_table(5)/sqlite_table(5); None when Postfix would
/// suppress the query (an empty local part for `%u`, no domain part for `%d`).
#[track_caller]
fn expand_postfix(query: &str, key: &str) -> Option<String> {
    let (local, domain) = match key.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (key, None),
    };
    let mut out = String::new();
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str(&sql_quoted(key)),
            Some('u') if local.is_empty() => return None,
            Some('u') => out.push_str(&sql_quoted(local)),
            Some('d') => match domain {
                Some(d) if !d.is_empty() => out.push_str(&sql_quoted(d)),
                _ => return None,
            },
            Some('%') => out.push('%'),
            other => panic!("unexpected Postfix expansion %{other:?} in: {query}"),
        }
    }
    Some(out)
}

/// Expands Dovecot's `%u` (and `%n`, `%d`, `%%`) for user `user`.
#[track_caller]
fn expand_dovecot(query: &str, user: &str) -> String {
    expand_dovecot_for(query, user, "imap")
}

/// Like [`expand_dovecot`] for a given service (`%s`): `imap`, `smtp` (Postfix SASL), `lmtp` ...; the client
/// (`%r`) is [`CLIENT`].
fn expand_dovecot_for(query: &str, user: &str, service: &str) -> String {
    expand_dovecot_from(query, user, service, CLIENT)
}

/// The client address `%r` stands for in [`expand_dovecot_for`].
const CLIENT: &str = "192.0.2.10";

/// Like [`expand_dovecot_for`] for a client at `remote` (`%r`).
fn expand_dovecot_from(query: &str, user: &str, service: &str, remote: &str) -> String {
    let (local, domain) = user.rsplit_once('@').unwrap_or((user, ""));
    let mut out = String::new();
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(&sql_quoted(user)),
            Some('n') => out.push_str(&sql_quoted(local)),
            Some('d') => out.push_str(&sql_quoted(domain)),
            Some('s') => out.push_str(&sql_quoted(service)),
            Some('r') => out.push_str(&sql_quoted(remote)),
            Some('%') => out.push('%'),
            other => panic!("unexpected Dovecot expansion %{other:?} in: {query}"),
        }
    }
    out
}

/// The generated Postfix maps of one test database.
struct PostfixMaps<'a> {
    db: &'a TestDb,
    dir: PathBuf,
}

impl PostfixMaps<'_> {
    fn query(&self, map: &str) -> String {
        let name = format!("{}_{map}.cf", map_kind(self.db));
        setting(&read(&self.dir, &name), "query")
    }

    /// What Postfix gets for `key` from `map`: every column of every row, comma-joined; None when not found.
    #[track_caller]
    fn lookup(&self, map: &str, key: &str) -> Option<String> {
        let sql = expand_postfix(&self.query(map), key)?;
        let values: Vec<String> = self
            .db
            .query(&sql)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    #[track_caller]
    fn check(&self, map: &str, key: &str, expected: Option<&str>) {
        assert_eq!(
            self.lookup(map, key).as_deref(),
            expected,
            "{map} lookup of {key:?} (query: {})",
            self.query(map)
        );
    }
}

fn postfix_and_dovecot_lookups_answer_for_mailbox_alias_catch_all_and_alias_domain(db: &TestDb) {
    provision(db);
    let maps = PostfixMaps {
        db,
        dir: generate(db, "postfix"),
    };

    // Which domains Postfix accepts as final destination, and which it relays as backup MX.
    let domains = "virtual_mailbox_domains";
    maps.check(domains, "example.org", Some("example.org"));
    maps.check(domains, "example.net", Some("example.net"));
    maps.check(domains, "unknown.example", None);
    maps.check(domains, "backup.example", None);
    maps.check(domains, "closed.example", None);
    maps.check("relay_domains", "backup.example", Some("backup.example"));
    maps.check("relay_domains", "example.org", None);

    // Mailboxes: only active ones.
    let mailboxes = "virtual_mailbox_maps";
    maps.check(mailboxes, "alice@example.org", Some("example.org/alice/"));
    maps.check(mailboxes, "dave@example.org", None);
    maps.check(mailboxes, "nobody@example.org", None);

    // Aliases: the self-alias wins over the catch-all; the catch-all is looked up as `@domain`.
    let aliases = "virtual_alias_maps";
    maps.check(aliases, "alice@example.org", Some("alice@example.org"));
    maps.check(
        aliases,
        "info@example.org",
        Some("alice@example.org,bob@example.org"),
    );
    maps.check(aliases, "@example.org", Some("alice@example.org"));
    maps.check(aliases, "nobody@example.org", None);

    // The alias domain example.net -> example.org.
    let via_domain = "virtual_alias_domain_maps";
    maps.check(via_domain, "alice@example.net", Some("alice@example.org"));
    maps.check(
        via_domain,
        "info@example.net",
        Some("alice@example.org,bob@example.org"),
    );
    maps.check(via_domain, "nobody@example.net", None);
    maps.check(via_domain, "alice@example.org", None);
    // Postfix suppresses %u queries for an empty local part, so `@example.net` never reaches this map...
    assert_eq!(maps.lookup(via_domain, "@example.net"), None);
    // ...and the catch-all of the target domain is found through the catch-all map with any address instead.
    let catchall = "virtual_alias_domain_catchall_maps";
    maps.check(catchall, "nobody@example.net", Some("alice@example.org"));
    maps.check(catchall, "nobody@example.org", None);
    maps.check(catchall, "nobody@unknown.example", None);
    let via_domain_mailbox = "virtual_alias_domain_mailbox_maps";
    maps.check(
        via_domain_mailbox,
        "bob@example.net",
        Some("example.org/bob/"),
    );
    maps.check(via_domain_mailbox, "dave@example.net", None);
    maps.check(via_domain_mailbox, "nobody@example.net", None);
    maps.check(via_domain_mailbox, "bob@example.org", None);

    // Who may send as an address.
    let senders = "sender_login_maps";
    maps.check(senders, "alice@example.org", Some("alice@example.org"));
    maps.check(
        senders,
        "info@example.org",
        Some("alice@example.org,bob@example.org"),
    );
    maps.check(senders, "nobody@example.org", None);

    // Dovecot.
    let dir = generate(db, "dovecot");
    let conf = read(&dir, "dovecot-sql.conf.ext");
    assert_eq!(setting(&conf, "default_pass_scheme"), "SHA512-CRYPT");
    let dovecot = |key: &str, user: &str| db.query(&expand_dovecot(&setting(&conf, key), user));

    let rows = dovecot("password_query", "alice@example.org");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].len(), 2, "{rows:?}");
    assert_eq!(rows[0][0].as_deref(), Some("alice@example.org"));
    let hash = rows[0][1].clone().unwrap();
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
    assert!(mailctl::password::verify(&hash, PASSWORD));
    assert!(!mailctl::password::verify(&hash, "wrong password"));

    let rows = dovecot("user_query", "alice@example.org");
    let expected = [
        "/var/vmail/example.org/alice/",
        "maildir:/var/vmail/example.org/alice/",
        "5000",
        "5000",
        "*:bytes=0",
    ]
    .map(|s| Some(s.to_string()));
    assert_eq!(rows, [expected.to_vec()]);

    // Dovecot reads the fields by column name: select them by name to prove the names.
    let named = |key: &str, columns: &str, user: &str| {
        let sql = expand_dovecot(&setting(&conf, key), user);
        db.query(&format!("SELECT {columns} FROM ({sql}) AS q"))
    };
    assert_eq!(
        named("password_query", "q.user, q.password", "alice@example.org"),
        [[Some("alice@example.org".to_string()), Some(hash.clone())]]
    );
    assert_eq!(
        named(
            "user_query",
            "q.home, q.mail, q.uid, q.gid, q.quota_rule",
            "alice@example.org"
        ),
        [expected.to_vec()]
    );

    // Disabled mailboxes and mailboxes of inactive domains cannot log in and have no user.
    for user in [
        "dave@example.org",
        "carol@closed.example",
        "nobody@example.org",
    ] {
        assert_eq!(
            dovecot("password_query", user),
            Vec::<Vec<_>>::new(),
            "{user}"
        );
        assert_eq!(dovecot("user_query", user), Vec::<Vec<_>>::new(), "{user}");
    }

    let iterate = expand_dovecot(&setting(&conf, "iterate_query"), "");
    let mut users: Vec<String> = db.query(&iterate).into_iter().flatten().flatten().collect();
    users.sort();
    assert_eq!(users, ["alice@example.org", "bob@example.org"]);
    let mut named_users: Vec<String> = db
        .query(&format!("SELECT q.user FROM ({iterate}) AS q"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    named_users.sort();
    assert_eq!(named_users, users);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_with_credentials_are_private_and_main_cf_names_every_map_by_absolute_path(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    let kind = map_kind(db);
    let postfix = generate(db, "postfix");
    let dovecot = generate(db, "dovecot");

    let mut maps: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(&postfix).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "main.cf.mailctl" {
            assert!(
                name.starts_with(&format!("{kind}_")) && name.ends_with(".cf"),
                "{name}"
            );
            maps.insert(name);
        }
    }
    assert_eq!(maps.len(), 8, "{maps:?}");

    // The files point at this test's database.
    for name in &maps {
        let content = read(&postfix, name);
        match db.kind {
            Kind::Sqlite => assert_eq!(
                setting(&content, "dbpath"),
                db.path("mail.db").display().to_string()
            ),
            Kind::Mariadb => {
                let dbname = db.url.rsplit('/').next().unwrap();
                assert_eq!(setting(&content, "dbname"), dbname);
                assert_eq!(setting(&content, "hosts"), "inet:127.0.0.1:3306");
            }
        }
    }

    #[cfg(unix)]
    {
        let private = if db.kind == Kind::Mariadb {
            0o640
        } else {
            0o644
        };
        for name in &maps {
            assert_eq!(mode(&postfix.join(name)), private, "{name}");
        }
        assert_eq!(mode(&dovecot.join("dovecot-sql.conf.ext")), private);
        assert_eq!(mode(&postfix.join("main.cf.mailctl")), 0o644);
        assert_eq!(mode(&dovecot.join("auth-mailctl.conf.ext")), 0o644);
    }

    // Every map is used by main.cf, by absolute path under the --out directory.
    let main_cf = read(&postfix, "main.cf.mailctl");
    let prefix = format!("proxy:{kind}:");
    let mut referenced = BTreeSet::new();
    for token in main_cf
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split([' ', ',']))
    {
        if let Some(path) = token.strip_prefix(&prefix) {
            let path = Path::new(path);
            assert!(path.is_absolute(), "{}", path.display());
            assert_eq!(path.parent(), Some(postfix.as_path()), "{}", path.display());
            assert!(path.is_file(), "{}", path.display());
            referenced.insert(path.file_name().unwrap().to_str().unwrap().to_string());
        }
    }
    assert_eq!(referenced, maps, "{main_cf}");
    for line in [
        "virtual_mailbox_base = /var/vmail",
        "virtual_uid_maps = static:5000",
        "virtual_gid_maps = static:5000",
    ] {
        assert!(main_cf.lines().any(|l| l == line), "{line}\n{main_cf}");
    }

    // Dovecot's passdb and userdb use the SQL file where it was written.
    let auth = read(&dovecot, "auth-mailctl.conf.ext");
    let args: Vec<&str> = auth
        .lines()
        .filter_map(|l| l.trim().strip_prefix("args = "))
        .collect();
    let sql_file = dovecot.join("dovecot-sql.conf.ext").display().to_string();
    assert_eq!(args.len(), 3, "{auth}");
    assert_eq!(
        [args[0], args[2]],
        [sql_file.as_str(), sql_file.as_str()],
        "{auth}"
    );
    // App passwords: this binary, with the config file of the run, as Dovecot's checkpassword passdb.
    assert!(
        args[1].starts_with('/')
            && args[1].contains(" --config /")
            && args[1].ends_with(" checkpassword"),
        "{auth}"
    );

    // A relative --out is made absolute in the references.
    let mut cmd = db.command(&["config", "postfix", "--out", "relative-maps"]);
    cmd.current_dir(db.dir.path());
    kit::run_command(cmd, "").ok();
    let relative = db.path("relative-maps");
    let main_cf = read(&relative, "main.cf.mailctl");
    let expected = std::fs::canonicalize(&relative).unwrap();
    let paths: Vec<&str> = main_cf
        .split([' ', ',', '\n'])
        .filter_map(|t| t.strip_prefix(&prefix))
        .collect();
    assert_eq!(paths.len(), 8, "{main_cf}");
    for path in paths {
        let path = Path::new(path);
        assert!(path.is_absolute(), "{main_cf}");
        assert_eq!(
            std::fs::canonicalize(path.parent().unwrap()).unwrap(),
            expected
        );
    }
}

fn without_out_files_are_printed_with_headers_or_as_json(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    for kind in ["postfix", "dovecot"] {
        let dir = generate(db, kind);
        let json = db.run(&["--json", "config", kind]).ok().json();
        let object = json.as_object().unwrap();
        assert_eq!(
            object.keys().collect::<Vec<_>>(),
            ["files"],
            "nothing was written: {json}"
        );
        let files = json["files"].as_array().unwrap();
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut names: Vec<String> = files
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(names, on_disk);

        let text = db.run(&["config", kind]).ok().stdout;
        let mut expected = String::new();
        for f in files {
            let file = f.as_object().unwrap();
            let mut fields: Vec<&String> = file.keys().collect();
            fields.sort();
            assert_eq!(fields, ["content", "name", "secret"], "{f}");
            let name = f["name"].as_str().unwrap();
            let content = f["content"].as_str().unwrap();
            let secret = f["secret"].as_bool().unwrap();
            let credentials = db.kind == Kind::Mariadb
                && (name.starts_with("mysql_") || name == "dovecot-sql.conf.ext");
            assert_eq!(secret, credentials, "{name}");
            // Only the references to the map directory differ from what --out wrote.
            let default_dir = match kind {
                "postfix" => "/etc/postfix/mailctl",
                _ => "/etc/dovecot",
            };
            assert_eq!(
                content,
                read(&dir, name).replace(dir.to_str().unwrap(), default_dir),
                "{name}"
            );
            if !expected.is_empty() {
                expected.push('\n');
            }
            expected.push_str(&format!("# ==> {name} <==\n{content}"));
        }
        assert_eq!(text.trim_end(), expected.trim_end());
        let first = match kind {
            "postfix" => format!("# ==> {}_virtual_mailbox_domains.cf <==\n", map_kind(db)),
            _ => "# ==> dovecot-sql.conf.ext <==\n".to_string(),
        };
        assert!(text.starts_with(&first), "{text}");
    }
}

fn disabled_mailboxes_are_refused_not_caught_and_smtp_auth_follows_smtp_active(db: &TestDb) {
    db.run(&["domain", "add", "example.org"]).ok();
    for user in ["alice@example.org", "dave@example.org"] {
        db.run_stdin(
            &["mailbox", "add", user, "--password-stdin"],
            "long enough\n",
        )
        .ok();
    }
    db.run(&["alias", "add", "@example.org", "alice@example.org"])
        .ok();
    db.run(&["mailbox", "disable", "dave@example.org"]).ok();
    db.run(&["mailbox", "update", "alice@example.org", "--smtp", "false"])
        .ok();
    let dir = generate(db, "postfix");
    let maps = PostfixMaps { db, dir };
    // Postfix asks virtual_alias_maps first: dave's own alias row answers (so the catch-all does not), then
    // virtual_mailbox_maps finds no active mailbox and the recipient is refused as unknown.
    maps.check(
        "virtual_alias_maps",
        "dave@example.org",
        Some("dave@example.org"),
    );
    maps.check("virtual_mailbox_maps", "dave@example.org", None);
    maps.check("virtual_alias_maps", "nobody@example.org", None);
    maps.check(
        "virtual_alias_maps",
        "@example.org",
        Some("alice@example.org"),
    );

    let dir = generate(db, "dovecot");
    let conf = read(&dir, "dovecot-sql.conf.ext");
    let query = setting(&conf, "password_query");
    let rows =
        |user: &str, service: &str| db.query(&expand_dovecot_for(&query, user, service)).len();
    assert_eq!(
        rows("alice@example.org", "imap"),
        1,
        "IMAP login still works"
    );
    assert_eq!(
        rows("alice@example.org", "smtp"),
        0,
        "SMTP AUTH refused with smtp_active = 0"
    );
    assert_eq!(
        rows("dave@example.org", "imap"),
        0,
        "disabled mailbox cannot log in"
    );
    // postfixadmin's TOTP rule: with a secret, the main password only from an exception address (for the
    // mailbox, its domain, or everyone).
    db.run(&["mailbox", "totp", "enable", "alice@example.org"])
        .ok();
    let from = |remote: &str| {
        db.query(&expand_dovecot_from(
            &query,
            "alice@example.org",
            "imap",
            remote,
        ))
        .len()
    };
    assert_eq!(from(CLIENT), 0, "TOTP: no main password");
    db.run(&[
        "mailbox",
        "totp",
        "exception",
        "add",
        "198.51.100.7",
        "--for",
        "example.org",
    ])
    .ok();
    assert_eq!(
        from("198.51.100.7"),
        1,
        "from the domain's exception address"
    );
    assert_eq!(from(CLIENT), 0, "from anywhere else still not");
    db.run(&["mailbox", "totp", "exception", "add", CLIENT])
        .ok();
    assert_eq!(from(CLIENT), 1, "an exception for everyone");
    let connect = setting(&conf, "connect");
    if db.kind == kit::Kind::Mariadb {
        assert!(
            !connect.contains("password="),
            "an empty password must be left out: {connect}"
        );
        assert!(connect.contains("user=root"), "{connect}");
    }
}

kit::on_both_backends!(
    disabled_mailboxes_are_refused_not_caught_and_smtp_auth_follows_smtp_active,
    postfix_and_dovecot_lookups_answer_for_mailbox_alias_catch_all_and_alias_domain,
    files_with_credentials_are_private_and_main_cf_names_every_map_by_absolute_path,
    without_out_files_are_printed_with_headers_or_as_json,
);

/// Once `--out` has written the files, `--json` names them but leaves out the content of those holding the
/// database password: it lives in the 0640 files only, not in a terminal or a provisioning script's log.
#[test]
fn json_after_out_leaves_the_database_password_in_the_files_only() {
    let db = TestDb::sqlite();
    let secret = "Sup3r-S3cret-pw";
    let url = format!("mysql://mailuser:{secret}@127.0.0.1:3306/mail");
    for kind in ["postfix", "dovecot"] {
        let dir = db.path(&format!("{kind}-secret"));
        let run = db
            .run(&[
                "--database-url",
                &url,
                "--json",
                "config",
                kind,
                "--out",
                dir.to_str().unwrap(),
            ])
            .ok();
        assert!(!run.stdout.contains(secret), "{kind}: {}", run.stdout);
        assert!(!run.stderr.contains(secret), "{kind}: {}", run.stderr);
        let json = run.json();
        let files = json["files"].as_array().unwrap();
        let (secret_files, public): (Vec<_>, Vec<_>) =
            files.iter().partition(|f| f["secret"] == true);
        assert!(!secret_files.is_empty(), "{kind}: {json}");
        for f in &secret_files {
            let name = f["name"].as_str().unwrap();
            assert!(f.get("content").is_none(), "{kind}: {f}");
            assert!(
                read(&dir, name).contains(secret),
                "{name} holds the password"
            );
        }
        for f in &public {
            let name = f["name"].as_str().unwrap();
            assert_eq!(f["content"].as_str().unwrap(), read(&dir, name), "{name}");
        }
    }
}
