//! The one launcher of `mailctl serve` for tests and benches.
//!
//! A [`Daemon`] is a command line (`--config FILE [-v] serve --listen NAME=ADDR ...`) and a log file.
//! [`Daemon::start`] spawns the real binary with a clean environment (`PATH`, a private `HOME`, `NO_COLOR`,
//! `RUST_LOG` when the test run sets it), sends its stderr (the
//! daemon's log) to the log file, and reads its stdout until `ready`, recording every `listening NAME ADDR`
//! line. Every way a test can fail with a daemon ([`Daemon::fail`]) quotes the end of that log, so a green
//! run prints nothing of it and a red one shows why. The daemon can be signalled, SIGKILLed and started
//! again (the addresses are read anew: listeners on port 0 get new ports), and is killed on drop.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the daemon may take from spawn to `ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to exit after SIGTERM (or after SIGKILL).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the daemon's log quoted in a failure.
const LOG_TAIL: usize = 200;

/// A `mailctl serve` process of a test: configured, started, stopped and started again by the test.
pub struct Daemon {
    args: Vec<OsString>,
    home: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    addrs: HashMap<String, SocketAddr>,
}

/// The `mailctl` command with a clean environment: `PATH`, `HOME`, `NO_COLOR`, and `RUST_LOG` when the test
/// run has it.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(crate::mailctl());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1");
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    cmd
}

/// A TCP port free on every one of `ips` at once (checked by binding them all, then released), for daemons
/// that each listen on their own loopback address but on one port (the outbound client connects to every MX
/// on `[server.outbound] port`).
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

impl Daemon {
    /// A daemon run as `mailctl --config CONFIG [-v...] serve --listen L...` with `home` as its `HOME`,
    /// appending its stderr to `log`. Not started yet.
    pub fn new(config: &Path, verbose: u8, listen: &[String], home: &Path, log: &Path) -> Daemon {
        let mut args: Vec<OsString> = vec!["--config".into(), config.into()];
        args.extend((0..verbose).map(|_| OsString::from("-v")));
        args.push("serve".into());
        for l in listen {
            args.push("--listen".into());
            args.push(l.into());
        }
        Daemon {
            args,
            home: home.to_path_buf(),
            log: log.to_path_buf(),
            child: None,
            addrs: HashMap::new(),
        }
    }

    /// The `--listen` values, in order.
    pub fn listen(&self) -> Vec<String> {
        self.args
            .iter()
            .skip_while(|a| *a != "serve")
            .skip(1)
            .filter(|a| *a != "--listen")
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Spawns the daemon and waits for its `ready` line, recording the listener addresses. Fails the test
    /// (quoting the log) when it exits first or is not ready within [`START_TIMEOUT`].
    pub fn start(&mut self) -> &mut Daemon {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("daemon log file {}: {e}", self.log.display()));
        let mut cmd = command(&self.home);
        cmd.args(&self.args);
        let mut child = cmd
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
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == "ready" => return self,
                Ok(line) => {
                    if let ["listening", name, addr] =
                        line.split_whitespace().collect::<Vec<_>>()[..]
                    {
                        let addr = addr
                            .parse()
                            .unwrap_or_else(|e| self.fail(&format!("bad line {line:?}: {e}")));
                        self.addrs.insert(name.to_string(), addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill9();
                    self.fail(&format!("no `ready` line within {START_TIMEOUT:?}"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(EXIT_TIMEOUT);
                    self.fail(&format!("exited before `ready` ({status})"));
                }
            }
        }
    }

    /// Everything the daemon wrote to stderr so far (over every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with `what`, the command line and the end of the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
        panic!(
            "mailctl serve: {what}\nargs: {:?}\n--- daemon log ({}, last {LOG_TAIL} lines) ---\n{tail}",
            self.args,
            self.log.display()
        )
    }

    /// The address of listener `name` (`smtp`, `submission`, `submissions`, `metrics`) as of the last start.
    #[track_caller]
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| self.fail(&format!("no `listening {name}` line")))
    }

    /// Whether the daemon is running (started and not stopped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the daemon without waiting.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid().expect("daemon running") as i32;
        // Our own child, not reaped yet: the pid cannot have been reused.
        assert!(
            crate::os::signal(pid, signal),
            "kill({pid}, {signal}) failed"
        );
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

    /// `kill -9` and reap (nothing when not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Starts the daemon again (a running one is SIGKILLed first).
    pub fn restart(&mut self) -> &mut Daemon {
        self.kill9();
        self.start()
    }

    /// CPU time (user + system) the daemon has used so far, from `/proc/PID/stat`.
    pub fn cpu(&self) -> Duration {
        let pid = self.pid().expect("daemon running");
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
        // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse::<u64>().expect("tick count"))
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64(ticks as f64 / hz)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
