//! One `mailctl serve` instance of the outbound tests (`serve_outbound*`, `serve_crash_outbound`), started on
//! an address of the test's choosing.
//!
//! The outbound client connects to every MX on one port (`[server.outbound] port`), so each instance of a test
//! listens for SMTP on its own loopback address (`127.0.N.2`, `127.0.N.3`, ...) but on the same port, picked
//! free on every address at once by [`kit::daemon::free_port`]. A [`Node`] is a [`TestServer`] with those listeners, its
//! spool in its private directory and a 1 s first retry; each start keeps the same addresses, so a receiver
//! that comes back is found again.

use std::net::{Ipv4Addr, SocketAddr};

use kit::TestDb;
use kit::serve::{ServeOptions, TestServer};

/// A daemon run on fixed addresses.
pub struct Node {
    /// The daemon: config file, Maildir root, certificate, process.
    pub server: TestServer,
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
        let extra: &[&str] = if submission { &["submission"] } else { &[] };
        Node::listening(db, options, ip, port, extra)
    }

    /// [`Node::new`] with listeners `extra` (`submission`, `submissions`) on `ip`, port 0, besides SMTP.
    pub fn listening(
        db: &TestDb,
        options: ServeOptions,
        ip: Ipv4Addr,
        port: u16,
        extra: &[&str],
    ) -> Node {
        let mut listen = vec![("smtp", format!("{ip}:{port}"))];
        listen.extend(extra.iter().map(|name| (*name, format!("{ip}:0"))));
        let mut server = TestServer::configure(db, options.listen_only(&listen));
        let spool = toml::Value::from(server.path("spool").to_string_lossy().into_owned());
        server.reconfigure(|o| {
            *o = std::mem::take(o)
                .server_key("queue.spool_dir", spool)
                .server_key("queue.retry_initial", 1)
                .server_key("queue.retry_max", 2)
                .server_key("outbound.port", port)
                .server_key("outbound.timeout", 5);
        });
        Node { server }
    }

    /// Sets a `[server.outbound]` key (a TOML value, e.g. `("per_domain", "4")`) for the next start.
    pub fn set_outbound(&mut self, key: &str, value: &str) -> &mut Node {
        let key = format!("outbound.{key}");
        self.server.reconfigure(|o| o.set_server_key(&key, value));
        self
    }

    /// Spawns the daemon and waits for its `ready` line.
    pub fn start(&mut self) -> &mut Node {
        self.server.launch();
        self
    }

    /// Panics with `what` and the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        self.server.fail(what)
    }

    /// The address of listener `name` (`smtp`, `submission`), as of the last start.
    #[track_caller]
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.server.addr(name)
    }

    /// `kill -9` and reap (nothing when not running).
    pub fn kill9(&mut self) {
        self.server.kill9();
    }
}
