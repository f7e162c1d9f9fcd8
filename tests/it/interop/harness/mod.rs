//! The harness of the interop tests (`tests/it/interop/`): private instances of the real Postfix and Dovecot (and swaks) next to
//! `mailctl serve`, all on loopback and unprivileged ports, with every config, queue, state and log file
//! under one directory per test ([`Site`]), against one MariaDB database per test provisioned with the real
//! `mailctl` binary.
//!
//! The programs must be installed (Debian: postfix postfix-mysql dovecot-core dovecot-imapd dovecot-lmtpd
//! dovecot-mysql swaks libnet-ssleay-perl postsrsd python3-dkim) and the tests run as root, as Postfix's master and Dovecot's do.
//! Their packaged services are never used (nothing binds 25, 143, ...). When something is missing, a test
//! fails naming it ([`setup`]).
//!
//! Mail is owned by a dedicated unprivileged user ([`VMAIL_USER`]): `mailctl serve` is started as root and
//! switches to it (`[server] user`), Dovecot's userdb answers its uid and gid (`[mail] vmail_uid` /
//! `vmail_gid`, as `mailctl config dovecot` writes them), so both write the same Maildirs as in production.

pub mod dovecot;
pub mod imap;
pub mod postfix;
pub mod serve;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::{Run, TestDb, run_command};

/// The password of every mailbox the tests create.
pub const PASSWORD: &str = "correct horse battery";
/// The unprivileged user that owns the Maildirs (exists on every Debian system).
pub const VMAIL_USER: &str = "nobody";
/// The full path of program `name` (PATH, then the sbin directories a non-root PATH lacks).
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What a test needs besides MariaDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// postfix with the mysql map type (postfix, postfix-mysql).
    Postfix,
    /// dovecot with imap, lmtp and the mysql SQL driver (dovecot-core, -imapd, -lmtpd, -mysql).
    Dovecot,
    /// swaks (with Net::SSLeay for --tls).
    Swaks,
    /// postsrsd (the SRS daemon Postfix setups use).
    Postsrsd,
    /// dkimpy's Python module (python3-dkim), which verifies DKIM and ARC.
    Dkimpy,
    /// pymilter (python3-milter): milters in Python over Sendmail's own libmilter.
    Pymilter,
    /// rspamd, whose proxy worker is a milter.
    Rspamd,
    /// OpenDKIM, the signing milter.
    Opendkim,
    /// pebble, Let's Encrypt's ACME test server.
    Pebble,
}

impl Need {
    /// Why this is not usable here, if it is not.
    fn missing(self) -> Option<String> {
        let files: &[(&str, &str)] = match self {
            Need::Postfix => &[
                ("/usr/sbin/postfix", "postfix"),
                ("/usr/sbin/postconf", "postfix"),
            ],
            Need::Dovecot => &[
                ("/usr/sbin/dovecot", "dovecot-core"),
                ("/usr/lib/dovecot/imap", "dovecot-imapd"),
                ("/usr/lib/dovecot/lmtp", "dovecot-lmtpd"),
                (
                    "/usr/lib/dovecot/modules/auth/libdriver_mysql.so",
                    "dovecot-mysql",
                ),
            ],
            Need::Swaks => &[],
            Need::Postsrsd => &[("/usr/sbin/postsrsd", "postsrsd")],
            Need::Dkimpy => &[(
                "/usr/lib/python3/dist-packages/dkim/__init__.py",
                "python3-dkim",
            )],
            Need::Pymilter => &[(
                "/usr/lib/python3/dist-packages/Milter/__init__.py",
                "python3-milter",
            )],
            Need::Rspamd => &[("/usr/bin/rspamd", "rspamd")],
            Need::Opendkim => &[("/usr/sbin/opendkim", "opendkim")],
            Need::Pebble => &[("/usr/bin/pebble", "pebble")],
        };
        for (file, package) in files {
            if !Path::new(file).exists() {
                return Some(format!("{file} is not installed (package {package})"));
            }
        }
        match self {
            Need::Postfix => {
                // `postconf -m` needs a main.cf; a package installed with "No configuration" has none.
                let dir = tempfile::tempdir().ok()?;
                std::fs::write(dir.path().join("main.cf"), "").ok()?;
                let out = Command::new("/usr/sbin/postconf")
                    .arg("-c")
                    .arg(dir.path())
                    .arg("-m")
                    .output()
                    .ok()?;
                let types = String::from_utf8_lossy(&out.stdout);
                (!types.lines().any(|l| l.trim() == "mysql"))
                    .then(|| "postfix has no mysql map type (package postfix-mysql)".to_string())
            }
            Need::Swaks => {
                if program("swaks").is_none() {
                    return Some("swaks is not installed (package swaks)".into());
                }
                // swaks --tls needs Net::SSLeay (only recommended by the swaks package).
                let ssl = Command::new("perl")
                    .args(["-MNet::SSLeay", "-e", "1"])
                    .stderr(Stdio::null())
                    .status();
                (!ssl.is_ok_and(|s| s.success()))
                    .then(|| "Net::SSLeay is not installed (package libnet-ssleay-perl)".into())
            }
            Need::Dovecot
            | Need::Postsrsd
            | Need::Dkimpy
            | Need::Pymilter
            | Need::Rspamd
            | Need::Opendkim
            | Need::Pebble => None,
        }
    }
}

