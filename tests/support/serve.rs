//! Runs the real `mailctl serve` for the end-to-end SMTP tests: [`TestServer::start`] writes a config file
//! (database, a private Maildir root, `mx.example.test`, a TLS certificate from a throw-away CA, every inbound
//! check off unless the test turns it on, a loopback nameserver, limit overrides), spawns the daemon with
//! `--listen NAME=127.0.0.1:0` listeners, and reads the `listening NAME ADDR` lines up to `ready` from its
//! stdout. It can SIGTERM, `kill -9` and restart the daemon (new ports: the addresses are re-read), and kills
//! it on drop. The daemon's stderr (its logs) goes to a file, quoted in every panic about the daemon.
//!
//! The raw client lives in [`smtp_client`]; [`db_proxy::DbProxy`] makes MariaDB unreachable on demand.

#[path = "smtp_client.rs"]
pub mod smtp_client;

pub mod config;
pub mod db_proxy;
pub mod mail;
pub mod reply;

pub use config::{ServeOptions, ServerCert};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;

use super::dns::TestDns;
use super::{Run, TestDb};

/// The daemon's host name in every test config (banner, HELO, Received, Authentication-Results).
pub const HOSTNAME: &str = "mx.example.test";
/// How long the daemon may take from spawn to `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon may take to exit after SIGTERM (or after SIGKILL).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `mailctl serve` with its config, Maildir root and listener addresses.
pub struct TestServer {
    dir: tempfile::TempDir,
    /// The config file the daemon was started with.
    pub config: PathBuf,
    /// `[mail] vmail_root`.
    pub vmail_root: PathBuf,
    /// The certificate the daemon serves (when TLS is on).
    pub cert: Option<ServerCert>,
    args: Vec<String>,
    child: Option<Child>,
    addrs: HashMap<String, SocketAddr>,
    _dns: Option<TestDns>,
}

impl TestServer {
    /// Writes the config for `db` and `options`, starts the daemon and waits for `ready`.
    pub fn start(db: &TestDb, options: ServeOptions) -> TestServer {
        let mut server = TestServer::configure(db, options);
        server.launch();
        server
    }

    /// Writes the config for `db` and `options` without starting the daemon (for `--check-config` tests or
    /// to change files first); [`TestServer::launch`] starts it.
    pub fn configure(db: &TestDb, options: ServeOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let vmail_root = dir.path().join("vmail");
        std::fs::create_dir_all(&vmail_root).expect("vmail root");
        let (dns, nameserver) = match &options.nameserver {
            Some(ns) => (None, ns.clone()),
            None => {
                let dns = TestDns::start(&[]);
                let ns = dns.nameserver();
                (Some(dns), ns)
            }
        };
        let cert =
            (options.tls || options.submissions).then(|| ServerCert::new(&[HOSTNAME, "127.0.0.1"]));
        let url = options
            .database_url
            .clone()
            .unwrap_or_else(|| db.url.clone());
        let config = dir.path().join("mailctl.toml");
        config::write(
            &config,
            &options,
            &url,
            &vmail_root,
            &nameserver,
            cert.as_ref(),
        );

        let mut args = vec![
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ];
        args.extend((0..options.verbose).map(|_| "-v".to_string()));
        args.push("serve".into());
        let mut listeners = vec!["smtp"];
        if cert.is_some() {
            listeners.push("submission");
        }
        if options.submissions {
            listeners.push("submissions");
        }
        for name in listeners {
            let addr = options
                .listen
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or("127.0.0.1:0", |(_, a)| a.as_str());
            args.push("--listen".into());
            args.push(format!("{name}={addr}"));
        }
        TestServer {
            dir,
            config,
            vmail_root,
            cert,
            args,
            child: None,
            addrs: HashMap::new(),
            _dns: dns,
        }
    }

