//! One `mailctl serve` instance of the outbound tests (`tests/serve_outbound*.rs`), started on an address of
//! the test's choosing.
//!
//! The outbound client connects to every MX on one port (`[server.outbound] port`), so each instance of a test
//! listens for SMTP on its own loopback address (`127.0.N.2`, `127.0.N.3`, ...) but on the same port, picked
//! free on every address at once by [`free_port`]. [`TestServer`] always listens on `127.0.0.1:0` and passes
//! the daemon no environment, so [`Node`] takes only its config file, Maildir root and certificate from
//! [`TestServer::configure`] and spawns the daemon itself, with its own `--listen` flags and environment
//! (the MTA-STS test knobs). Each start keeps the same addresses, so a receiver that comes back is found
//! again; the daemon's stderr goes to the server's `serve.log`, quoted by [`Node::fail`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::TestDb;
use crate::support::serve::{ServeOptions, TestServer};

/// How long the daemon may take from spawn to `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A port free for TCP on every one of `ips` (checked by binding them all at once, then released).
pub fn free_port(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind((ips[0], 0)).expect("bind a loopback port");
        let port = first.local_addr().expect("local address").port();
        let rest: Vec<_> = ips[1..]
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A daemon configured by [`TestServer::configure`] and run on fixed addresses.
pub struct Node {
    /// The configured (never launched) server: config file, Maildir root, certificate, `mailctl` runner.
    pub server: TestServer,
    /// The config file as [`TestServer::configure`] wrote it; [`Node::start`] appends the sections below.
    base_config: String,
    /// `[server.queue]` keys with TOML values.
    queue: Vec<(String, String)>,
    /// `[server.outbound]` keys with TOML values.
    outbound: Vec<(String, String)>,
    listen: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    addrs: HashMap<String, SocketAddr>,
}

impl Node {
    /// Configures a daemon on `db` with `options` (point them at the test's DNS) whose SMTP listener is
    /// `ip:port`, with a submission listener on `ip` too when `submission`, delivering to remote MX hosts on
    /// `port`, with its spool in its private directory and a 1 s first retry. Not started yet.
    pub fn new(
        db: &TestDb,
        options: ServeOptions,
        ip: Ipv4Addr,
        port: u16,
        submission: bool,
    ) -> Node {
        let server = TestServer::configure(db, options);
        let base_config = std::fs::read_to_string(&server.config).expect("read config");
        let mut listen = vec![format!("smtp={ip}:{port}")];
        if submission {
            listen.push(format!("submission={ip}:0"));
        }
        let spool = toml::Value::from(server.path("spool").to_string_lossy().into_owned());
        Node {
            base_config,
            queue: vec![
                ("spool_dir".into(), spool.to_string()),
                ("retry_initial".into(), "1".into()),
                ("retry_max".into(), "2".into()),
            ],
            outbound: vec![
                ("port".into(), port.to_string()),
                ("timeout".into(), "5".into()),
            ],
            server,
            listen,
            env: Vec::new(),
            child: None,
            addrs: HashMap::new(),
        }
    }

    /// Sets an environment variable of the daemon for the next start.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Node {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets a `[server.outbound]` key (a TOML value, e.g. `("per_domain", "4")`) for the next start.
    pub fn set_outbound(&mut self, key: &str, value: &str) -> &mut Node {
        self.outbound.push((key.into(), value.into()));
        self
    }

    fn write_config(&self) {
        let mut text = self.base_config.clone();
        for (section, keys) in [("queue", &self.queue), ("outbound", &self.outbound)] {
            text += &format!("\n[server.{section}]\n");
            for (k, v) in keys {
                text += &format!("{k} = {v}\n");
            }
        }
        std::fs::write(&self.server.config, text).expect("write config");
    }

    /// Writes the config, spawns the daemon and waits for its `ready` line.
    pub fn start(&mut self) -> &mut Node {
        assert!(self.child.is_none(), "daemon already running");
        self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.server.path("serve.log"))
            .expect("daemon log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailctl"));
        cmd.arg("--config").arg(&self.server.config).arg("serve");
        for l in &self.listen {
            cmd.arg("--listen").arg(l);
        }
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.server.path("home"))
            .env("NO_COLOR", "1");
        if let Some(filter) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn mailctl serve");
        let stdout = child.stdout.take().expect("stdout");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == "ready" => return self,
                Ok(line) => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if let ["listening", name, addr] = words[..] {
                        let addr = addr.parse().expect("listener address");
                        self.addrs.insert(name.to_string(), addr);
                    }
                }
                Err(e) => {
                    self.kill9();
                    self.fail(&format!("no `ready` line: {e:?}"));
                }
            }
        }
    }

    /// Panics with `what` and the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "mailctl serve {:?}: {what}\n--- daemon stderr ---\n{}",
            self.listen,
            self.server.log()
        )
    }

    /// The address of listener `name` (`smtp`, `submission`), as of the last start.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| self.fail(&format!("no `listening {name}` line")))
    }

    /// `kill -9` and reap (nothing when not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}
