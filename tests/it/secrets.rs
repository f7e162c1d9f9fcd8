//! Stored secrets stay where they are stored: password hashes, plain-text passwords and DKIM private keys never
//! show in what a command prints (table or `--json`) nor in the daemon's debug log, except where the command
//! exists to hand them out (`export` for a backup, `dkim export` into a 0600 file, a password mailctl
//! generated, shown once). Files that hold secrets are created owner-only (or 0640 for the configs other
//! programs read), and a world-readable config file holding the database password draws one warning.
//!
//! The forbidden strings are read from the database and the exported key files, not written down here, so a
//! leak of any real hash or key line fails the test; positive controls prove the same matcher does find them
//! where they are meant to be.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kit::serve::mail::message;
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;
use kit::{Run, TestDb};

/// Passwords set through `--password-stdin`, one per mailbox, all distinct.
const MAILBOXES: [(&str, &str, &str); 4] = [
    ("alice@example.test", "alice-Pw-7730-plain", "SHA512-CRYPT"),
    ("bob@example.test", "bob-Pw-1942-plain", "BLF-CRYPT"),
    ("carol@example.org", "carol-Pw-5521-plain", "ARGON2ID"),
    ("dave@example.org", "dave-Pw-8080-plain", "SHA512-CRYPT"),
];
/// Dave's password after `mailbox passwd`.
const DAVE_NEW: &str = "dave-New-Pw-3141";
/// Tried at AUTH and refused; a log must not keep it either.
const WRONG: &str = "not-Alices-Pw-2718";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// What must never be printed, each with a label saying what it is.
#[derive(Default)]
struct Secrets(BTreeSet<(String, String)>);

impl Secrets {
    fn add(&mut self, label: String, value: &str) {
        // Short fragments could occur by chance; every real secret here is longer.
        if value.len() >= 16 {
            self.0.insert((label, value.to_string()));
        }
    }

    /// Every stored hash (whole, without its `{SCHEME}` prefix, and its digest) and every line of every
    /// stored private key that is not also part of the public key.
    fn collect(&mut self, db: &TestDb) {
        for row in db.query("SELECT username, password FROM mailbox") {
            let (user, hash) = (row[0].clone().unwrap(), row[1].clone().unwrap());
            self.add(format!("hash of {user}"), &hash);
            if let Some((_, bare)) = hash.split_once('}') {
                self.add(format!("hash of {user} (no prefix)"), bare);
            }
            let digest = hash.rsplit('$').next().unwrap_or_default();
            self.add(format!("hash digest of {user}"), digest);
        }
        for row in db.query("SELECT selector, private_key, public_key FROM mailctl_dkim_keys") {
            let (selector, pem, public) = (
                row[0].clone().unwrap(),
                row[1].clone().unwrap_or_default(),
                row[2].clone().unwrap_or_default(),
            );
            for (i, line) in key_lines(&pem).into_iter().enumerate() {
                if !public.contains(line) {
                    self.add(format!("line {i} of private key {selector}"), line);
                }
            }
        }
    }

