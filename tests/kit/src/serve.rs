//! The standard single-node `mailctl serve` of the end-to-end SMTP tests: [`TestServer::configure`] writes a
//! config file (database, a private Maildir root, `mx.example.test`, a TLS certificate from a throw-away CA,
//! every inbound check off unless the test turns it on, a loopback nameserver, limit overrides, extra `[server]`
//! keys), [`TestServer::launch`] starts it with `--listen NAME=127.0.0.1:0` listeners (or the test's addresses)
//! through the kit's one launcher, [`Daemon`], which reads the `listening NAME ADDR` lines up to `ready` and
//! keeps the daemon's log in `serve.log`, quoted in every failure about the daemon.
//!
//! The raw client is [`crate::smtp_client`]; [`db_proxy::DbProxy`] makes MariaDB unreachable on demand.

pub mod config;
pub mod db_proxy;
pub mod mail;
pub mod reply;

pub use config::{ServeOptions, ServerCert};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::daemon::{self, Daemon};
use crate::dns::TestDns;
use crate::{Run, TestDb};

/// The daemon's host name in every test config (banner, HELO, Received, Authentication-Results) unless the
/// test sets [`ServeOptions::hostname`].
pub const HOSTNAME: &str = "mx.example.test";

/// A `mailctl serve` with its config, Maildir root and listener addresses.
pub struct TestServer {
    dir: tempfile::TempDir,
    /// The config file the daemon was started with.
    pub config: PathBuf,
    /// `[mail] vmail_root`.
    pub vmail_root: PathBuf,
    /// The certificate the daemon serves (when TLS is on).
    pub cert: Option<ServerCert>,
    /// The process: start, stop, signals, addresses, log.
    pub daemon: Daemon,
    /// What the config was written from ([`TestServer::reconfigure`] changes it).
    options: ServeOptions,
    /// `[database] url` and `[dns] nameserver` as written.
    url: String,
    nameserver: String,
    _dns: Option<TestDns>,
}

impl TestServer {
    /// Writes the config for `db` and `options`, starts the daemon and waits for `ready`.
    pub fn start(db: &TestDb, options: ServeOptions) -> TestServer {
        let mut server = TestServer::configure(db, options);
        server.launch();
        server
    }

    /// Writes the config for `db` and `options` without starting the daemon (for `--check-config` tests, to
    /// change files or the environment first); [`TestServer::launch`] starts it.
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
        let cert = (options.tls || options.submissions).then(|| {
            let mut names = vec![HOSTNAME, "127.0.0.1"];
            if options.hostname != HOSTNAME {
                names.push(&options.hostname);
            }
            names.extend(options.cert_names.iter().map(String::as_str));
            ServerCert::new(&names)
        });
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
        let mut standard = vec!["smtp"];
        if cert.is_some() {
            standard.push("submission");
        }
        if options.submissions {
            standard.push("submissions");
        }
        let names: Vec<&str> = match &options.only_listen {
            Some(only) => only.iter().map(String::as_str).collect(),
            None => standard,
        };
        let listen: Vec<String> = names
            .iter()
            .map(|name| {
                let addr = options
                    .listen
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map_or("127.0.0.1:0", |(_, a)| a.as_str());
                format!("{name}={addr}")
            })
            .collect();
        let daemon = Daemon::new(
            &config,
            options.verbose,
            &listen,
            dir.path(),
            &dir.path().join("serve.log"),
        );
        TestServer {
            dir,
            config,
            vmail_root,
            cert,
            daemon,
            options,
            url,
            nameserver,
            _dns: dns,
        }
    }

    /// Changes the options and writes the config file again (same database, Maildir root, nameserver and
    /// certificate); the daemon sees it at its next start. Listener options are not re-read.
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut ServeOptions)) {
        change(&mut self.options);
        config::write(
            &self.config,
            &self.options,
            &self.url,
            &self.vmail_root,
            &self.nameserver,
            self.cert.as_ref(),
        );
    }

    /// A file in the server's private directory (`cert.pem`, `key.pem`, `mailctl.toml`, `serve.log`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `mailctl --config <this config> ARGS` to completion (at most 60 s), e.g. `serve --check-config`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = daemon::command(self.dir.path());
        cmd.arg("--config").arg(&self.config).args(args);
        crate::run_with_timeout(cmd, Duration::from_secs(60))
    }

    /// Everything the daemon wrote to stderr so far (over every start).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Spawns the daemon and waits for its `ready` line, recording the listener addresses.
    pub fn launch(&mut self) {
        self.daemon.start();
    }

    /// Panics with `what` and the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        self.daemon.fail(what)
    }

    /// The address of listener `name` (`smtp`, `submission`, `submissions`, `metrics`).
    #[track_caller]
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.daemon.addr(name)
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
        self.daemon.pid()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the daemon without waiting.
    pub fn signal(&self, signal: i32) {
        self.daemon.signal(signal)
    }

    /// Waits up to `timeout` for the daemon to exit and reaps it; kills it and fails if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.daemon.wait_exit(timeout)
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        self.daemon.kill9()
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.daemon.terminate()
    }

    /// Starts the daemon again with the same config (after [`TestServer::kill9`] or [`TestServer::terminate`];
    /// a running daemon is killed first). Listeners on port 0 get new ports: use the accessors again.
    pub fn restart(&mut self) {
        self.daemon.restart();
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

    /// How many files `dir` holds (0 when it does not exist yet).
    pub fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    /// The messages in `mailbox`'s INBOX `new/`.
    pub fn inbox(&self, mailbox: &str) -> Vec<Vec<u8>> {
        TestServer::messages(&self.maildir(mailbox))
    }
}
