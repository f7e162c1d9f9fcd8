//! `mailctl serve` for the interop tests: started as root with a config written under the [`Site`]'s
//! directory (its database and Maildir root, a certificate from a throw-away CA, every inbound check off, a
//! spool directory, the test's nameserver), listening for SMTP and submission on `127.0.0.1:0`, optionally
//! switching to the Maildir owner (`[server] user`) as a production daemon does, and killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Site, VMAIL_USER, chown, q};
use kit::daemon::{self, Daemon};
use kit::dns::TestDns;
use kit::serve::ServerCert;

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// How one daemon is configured.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// `[server] hostname` (banner, HELO, certificate name).
    pub hostname: String,
    /// `[server] user`: switch to [`VMAIL_USER`] after binding (needs a database it can reach as that user).
    pub as_vmail: bool,
    /// `[server] delivery` (`None`: Maildir).
    pub delivery: Option<String>,
    /// `[server.outbound] port`.
    pub outbound_port: Option<u16>,
    /// `[dns] nameserver` (`None`: a private, empty test DNS).
    pub nameserver: Option<String>,
    /// More TOML, appended to the config as written (e.g. a `[server.outbound.relay]` section).
    pub extra: String,
}

impl ServeOptions {
    /// A daemon called `hostname`, delivering to Maildir, staying root.
    pub fn new(hostname: &str) -> ServeOptions {
        ServeOptions {
            hostname: hostname.to_string(),
            as_vmail: false,
            delivery: None,
            outbound_port: None,
            nameserver: None,
            extra: String::new(),
        }
    }
}

/// A running daemon.
pub struct Serve {
    dir: PathBuf,
    /// Its certificate (the CA is what clients trust).
    pub cert: ServerCert,
    /// The CA certificate as a PEM file (for swaks).
    pub ca_file: PathBuf,
    /// The config file.
    pub config: PathBuf,
    daemon: Daemon,
    _dns: Option<TestDns>,
}

impl Serve {
    /// Writes the config and starts the daemon; waits for its `ready` line.
    pub fn start(site: &Site, options: ServeOptions) -> Serve {
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = site.path(&format!("serve-{n}"));
        std::fs::create_dir(&dir).expect("serve dir");
        let spool = dir.join("spool");
        std::fs::create_dir(&spool).expect("spool dir");
        if options.as_vmail {
            chown(&spool, site.vmail.0, site.vmail.1);
        }
        let (dns, nameserver) = match &options.nameserver {
            Some(ns) => (None, ns.clone()),
            None => {
                let dns = TestDns::start(&[]);
                let ns = dns.nameserver();
                (Some(dns), ns)
            }
        };
        let cert = ServerCert::new(&[&options.hostname, "127.0.0.1"]);
        let (cert_file, key_file, ca_file) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        );
        std::fs::write(&cert_file, &cert.cert_pem).expect("cert");
        std::fs::write(&key_file, &cert.key_pem).expect("key");
        std::fs::write(&ca_file, &cert.ca_pem).expect("CA");

        let mut text = site.base_config();
        text += &format!(
            "\n[dns]\nnameserver = {}\n\n[server]\nhostname = {}\n",
            q(&nameserver),
            q(&options.hostname)
        );
        if options.as_vmail {
            text += &format!("user = {}\n", q(VMAIL_USER));
        }
        if let Some(d) = &options.delivery {
            text += &format!("delivery = {}\n", q(d));
        }
        text += &format!(
            "\n[server.tls]\ncert = {}\nkey = {}\n",
            q(&cert_file.to_string_lossy()),
            q(&key_file.to_string_lossy())
        );
        text += "\n[server.checks]\nspf = \"off\"\ndkim = \"off\"\ndmarc = \"off\"\niprev = \"off\"\n\
                 dnsbl = \"off\"\ndnsbl_lists = []\n";
        text += &format!(
            "\n[server.queue]\nspool_dir = {}\nretry_initial = 1\nretry_max = 2\n",
            q(&spool.to_string_lossy())
        );
        text += "\n[server.outbound]\ntimeout = 5\n";
        if let Some(port) = options.outbound_port {
            text += &format!("port = {port}\n");
        }
        text += &options.extra;
        let config = dir.join("mailctl.toml");
        std::fs::write(&config, text).expect("serve config");

        let listen = [
            "smtp=127.0.0.1:0".to_string(),
            "submission=127.0.0.1:0".to_string(),
        ];
        let mut daemon = Daemon::new(&config, 0, &listen, site.dir.path(), &dir.join("serve.log"));
        daemon.start();
        Serve {
            dir,
            cert,
            ca_file,
            config,
            daemon,
            _dns: dns,
        }
    }

    /// Stops the daemon (SIGKILL) and starts it again with the same config (files it reads, such as a
    /// password file, are read again).
    pub fn restart(&mut self) {
        self.daemon.restart();
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Panics with `what` and the end of the daemon's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        self.daemon.fail(what)
    }

    /// The MX listener.
    pub fn smtp(&self) -> SocketAddr {
        self.addr("smtp")
    }

    /// The submission (STARTTLS) listener.
    pub fn submission(&self) -> SocketAddr {
        self.addr("submission")
    }

    #[track_caller]
    fn addr(&self, name: &str) -> SocketAddr {
        self.daemon.addr(name)
    }

    /// `mailctl --config <this config> queue list --json`: one object per queued message.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let mut cmd = daemon::command(&self.dir);
        cmd.arg("--config")
            .arg(&self.config)
            .args(["queue", "list", "--json"]);
        let run = kit::run_with_timeout(cmd, Duration::from_secs(30)).ok();
        run.json().as_array().expect("a JSON array").clone()
    }
}
