//! One `mailctl serve` process of the cluster tests (`serve_outbound_cluster`, `serve_crash_database`): a
//! daemon with its own host name (so the receiver's `Received:` field names the node that delivered),
//! listeners on addresses of the test's choosing and extra `[server.queue]` / `[server.outbound]` keys, so two
//! sender nodes can share the database queue of one MariaDB database.

use std::net::SocketAddr;

use kit::TestDb;
use kit::serve::{ServeOptions, TestServer};

/// A configured daemon, started and killed by the test.
pub struct ClusterNode {
    /// The daemon: config file, Maildir root, certificate, process.
    pub server: TestServer,
    /// The node's `server.hostname` (EHLO name, `Received:` of the receiver).
    pub hostname: String,
}

impl ClusterNode {
    /// Configures a daemon on `db` with `options`, host name `hostname`, the listeners `listen`
    /// (`NAME=IP:PORT`) and the given `[server.queue]` and `[server.outbound]` keys (TOML values). Not started.
    pub fn new(
        db: &TestDb,
        options: ServeOptions,
        hostname: &str,
        listen: &[String],
        queue: &[(&str, String)],
        outbound: &[(&str, String)],
    ) -> ClusterNode {
        let listen: Vec<(&str, String)> = listen
            .iter()
            .map(|l| {
                let (name, addr) = l.split_once('=').expect("NAME=IP:PORT");
                (name, addr.to_string())
            })
            .collect();
        let mut options = options.hostname(hostname).listen_only(&listen);
        for (section, keys) in [("queue", queue), ("outbound", outbound)] {
            for (k, v) in keys {
                options = options.server_key(&format!("{section}.{k}"), v);
            }
        }
        ClusterNode {
            server: TestServer::configure(db, options),
            hostname: hostname.to_string(),
        }
    }

    /// Spawns the daemon and waits for its `ready` line, recording the listener addresses.
    pub fn start(&mut self) -> &mut ClusterNode {
        self.server.launch();
        self
    }

    /// Panics with `what` and the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        self.server.fail(&format!("{}: {what}", self.hostname))
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