    /// Panics naming every output that contains a secret.
    #[track_caller]
    fn assert_absent(&self, outputs: &[(String, String)]) {
        let mut leaks = Vec::new();
        for (what, text) in outputs {
            for (label, secret) in &self.0 {
                if text.contains(secret.as_str()) {
                    leaks.push(format!("{what} shows the {label}"));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets printed:\n{}", leaks.join("\n"));
    }
}

/// The body lines of a PEM key.
fn key_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

/// Runs `args` with and without `--json`, asserts success, and records both outputs.
fn both(db: &TestDb, args: &[&str], outputs: &mut Vec<(String, String)>) {
    for json in [false, true] {
        let mut all = Vec::new();
        if json {
            all.push("--json");
        }
        all.extend_from_slice(args);
        record(outputs, &all.join(" "), db.run(&all).ok());
    }
}

fn record(outputs: &mut Vec<(String, String)>, what: &str, run: Run) {
    outputs.push((format!("`{what}` stdout"), run.stdout));
    outputs.push((format!("`{what}` stderr"), run.stderr));
}

fn provision(db: &TestDb, outputs: &mut Vec<(String, String)>) -> String {
    for domain in ["example.test", "example.org"] {
        record(
            outputs,
            "domain add",
            db.run(&["domain", "add", domain]).ok(),
        );
    }
    for (address, password, scheme) in MAILBOXES {
        let run = db
            .run_stdin(
                &[
                    "mailbox",
                    "add",
                    address,
                    "--password-stdin",
                    "--scheme",
                    scheme,
                ],
                &format!("{password}\n"),
            )
            .ok();
        record(outputs, &format!("mailbox add {address}"), run);
    }
    // A generated password is the one plain text mailctl prints: once, because it was asked to make one.
    let generated = db
        .run(&[
            "--json",
            "mailbox",
            "add",
            "erin@example.org",
            "--random-password",
        ])
        .ok()
        .json()["generated_password"]
        .as_str()
        .expect("the generated password is shown")
        .to_string();
    assert!(generated.len() >= 16, "{generated}");
    record(
        outputs,
        "dkim generate example.test",
        db.run(&["dkim", "generate", "example.test", "--selector", "t1"])
            .ok(),
    );
    record(
        outputs,
        "dkim generate example.org",
        db.run(&[
            "--json",
            "dkim",
            "generate",
            "example.org",
            "--selector",
            "o1",
            "--algorithm",
            "ed25519",
        ])
        .ok(),
    );
    record(
        outputs,
        "dkim rotate example.test",
        db.run(&["dkim", "rotate", "example.test", "--selector", "t2"])
            .ok(),
    );
    generated
}

#[test]
fn no_command_or_log_line_shows_a_hash_a_password_or_a_private_key() {
    let db = TestDb::sqlite();
    let mut outputs = Vec::new();
    let mut secrets = Secrets::default();
    let generated = provision(&db, &mut outputs);
    secrets.collect(&db);
    for (address, password, _) in MAILBOXES {
        secrets.add(format!("password of {address}"), password);
    }
    secrets.add("password of dave (new)".into(), DAVE_NEW);
    secrets.add("refused password".into(), WRONG);
    secrets.add("generated password of erin".into(), &generated);

    // Changing a password and retiring a key: the old secrets stay forbidden, the new ones join them.
    let run = db
        .run_stdin(
            &["mailbox", "passwd", "dave@example.org", "--password-stdin"],
            &format!("{DAVE_NEW}\n"),
        )
        .ok();
    record(&mut outputs, "mailbox passwd", run);
    secrets.collect(&db);

    let reads: &[&[&str]] = &[
        &["domain", "list"],
        &["domain", "show", "example.test"],
        &["mailbox", "list"],
        &["mailbox", "list", "example.org"],
        &["mailbox", "show", "alice@example.test"],
        &["mailbox", "show", "carol@example.org"],
        &["mailbox", "update", "bob@example.test", "--name", "Bob B"],
        &["alias", "list"],
        &["alias-domain", "list"],
        &["dkim", "list"],
        &["dkim", "list", "example.org"],
        &["dkim", "show", "example.test"],
        &["dkim", "show", "example.test", "--selector", "t2"],
        &["dkim", "show", "example.org", "--format", "plain"],
        &["dkim", "show", "example.org", "--format", "json"],
        &["dkim", "show", "example.org", "--format", "zone"],
        &["dns", "records", "example.test"],
        &["dns", "records", "example.org", "--format", "json"],
        &["config", "postfix"],
        &["config", "dovecot"],
        &["config", "systemd"],
        &["db", "status"],
    ];
    for args in reads {
        both(&db, args, &mut outputs);
    }
    // Signing uses the private key and prints only the signature.
    let letter = message(
        "alice@example.test",
        "x@elsewhere.test",
        "sign",
        "s1@example.test",
    );
    let signed = db
        .run_stdin(
            &["dkim", "sign", "--domain", "example.test"],
            &String::from_utf8(letter).unwrap(),
        )
        .ok();
    assert!(
        signed.stdout.starts_with("DKIM-Signature:"),
        "{}",
        signed.stdout
    );
    record(&mut outputs, "dkim sign", signed);

    // `dkim export` is the explicit ask for a private key: into its file, not onto the terminal.
    let pem_path = db.path("t1.pem");
    let run = db
        .run(&[
            "dkim",
            "export",
            "example.test",
            "t1",
            "--out",
            pem_path.to_str().unwrap(),
        ])
        .ok();
    record(&mut outputs, "dkim export", run);
    let exported = std::fs::read_to_string(&pem_path).unwrap();
    let t1_lines: Vec<&(String, String)> = secrets
        .0
        .iter()
        .filter(|(label, _)| label.ends_with("private key t1"))
        .collect();
    assert!(t1_lines.len() >= 20, "an RSA-2048 PEM has ~26 lines");
    for (label, line) in &t1_lines {
        assert!(
            exported.contains(line.as_str()),
            "the exported file lacks the {label}"
        );
    }

    // `export` is the explicit ask for the hashes: a backup that `import` can restore logins from.
    let backup = db.run(&["export", "--format", "csv"]).ok().stdout;
    for row in db.query("SELECT password FROM mailbox") {
        let hash = row[0].clone().unwrap();
        assert!(backup.contains(&hash), "export lacks {hash}");
    }

    let log = serve_and_submit(&db, &mut outputs);
    outputs.push(("the daemon's log (-vv)".into(), log));

    // The matcher has teeth: hashes of five mailboxes (plus dave's old one), both live keys' lines, the
    // plain texts, and what AUTH carried.
    assert!(secrets.0.len() > 60, "only {} secrets", secrets.0.len());
    for (address, password, _) in MAILBOXES {
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{address}\0{password}"));
        secrets.add(format!("AUTH PLAIN token of {address}"), &plain);
        let login = base64::engine::general_purpose::STANDARD.encode(password);
        secrets.add(format!("AUTH LOGIN password of {address}"), &login);
    }
    secrets.assert_absent(&outputs);
}

/// Starts `serve -vv` on `db`, submits with AUTH LOGIN and AUTH PLAIN (after a refused password), has both
/// messages DKIM-signed and queued, delivers one from outside, waits for the first delivery attempt, checks
/// the database files' modes while it runs, and returns the log. Queue listings join `outputs`.
fn serve_and_submit(db: &TestDb, outputs: &mut Vec<(String, String)>) -> String {
    let spool = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        verbose: 2,
        ..ServeOptions::default()
    }
    .server_key(
        "queue.spool_dir",
        toml_string(&spool.path().to_string_lossy()),
    );
    let mut server = TestServer::start(db, options);

    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain("alice@example.test", WRONG)
        .expect(535, "5.7.8");
    c.command("AUTH LOGIN").expect(334, "");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    c.command(&b64("alice@example.test")).expect(334, "");
    c.command(&b64(MAILBOXES[0].1)).expect(235, "");
    let letter = message(
        "alice@example.test",
        "friend@elsewhere.test",
        "rsa",
        "m1@example.test",
    );
    c.send_mail(
        "alice@example.test",
        &["friend@elsewhere.test", "bob@example.test"],
        &letter,
    )
    .expect(250, "");
    c.command("QUIT");

    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain("carol@example.org", MAILBOXES[2].1)
        .expect(235, "");
    let letter = message(
        "carol@example.org",
        "friend@elsewhere.test",
        "ed25519",
        "m2@example.org",
    );
    c.send_mail("carol@example.org", &["friend@elsewhere.test"], &letter)
        .expect(250, "");
    c.command("QUIT");

    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.elsewhere.test");
    let letter = message(
        "someone@elsewhere.test",
        "bob@example.test",
        "inbound",
        "m3@elsewhere.test",
    );
    c.send_mail("someone@elsewhere.test", &["bob@example.test"], &letter)
        .expect(250, "");
    c.command("QUIT");
    assert_eq!(server.inbox("bob@example.test").len(), 2);

    // While the daemon holds the database open, its WAL files are the owner's alone, like the database.
    for name in ["mail.db", "mail.db-wal", "mail.db-shm"] {
        assert_eq!(mode(&db.path(name)), 0o600, "{name}");
    }

    // Both messages wait for elsewhere.test (its DNS does not answer); the first attempt ran through the
    // outbound code at debug level before the log is read.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let rows = server.run(&["--json", "queue", "list"]).ok().json();
        let rows = rows.as_array().unwrap().clone();
        if rows.len() == 2 && rows.iter().all(|r| r["attempts"].as_u64() >= Some(1)) {
            break rows
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "queue not attempted in time: {rows:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut signers = Vec::new();
    for id in &ids {
        for json in [false, true] {
            let mut args = vec!["queue", "show", id.as_str(), "--body"];
            if json {
                args.insert(0, "--json");
            }
            let run = server.run(&args).ok();
            if json {
                signers.push(
                    run.json()["dkim"]
                        .as_str()
                        .unwrap_or("unsigned")
                        .to_string(),
                );
            } else {
                assert!(run.stdout.contains("DKIM-Signature:"), "{}", run.stdout);
            }
            record(outputs, &args.join(" "), run);
        }
    }
    signers.sort();
    assert_eq!(
        signers,
        [
            "d=example.org s=o1 a=ed25519-sha256",
            "d=example.test s=t1 a=rsa-sha256"
        ]
    );
    record(
        outputs,
        "serve --check-config",
        server.run(&["serve", "--check-config"]).ok(),
    );
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let log = server.log();
    assert!(
        log.contains("authentication failed") && log.contains("authenticated"),
        "{log}"
    );
    assert!(log.contains("DEBUG"), "debug logging was on: {log}");
    log
}

/// `config.toml` for `db` with `text`, at `mode`.
fn write_config(db: &TestDb, text: &str, mode: u32) -> std::path::PathBuf {
    let path = db.path("mailctl.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn a_world_readable_config_with_the_database_password_draws_one_warning() {
    let db = TestDb::sqlite();
    db.run(&["domain", "add", "example.test"]).ok();
    let secret = "mysql://mailctl:Cfg-Secr3t-77@db.example.test:3306/mail";
    let with_password = format!("[database]\nurl = {}\n", toml_string(secret));
    // The environment's URL (the test database) wins; the file still holds the password.
    let path = write_config(&db, &with_password, 0o644);
    let warned = db.run(&["domain", "list"]).ok();
    let lines: Vec<&str> = warned.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", warned.stderr);
    let expected_start = format!(
        "warning: config file {} is readable by every user",
        path.display()
    );
    assert!(lines[0].starts_with(&expected_start), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("chmod 640 {}", path.display())),
        "{}",
        lines[0]
    );
    assert!(
        !warned.stderr.contains("Cfg-Secr3t-77"),
        "{}",
        warned.stderr
    );
    let json = db.run(&["--json", "domain", "list"]).ok();
    assert_eq!(json.stderr, warned.stderr, "the warning is on stderr only");
    assert_eq!(json.json()[0]["domain"], "example.test");

    write_config(&db, &with_password, 0o640);
    let quiet = db.run(&["domain", "list"]).ok();
    assert_eq!(quiet.stderr, "", "0640: nothing to warn about");
    assert_eq!(quiet.stdout, warned.stdout, "same output, same exit code");

    for url in [
        "mysql://mailctl@db.example.test:3306/mail",
        "mysql://mailctl:@db.example.test:3306/mail",
        "sqlite:///var/lib/mailctl/mailctl.db",
    ] {
        write_config(
            &db,
            &format!("[database]\nurl = {}\n", toml_string(url)),
            0o644,
        );
        let run = db.run(&["domain", "list"]).ok();
        assert_eq!(run.stderr, "", "{url}: no password, no warning");
    }

    // The daemon logs it as a warning (its stderr is its log), and the exit code is still the failure's own.
    let options = ServeOptions {
        database_url: Some("mysql://mailctl:Cfg-Secr3t-77@127.0.0.1:1/mail".into()),
        ..ServeOptions::default()
    };
    let server = TestServer::configure(&db, options);
    std::fs::set_permissions(&server.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = server.run(&["serve", "--listen", "smtp=127.0.0.1:0"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("mailctl::config")
            && warnings[0].contains(&format!("chmod 640 {}", server.config.display())),
        "{}",
        warnings[0]
    );
    assert!(
        run.stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: cannot reach the database")
    );
    assert!(!run.stderr.contains("Cfg-Secr3t-77"), "{}", run.stderr);
}

#[test]
fn files_holding_secrets_are_created_for_their_owner_only() {
    let db = TestDb::sqlite();
    db.run(&["domain", "add", "example.test"]).ok();
    assert_eq!(mode(&db.path("mail.db")), 0o600, "hashes and DKIM keys");
    db.run(&[
        "dkim",
        "generate",
        "example.test",
        "--selector",
        "s1",
        "--algorithm",
        "ed25519",
    ])
    .ok();
    let export = |path: &Path, force: bool| {
        let mut args = vec![
            "dkim",
            "export",
            "example.test",
            "s1",
            "--out",
            path.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        db.run(&args)
    };
    let fresh = db.path("fresh.pem");
    export(&fresh, false).ok();
    assert_eq!(mode(&fresh), 0o600);
    assert!(
        std::fs::read_to_string(&fresh)
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // Overwriting a file that anyone could read replaces it; it does not inherit the old mode.
    let old = db.path("old.pem");
    std::fs::write(&old, "old").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    export(&old, false).fails(1, "exists");
    export(&old, true).ok();
    assert_eq!(mode(&old), 0o600);
    assert_eq!(std::fs::read(&old).unwrap(), std::fs::read(&fresh).unwrap());

    // A symlink at the target is replaced, never written through.
    let victim = db.path("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = db.path("link.pem");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    export(&link, true).ok();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(
        !std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mode(&link), 0o600);

    // The Postfix/Dovecot files carry the database password by necessity: 0640 on disk, not on the terminal.
    let url = "mysql://mailctl:Map-Secr3t-99@127.0.0.1:3306/mail";
    for kind in ["postfix", "dovecot"] {
        let dir = db.path(&format!("{kind}-out"));
        let run = db
            .run(&[
                "--database-url",
                url,
                "config",
                kind,
                "--out",
                dir.to_str().unwrap(),
            ])
            .ok();
        assert!(!run.stdout.contains("Map-Secr3t-99"), "{}", run.stdout);
        let mut with_password = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if std::fs::read_to_string(&path)
                .unwrap()
                .contains("Map-Secr3t-99")
            {
                with_password += 1;
                assert_eq!(mode(&path), 0o640, "{}", path.display());
            } else {
                assert_eq!(mode(&path), 0o644, "{}", path.display());
            }
        }
        assert!(
            with_password >= 1,
            "{kind}: the password went into the files"
        );
    }
}