/// The test's database, after checking that this process is root and that the programs `needs` names are
/// installed; fails the test, naming what is missing, otherwise (the tests are `#[ignore]`d by default, so
/// running them is asking for them).
#[track_caller]
pub fn setup(needs: &[Need]) -> TestDb {
    if !kit::os::is_root() {
        panic!("interop test: not running as root (Postfix's master and Dovecot start as root)");
    }
    for need in needs {
        if let Some(why) = need.missing() {
            panic!("interop test: {why}");
        }
    }
    TestDb::mariadb()
}

/// A user's uid and primary gid, from `id`.
pub fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("run id");
        assert!(out.status.success(), "no user {user} on this system");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// `chown uid:gid path`.
pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// `chmod mode path`.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A loopback port nothing listens on right now (bound, then released for the program to take).
pub fn free_port() -> u16 {
    kit::daemon::free_port(&[Ipv4Addr::LOCALHOST])
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Polls `done` every 50 ms for up to `timeout`; false when it never held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections on `addr`.
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Runs `program args` to completion (at most `timeout`), returning its exit code and output.
pub fn run_tool(program: &Path, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    kit::run_with_timeout(cmd, timeout)
}

/// One test's world: a directory every program may read (0755, unlike the usual 0700 temp directories:
/// Postfix and Dovecot drop privileges), the database, and the mailctl config that provisions it and that
/// `mailctl config postfix|dovecot` and `mailctl serve` read: `[database] url` and `[mail]` with the Maildir
/// root under the directory, owned by [`VMAIL_USER`].
pub struct Site {
    /// The private directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The database.
    pub db: TestDb,
    /// `[mail] vmail_root`.
    pub vmail_root: PathBuf,
    /// The uid and gid of [`VMAIL_USER`] (`[mail] vmail_uid` / `vmail_gid`).
    pub vmail: (u32, u32),
    /// The mailctl config file for provisioning and generating configs.
    pub config: PathBuf,
}

impl Site {
    /// A site on `db` (MariaDB for everything Postfix and Dovecot read; SQLite for a sender-only serve).
    pub fn new(db: TestDb) -> Site {
        let dir = tempfile::Builder::new()
            .prefix("mailctl-interop-")
            .tempdir()
            .expect("tempdir");
        chmod(dir.path(), 0o755);
        let vmail = user_ids(VMAIL_USER);
        let vmail_root = dir.path().join("vmail");
        std::fs::create_dir(&vmail_root).expect("vmail root");
        chown(&vmail_root, vmail.0, vmail.1);
        let config = dir.path().join("mailctl.toml");
        std::fs::write(&config, Site::config_text(&db.url, &vmail_root, vmail)).expect("config");
        Site {
            dir,
            db,
            vmail_root,
            vmail,
            config,
        }
    }

    /// `[database]` and `[mail]` of the site's mailctl config.
    fn config_text(url: &str, vmail_root: &Path, (uid, gid): (u32, u32)) -> String {
        format!(
            "[database]\nurl = {}\n\n[mail]\nvmail_root = {}\nvmail_uid = {uid}\nvmail_gid = {gid}\n",
            q(url),
            q(&vmail_root.to_string_lossy())
        )
    }

    /// The first lines of every mailctl config of this site (serve appends its own sections).
    pub fn base_config(&self) -> String {
        Site::config_text(&self.db.url, &self.vmail_root, self.vmail)
    }

    /// A path in the site's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `mailctl ARGS` with the site's config, `input` on stdin.
    pub fn mailctl_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut cmd = self.db.command(args);
        cmd.env("MAILCTL_CONFIG", &self.config);
        run_command(cmd, input)
    }

    /// Runs `mailctl` with whitespace-separated `args` and asserts success.
    #[track_caller]
    pub fn cli(&self, args: &str) -> Run {
        let args: Vec<&str> = args.split_whitespace().collect();
        self.mailctl_stdin(&args, "").ok()
    }

    /// `mailctl mailbox add ADDRESS --password-stdin [--scheme SCHEME]` with `password`.
    #[track_caller]
    pub fn add_mailbox(&self, address: &str, password: &str, scheme: Option<&str>) {
        let mut args = vec!["mailbox", "add", address, "--password-stdin"];
        if let Some(s) = scheme {
            args.extend(["--scheme", s]);
        }
        self.mailctl_stdin(&args, &format!("{password}\n")).ok();
    }

    /// `mailctl config KIND --out DIR` (KIND `postfix` or `dovecot`); returns DIR.
    #[track_caller]
    pub fn generate(&self, kind: &str) -> PathBuf {
        let dir = self.path(&format!("mailctl-{kind}"));
        let out = dir.to_string_lossy().into_owned();
        self.mailctl_stdin(&["config", kind, "--out", &out], "")
            .ok();
        dir
    }

    /// `<vmail_root>/<domain>/<local>/new` of `mailbox`.
    pub fn new_dir(&self, mailbox: &str) -> PathBuf {
        let (local, domain) = mailbox.split_once('@').expect("mailbox address");
        self.vmail_root.join(domain).join(local).join("new")
    }

    /// The messages in `mailbox`'s Maildir `new/` (sorted by file name).
    pub fn new_mail(&self, mailbox: &str) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.new_dir(mailbox)) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read(p).expect("read message"))
            .collect()
    }
}

