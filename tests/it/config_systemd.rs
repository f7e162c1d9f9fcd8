//! `mailctl config systemd`: the unit that runs `mailctl serve` carries the hardening, follows the config
//! (config file, Maildir root, database), writes where asked, refuses bad arguments in one line, and passes
//! `systemd-analyze verify` where that tool exists.

use std::path::Path;

use kit::{Run, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_mailctl");

/// Runs mailctl with `config` as the config file and no database URL from the environment, so the file's
/// `[database] url` (or the default) applies, as it will for the service.
fn run_with_config(db: &TestDb, config: &str, args: &[&str]) -> Run {
    std::fs::write(db.path("mailctl.toml"), config).unwrap();
    let mut cmd = db.command(args);
    cmd.env_remove("MAILCTL_DATABASE_URL");
    kit::run_command(cmd, "")
}

/// The values of every `KEY=` line of a unit.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect()
}

#[track_caller]
fn one<'a>(unit: &'a str, key: &str) -> &'a str {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "expected exactly one {key}= line in:\n{unit}");
    v[0]
}

#[test]
fn the_unit_is_hardened_and_runs_serve_with_this_config() {
    let db = TestDb::sqlite();
    let unit = db.run(&["config", "systemd"]).ok().stdout;
    let config = db.path("mailctl.toml");
    assert_eq!(
        one(&unit, "ExecStart"),
        format!("{BIN} --config {} serve", config.display())
    );
    for (key, value) in [
        ("Type", "simple"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("User", "mailctl"),
        ("Group", "mailctl"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LimitNOFILE", "65536"),
        ("KillSignal", "SIGTERM"),
        ("TimeoutStopSec", "60"),
        ("After", "network-online.target"),
        ("Wants", "network-online.target"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(one(&unit, key), value, "{key}");
    }
    // The test database lives in the test's directory; the Maildirs at the default root.
    let db_dir = db.path("mail.db").parent().unwrap().to_path_buf();
    assert_eq!(
        one(&unit, "ReadWritePaths"),
        format!("/var/vmail /var/spool/mailctl {}", db_dir.display())
    );
    for step in [
        "useradd --system --uid 5000",
        "systemctl daemon-reload",
        "systemctl enable --now mailctl.service",
    ] {
        assert!(
            unit.contains(step),
            "install comment lacks {step:?}:\n{unit}"
        );
    }
    for line in unit.lines() {
        assert!(
            line.is_empty() || line.starts_with('#') || line.starts_with('[') || line.contains('='),
            "not a unit-file line: {line:?}"
        );
    }
}

#[test]
fn read_write_paths_and_ordering_follow_the_config() {
    let db = TestDb::sqlite();
    let unit = run_with_config(
        &db,
        "[database]\nurl = \"sqlite:///var/lib/mailctl/mailctl.db\"\n[mail]\nvmail_root = \"/srv/mail\"\n",
        &["config", "systemd", "--user", "vmail", "--binary", "/usr/local/bin/mailctl"],
    )
    .ok()
    .stdout;
    assert_eq!(
        one(&unit, "ReadWritePaths"),
        "/srv/mail /var/spool/mailctl /var/lib/mailctl"
    );
    assert_eq!(one(&unit, "User"), "vmail");
    assert_eq!(one(&unit, "Group"), "vmail");
    assert!(one(&unit, "ExecStart").starts_with("/usr/local/bin/mailctl --config "));
    assert_eq!(one(&unit, "After"), "network-online.target");

    // MariaDB: ordered after its server, and only the Maildirs are writable (nothing is contacted).
    let unit = run_with_config(
        &db,
        "[database]\nurl = \"mysql://mail:secret@127.0.0.1:3306/mail\"\n[mail]\nvmail_root = \"/srv/mail\"\n\
         vmail_uid = 2000\nvmail_gid = 2001\n",
        &["config", "systemd"],
    )
    .ok()
    .stdout;
    assert_eq!(one(&unit, "ReadWritePaths"), "/srv/mail /var/spool/mailctl");
    assert!(one(&unit, "After").contains("mariadb.service"), "{unit}");
    assert!(unit.contains("--uid 2000"), "{unit}");
    assert!(unit.contains("--gid 2001"), "{unit}");
    assert!(
        !unit.contains("secret"),
        "the unit must not carry the database password"
    );

    // LMTP delivery writes no Maildirs itself, and a database queue needs no spool directory.
    let unit = run_with_config(
        &db,
        "[database]\nurl = \"mysql://mail@127.0.0.1/mail\"\n[server]\ndelivery = \"lmtp:127.0.0.1:24\"\n\
         [server.queue]\nbackend = \"database\"\n",
        &["config", "systemd"],
    )
    .ok()
    .stdout;
    assert!(values(&unit, "ReadWritePaths").is_empty(), "{unit}");

    // Certificates from ACME are written to its directory.
    let run = run_with_config(
        &db,
        "[database]\nurl = \"mysql://mail@127.0.0.1/mail\"\n[server]\ndelivery = \"lmtp:127.0.0.1:24\"\n\
         [server.queue]\nbackend = \"database\"\n[server.acme]\ndirectory = \"https://ca.test/dir\"\n\
         challenge = \"http-01\"\nhttp_listen = \"[::]:80\"\n",
        &["config", "systemd"],
    )
    .ok();
    assert_eq!(one(&run.stdout, "ReadWritePaths"), "/var/lib/mailctl/acme");
    assert!(
        run.stderr
            .contains("install -d -m 700 -o mailctl /var/lib/mailctl/acme"),
        "{}",
        run.stderr
    );
}

#[test]
fn out_writes_the_unit_file_and_json_names_it() {
    let db = TestDb::sqlite();
    let dir = db.path("units");
    let run = db
        .run(&["config", "systemd", "--out", dir.to_str().unwrap()])
        .ok();
    let file = dir.join("mailctl.service");
    assert_eq!(run.stdout.trim(), format!("wrote {}", file.display()));
    let unit = std::fs::read_to_string(&file).unwrap();
    assert_eq!(one(&unit, "ProtectSystem"), "strict");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    let json = db
        .run(&[
            "--json",
            "config",
            "systemd",
            "--out",
            dir.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(json["files"][0]["name"], "mailctl.service");
    assert_eq!(json["files"][0]["content"].as_str().unwrap(), unit);
    assert_eq!(json["written_to"], dir.to_str().unwrap());
}

#[test]
fn bad_arguments_are_one_line_usage_errors() {
    let db = TestDb::sqlite();
    for (args, needle) in [
        (&["--user", "Mail Ctl"][..], "--user"),
        (&["--user", "root"][..], "root"),
        (&["--user", ""][..], "--user"),
        (&["--binary", "bin/mailctl"][..], "--binary"),
        (&["--binary", "/opt/mail ctl/mailctl"][..], "--binary"),
    ] {
        let mut all = vec!["config", "systemd"];
        all.extend_from_slice(args);
        db.run(&all).fails(2, needle);
    }
    run_with_config(
        &db,
        "[mail]\nvmail_root = \"vmail\"\n",
        &["config", "systemd"],
    )
    .fails(2, "vmail_root");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let tool = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("systemd-analyze is not installed (package systemd; .ci/run installs it)");
    let db = TestDb::sqlite();
    let dir = db.path("units");
    db.run(&["config", "systemd", "--out", dir.to_str().unwrap()])
        .ok();
    let out = std::process::Command::new(tool)
        .args(["verify", "--man=no"])
        .arg(dir.join("mailctl.service"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about the sandbox of the machine running the test (no systemd as PID 1) are not findings.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("mailctl.service"))
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "systemd-analyze verify failed ({}):\n{stderr}",
        out.status
    );
}
