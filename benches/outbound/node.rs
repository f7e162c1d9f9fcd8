//! The two `mailctl serve` instances of the outbound bench: sender A (`a.test`, user alice, a DKIM key of
//! the algorithm under test published in the bench's DNS) and receiver B (`b.test`, user bob), each on its own
//! loopback address and the same SMTP port, which is also A's outbound port.
//!
//! The config comes from the test harness ([`TestServer::configure`]: database, Maildir root, a throw-away
//! certificate, checks, nameserver); this module appends `[server.queue]` and `[server.outbound]` and spawns
//! the daemon itself with its own `--listen` flags, like `tests/support/serve/outbound_node.rs` does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::TestDb;
use crate::support::serve::{ServeOptions, TestServer};

/// The password of every mailbox.
pub const PASSWORD: &str = "bench password 1";

/// Runs `mailctl ARGS` against `db` with `input` on stdin and returns stdout; panics on failure.
pub fn cli(db: &TestDb, args: &[&str], input: &str) -> String {
    let run = db.run_stdin(args, input);
    assert_eq!(run.code, 0, "mailctl {args:?} failed: {}", run.stderr);
    run.stdout
}

/// A port free on every one of `ips` at once.
pub fn free_port(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind((ips[0], 0)).expect("bind a loopback port");
        let port = first.local_addr().expect("local address").port();
        if ips[1..]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A running daemon; killed on drop.
pub struct Node {
    /// Config file, Maildir root, private directory.
    pub server: TestServer,
    child: Child,
    addrs: HashMap<String, SocketAddr>,
}

/// What to append to the harness's config.
pub struct Tuning {
    /// `[server.outbound] port`.
    pub port: u16,
    /// Extra `[server.outbound]` lines, e.g. `per_domain = 16`.
    pub outbound: Vec<String>,
}

impl Node {
    /// Configures and starts `serve` for `db` with SMTP on `ip:port` (and submission on `ip`, any port,
    /// when `submission`); waits for `ready`.
    pub fn start(
        db: &TestDb,
        options: ServeOptions,
        ip: Ipv4Addr,
        submission: bool,
        tuning: &Tuning,
    ) -> Node {
        let server = TestServer::configure(db, options);
        let spool = toml::Value::from(server.path("spool").to_string_lossy().into_owned());
        let mut config = std::fs::read_to_string(&server.config).expect("read config");
        config += &format!(
            "\n[server.queue]\nspool_dir = {spool}\nretry_initial = 1\nretry_max = 2\n\
             \n[server.outbound]\nport = {}\ntimeout = 10\n",
            tuning.port
        );
        for line in &tuning.outbound {
            config += &format!("{line}\n");
        }
        std::fs::write(&server.config, config).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailctl"));
        cmd.arg("--config").arg(&server.config).arg("serve");
        cmd.arg("--listen")
            .arg(format!("smtp={ip}:{}", tuning.port));
        if submission {
            cmd.arg("--listen").arg(format!("submission={ip}:0"));
        }
        let log = std::fs::File::create(server.path("serve.log")).expect("log file");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", server.path("home"))
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut node = Node {
            server,
            child,
            addrs: HashMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == "ready" => return node,
                Ok(line) => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if let ["listening", name, addr] = words[..] {
                        let addr = addr.parse().expect("listener address");
                        node.addrs.insert(name.to_string(), addr);
                    }
                }
                Err(e) => panic!("serve did not start ({e:?}):\n{}", node.server.log()),
            }
        }
    }

    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// `<vmail_root>/<domain>/<local>/new` and `.Junk/new` of `mailbox`.
    pub fn maildirs(&self, mailbox: &str) -> [PathBuf; 2] {
        let root = self.server.mailbox_root(mailbox);
        [root.join("new"), root.join(".Junk").join("new")]
    }

    /// Entries in the outbound spool (`msg/*.json`).
    pub fn queued(&self) -> usize {
        count(&self.server.path("spool").join("msg"), ".json")
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// CPU time (user + system) the daemon has used so far, from `/proc/PID/stat`.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("tick count"))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64(fields.iter().sum::<u64>() as f64 / hz)
    }
}

/// CPU time (user + system) of `who` (`libc::RUSAGE_SELF` or `libc::RUSAGE_CHILDREN`, the children waited for).
pub fn rusage(who: i32) -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `who` is one of the two constants.
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files in `dir` whose name ends with `suffix` (0 when it does not exist yet).
pub fn count(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count()
    })
}