/// A TOML string literal.
pub fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The last `n` lines of `text` (for failure messages quoting logs).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A program started for a test, its output in a log file; killed when the test ends.
pub struct Spawned {
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `program args` and waits (up to `within`) until it listens on `port`.
    pub fn start(program: &str, args: &[&str], dir: &Path, port: u16, within: Duration) -> Spawned {
        Spawned::start_with(program, args, &[], dir, port, within)
    }

    /// As [`Spawned::start`], with `env` added to the environment.
    pub fn start_with(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
        port: u16,
        within: Duration,
    ) -> Spawned {
        let log = dir.join(format!(
            "{}.log",
            Path::new(program).file_name().unwrap().to_string_lossy()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        // A process group of its own: a daemon that signals its group (rspamd's main process does, to its
        // workers) never signals the test.
        use std::os::unix::process::CommandExt;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut spawned = Spawned { child, log };
        let mut exited = false;
        let up = wait_until(within, || {
            exited = matches!(spawned.child.try_wait(), Ok(Some(_)));
            exited || listening(loopback(port))
        });
        if !up || exited {
            let _ = spawned.child.kill();
            panic!(
                "{program} did not listen on port {port} within {within:?} (exited: {exited}):\n{}",
                spawned.log()
            );
        }
        spawned
    }

    /// The last lines of its output.
    pub fn log(&self) -> String {
        tail(
            &String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()),
            40,
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // The whole group: rspamd's workers outlive their main process otherwise.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            kit::os::signal(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
