//! One `mailctl serve` process of the outbound cluster test (`tests/serve_outbound_cluster.rs`): a daemon with
//! its own host name, listeners on addresses of the test's choosing and extra `[server.queue]` /
//! `[server.outbound]` keys, so two sender nodes can share the database queue of one MariaDB database.
//!
//! [`TestServer::configure`] writes the base config (database, Maildir root, certificate, checks, resolver);
//! [`ClusterNode`] swaps in its host name (so the receiver's `Received:` field names the node that delivered),
//! appends its sections and spawns the daemon itself with its `--listen` flags, as
//! `support/serve/outbound_node.rs` does for the single-sender tests. The daemon's stderr goes to the
//! server's `serve.log`, quoted by [`ClusterNode::fail`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::TestDb;
use crate::support::serve::{HOSTNAME, ServeOptions, TestServer};

/// How long the daemon may take from spawn to `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A configured daemon, started and killed by the test.
pub struct ClusterNode {
    /// The configured (never launched) server: config file, Maildir root, certificate, `mailctl` runner.
    pub server: TestServer,
    /// The node's `server.hostname` (EHLO name, `Received:` of the receiver).
    pub hostname: String,
    listen: Vec<String>,
    child: Option<Child>,
    addrs: HashMap<String, SocketAddr>,
}

impl ClusterNode {
    /// Configures a daemon on `db` with `options`, host name `hostname`, the `--listen` flags `listen`
    /// (`NAME=IP:PORT`) and the given `[server.queue]` and `[server.outbound]` keys (TOML values). Not started.
    pub fn new(
        db: &TestDb,
        options: ServeOptions,
        hostname: &str,
        listen: &[String],
        queue: &[(&str, String)],
        outbound: &[(&str, String)],
    ) -> ClusterNode {
        let server = TestServer::configure(db, options);
        let base = std::fs::read_to_string(&server.config).expect("read config");
        let from = format!("hostname = {}", toml::Value::from(HOSTNAME));
        assert!(base.contains(&from), "no {from:?} in the base config");
        let mut text = base.replace(
            &from,
            &format!("hostname = {}", toml::Value::from(hostname)),
        );
        for (section, keys) in [("queue", queue), ("outbound", outbound)] {
            text += &format!("\n[server.{section}]\n");
            for (k, v) in keys {
                text += &format!("{k} = {v}\n");
            }
        }
        std::fs::write(&server.config, text).expect("write config");
        ClusterNode {
            server,
            hostname: hostname.to_string(),
            listen: listen.to_vec(),
            child: None,
            addrs: HashMap::new(),
        }
    }

    /// Spawns the daemon and waits for its `ready` line, recording the listener addresses.
    pub fn start(&mut self) -> &mut ClusterNode {
        assert!(self.child.is_none(), "daemon already running");
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
        self.addrs.clear();
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
            "mailctl serve {} {:?}: {what}\n--- daemon stderr ---\n{}",
            self.hostname,
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

    /// Whether the daemon is running (started and not killed).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9` and reap (nothing when not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill9();
    }
}
