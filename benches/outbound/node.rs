//! The two `mailctl serve` instances of the outbound bench: sender A (`a.test`, user alice, a DKIM key of
//! the algorithm under test published in the bench's DNS) and receiver B (`b.test`, user bob), each on its own
//! loopback address and the same SMTP port, which is also A's outbound port.
//!
//! Each is the test kit's [`TestServer`] (database, Maildir root, a throw-away certificate, checks,
//! nameserver, the one launcher) with its listeners on those addresses and `[server.queue]` /
//! `[server.outbound]` tuned for the bench.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use kit::TestDb;
use kit::serve::{ServeOptions, TestServer};

/// The password of every mailbox.
pub const PASSWORD: &str = "bench password 1";

/// Runs `mailctl ARGS` against `db` with `input` on stdin and returns stdout; panics on failure.
pub fn cli(db: &TestDb, args: &[&str], input: &str) -> String {
    let run = db.run_stdin(args, input);
    assert_eq!(run.code, 0, "mailctl {args:?} failed: {}", run.stderr);
    run.stdout
}

/// A running daemon; killed on drop.
pub struct Node {
    /// Config file, Maildir root, private directory, process.
    pub server: TestServer,
}

/// What to add to the kit's config.
pub struct Tuning {
    /// `[server.outbound] port`.
    pub port: u16,
    /// Extra `[server]` keys with TOML values, e.g. `("outbound.per_domain", "16")`; they replace the
    /// defaults above.
    pub outbound: Vec<(String, String)>,
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
        let mut listen = vec![("smtp", format!("{ip}:{}", tuning.port))];
        if submission {
            listen.push(("submission", format!("{ip}:0")));
        }
        let mut server = TestServer::configure(db, options.listen_only(&listen));
        let spool = toml::Value::from(server.path("spool").to_string_lossy().into_owned());
        server.reconfigure(|o| {
            o.set_server_key("queue.spool_dir", spool);
            o.set_server_key("queue.retry_initial", 1);
            o.set_server_key("queue.retry_max", 2);
            o.set_server_key("outbound.port", tuning.port);
            o.set_server_key("outbound.timeout", 10);
            for (k, v) in &tuning.outbound {
                o.set_server_key(k, v);
            }
        });
        server.launch();
        Node { server }
    }

    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.server.addr(name)
    }

    /// `<vmail_root>/<domain>/<local>/new` and `.Junk/new` of `mailbox`.
    pub fn maildirs(&self, mailbox: &str) -> [PathBuf; 2] {
        [self.server.maildir(mailbox), self.server.junk(mailbox)]
    }

    /// Entries in the outbound spool (`msg/*.json`).
    pub fn queued(&self) -> usize {
        std::fs::read_dir(self.server.path("spool").join("msg")).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// CPU time (user + system) the daemon has used so far.
    pub fn cpu(&self) -> Duration {
        self.server.daemon.cpu()
    }
}