    /// A file in the server's private directory (`cert.pem`, `key.pem`, `mailctl.toml`, `serve.log`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The command that runs `mailctl` with a clean environment and a private HOME.
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailctl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1");
        if let Some(filter) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        cmd
    }

    /// Runs `mailctl --config <this config> ARGS` to completion (at most 60 s), e.g. `serve --check-config`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "--config".to_string(),
            self.config.to_string_lossy().into_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        run_with_timeout(self.command(&all), Duration::from_secs(60))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// Everything the daemon wrote to stderr so far (over every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Spawns the daemon and waits for its `ready` line, recording the listener addresses.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log file");
        let mut child = self
            .command(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn mailctl serve");
        let stdout = child.stdout.take().expect("stdout");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        // Reads stdout to its end, so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once nobody listens any more, keep draining.
                let _ = tx.send(line);
            }
        });
        self.addrs.clear();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "ready" => return,
                Ok(line) => {
                    let mut words = line.split_whitespace();
                    if let (Some("listening"), Some(name), Some(addr)) =
                        (words.next(), words.next(), words.next())
                    {
                        let addr = addr.parse().unwrap_or_else(|e| {
                            self.fail(&format!("bad address in {line:?}: {e}"))
                        });
                        self.addrs.insert(name.to_string(), addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill9();
                    self.fail("no `ready` line within 20 s");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(EXIT_TIMEOUT);
                    self.fail(&format!("exited before `ready` ({status})"));
                }
            }
        }
    }

    /// Panics with `what` and the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "mailctl serve: {what}\nargs: {:?}\n--- daemon stderr ---\n{}",
            self.args,
            self.log()
        )
    }

    /// The address of listener `name` (`smtp`, `submission`, `submissions`, `metrics`).
    #[track_caller]
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| self.fail(&format!("no `listening {name}` line")))
    }

    /// The MX listener.
    pub fn smtp(&self) -> SocketAddr {
        self.addr("smtp")
    }

    /// The submission (STARTTLS) listener.
    pub fn submission(&self) -> SocketAddr {
        self.addr("submission")
    }

    /// The submissions (implicit TLS) listener.
    pub fn submissions(&self) -> SocketAddr {
        self.addr("submissions")
    }

    /// The CA root the clients trust.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.cert.as_ref().expect("server started with TLS").ca
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the daemon without waiting.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid().expect("daemon running") as libc::pid_t;
        // SAFETY: kill(2) with the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits up to `timeout` for the daemon to exit and reaps it; kills it and fails if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the daemon") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!(
                    "still running {timeout:?} after being told to stop"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGKILL);
            self.wait_exit(EXIT_TIMEOUT);
        }
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Starts the daemon again with the same config (after [`TestServer::kill9`] or [`TestServer::terminate`];
    /// a running daemon is killed first). The listeners get new ports: use the accessors again.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// `<vmail_root>/<domain>/<local>/new` of `mailbox`.
    pub fn maildir(&self, mailbox: &str) -> PathBuf {
        self.mailbox_root(mailbox).join("new")
    }

    /// `<vmail_root>/<domain>/<local>/.Junk/new` of `mailbox`.
    pub fn junk(&self, mailbox: &str) -> PathBuf {
        self.mailbox_root(mailbox).join(".Junk").join("new")
    }

    /// `<vmail_root>/<domain>/<local>`.
    pub fn mailbox_root(&self, mailbox: &str) -> PathBuf {
        let (local, domain) = mailbox.split_once('@').expect("mailbox address");
        self.vmail_root.join(domain).join(local)
    }

    /// The contents of every file in `dir` (sorted by file name); empty when `dir` does not exist.
    pub fn messages(dir: &Path) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read(p).expect("read message"))
            .collect()
    }

    /// The messages in `mailbox`'s INBOX `new/`.
    pub fn inbox(&self, mailbox: &str) -> Vec<Vec<u8>> {
        TestServer::messages(&self.maildir(mailbox))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` with empty stdin, failing the test (after killing it) if it runs longer than `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mailctl");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mailctl {:?} still running after {timeout:?}; stderr so far:\n{}",
                cmd.get_args().collect::<Vec<_>>(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
