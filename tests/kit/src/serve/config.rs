//! The daemon's config file for a test, and the certificate it serves.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use super::HOSTNAME;
use crate::dns::TestDns;

/// The inbound checks, all written as "off" unless the test sets them.
const CHECKS: [&str; 5] = ["spf", "dkim", "dmarc", "iprev", "dnsbl"];

/// TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A throw-away CA and a leaf for [`HOSTNAME`] (and 127.0.0.1) signed by it, as PEM for the daemon's
/// `[server.tls]` and DER for the clients' trust store.
pub struct ServerCert {
    /// The CA certificate: the only root the test clients trust.
    pub ca: CertificateDer<'static>,
    /// The CA certificate, PEM (for lettre's `Certificate::from_pem`).
    pub ca_pem: String,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl ServerCert {
    /// A fresh CA and a leaf for `names` (DNS names or IP addresses) valid from yesterday for 30 days.
    pub fn new(names: &[&str]) -> ServerCert {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "mailctl serve test CA");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut leaf = rcgen::CertificateParams::new(names).expect("leaf params");
        let ((y0, m0, d0), (y1, m1, d1)) = (ymd(-1), ymd(30));
        leaf.not_before = rcgen::date_time_ymd(y0, m0, d0);
        leaf.not_after = rcgen::date_time_ymd(y1, m1, d1);
        let leaf = leaf.signed_by(&key, &issuer).expect("leaf certificate");
        ServerCert {
            ca: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Year, month and day `days_from_today` days from today (UTC).
fn ymd(days_from_today: i64) -> (i32, u8, u8) {
    use chrono::Datelike;
    let d = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(days_from_today);
    (d.year(), d.month() as u8, d.day() as u8)
}

/// What the test wants in the daemon's config and on its command line.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Write `[server.tls]` (a fresh [`ServerCert`]). Default true; without it only the `smtp` listener runs.
    pub tls: bool,
    /// Also run the `submissions` (implicit TLS) listener.
    pub submissions: bool,
    /// `[dns] nameserver`; `None`: a private, empty [`TestDns`] (so nothing is ever asked beyond loopback).
    pub nameserver: Option<String>,
    /// `[database] url` instead of the test database's own (e.g. through a [`db_proxy::DbProxy`]).
    pub database_url: Option<String>,
    /// `[server.limits]` keys with their TOML values, e.g. `("max_recipients", "3")`.
    pub limits: Vec<(String, String)>,
    /// `[server.checks]` actions overriding the default "off", e.g. `("spf", "reject")`.
    pub checks: Vec<(String, String)>,
    /// `[server.checks] dnsbl_lists`.
    pub dnsbl_lists: Vec<String>,
    /// More `[server]` keys with their TOML values, e.g. `("user", "\"nobody\"")`; dotted keys reach its
    /// sub-tables not written otherwise (`("queue.spool_dir", ...)`).
    pub server: Vec<(String, String)>,
    /// Listener addresses instead of `127.0.0.1:0`, e.g. `("smtp", "127.0.0.1:625")`.
    pub listen: Vec<(String, String)>,
    /// Run exactly these listeners (e.g. only `smtp`) instead of `smtp`, `submission` with TLS and
    /// `submissions` when asked for.
    pub only_listen: Option<Vec<String>>,
    /// `[server] hostname` (default [`HOSTNAME`]); the certificate names it too.
    pub hostname: String,
    /// `-v` flags of the daemon (1: debug for mailctl, 2: also debug for its dependencies).
    pub verbose: u8,
    /// More names for the certificate (e.g. `mta-sts.example.test` for the HTTPS endpoint).
    pub cert_names: Vec<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: true,
            submissions: false,
            nameserver: None,
            database_url: None,
            limits: Vec::new(),
            checks: Vec::new(),
            dnsbl_lists: Vec::new(),
            server: Vec::new(),
            listen: Vec::new(),
            only_listen: None,
            hostname: HOSTNAME.to_string(),
            verbose: 0,
            cert_names: Vec::new(),
        }
    }
}

impl ServeOptions {
    /// Sets one `[server.limits]` key.
    pub fn limit(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.limits.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets one `[server.checks]` action.
    pub fn check(mut self, key: &str, action: &str) -> Self {
        self.checks.push((key.to_string(), action.to_string()));
        self
    }

    /// Points the daemon's resolver at `dns`.
    pub fn dns(mut self, dns: &TestDns) -> Self {
        self.nameserver = Some(dns.nameserver());
        self
    }

    /// Also runs the `submissions` listener.
    pub fn with_submissions(mut self) -> Self {
        self.submissions = true;
        self
    }

    /// Runs exactly the listeners `listen` names (`NAME`, `IP:PORT`), nothing else.
    pub fn listen_only(mut self, listen: &[(&str, String)]) -> Self {
        self.only_listen = Some(listen.iter().map(|(n, _)| n.to_string()).collect());
        self.listen
            .extend(listen.iter().map(|(n, a)| (n.to_string(), a.clone())));
        self
    }

    /// Sets `[server] hostname`.
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_string();
        self
    }

    /// Sets one more `[server]` key (`value` is TOML: quote strings).
    pub fn server_key(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.set_server_key(key, value);
        self
    }

    /// Sets `[server]` key `key` (dotted for subsections) to the TOML `value`, replacing an earlier value.
    pub fn set_server_key(&mut self, key: &str, value: impl std::fmt::Display) {
        let value = value.to_string();
        match self.server.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.server.push((key.to_string(), value)),
        }
    }
}

/// Writes the config file at `path` (certificate and key beside it, when TLS is on).
pub(super) fn write(
    path: &Path,
    options: &ServeOptions,
    url: &str,
    vmail_root: &Path,
    nameserver: &str,
    cert: Option<&ServerCert>,
) {
    let mut text = format!(
        "[database]\nurl = {}\n\n[mail]\nvmail_root = {}\n\n[dns]\nnameserver = {}\n\n\
         [server]\nhostname = {}\n",
        q(url),
        q(&vmail_root.to_string_lossy()),
        q(nameserver),
        q(&options.hostname)
    );
    for (key, value) in &options.server {
        text += &format!("{key} = {value}\n");
    }
    // Each server queues in its own directory, never in the shared default /var/spool/mailctl, where one
    // test's queued mail would be delivered by another test's server.
    if !options
        .server
        .iter()
        .any(|(k, _)| k == "queue.spool_dir" || k == "queue.backend")
    {
        let spool = path.parent().expect("config directory").join("spool");
        text += &format!("queue.spool_dir = {}\n", q(&spool.to_string_lossy()));
    }
    text += "\n";
    if let Some(cert) = cert {
        let dir = path.parent().expect("config directory");
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, &cert.cert_pem).expect("write cert");
        std::fs::write(&k, &cert.key_pem).expect("write key");
        text += &format!(
            "[server.tls]\ncert = {}\nkey = {}\n\n",
            q(&c.to_string_lossy()),
            q(&k.to_string_lossy())
        );
    }
    text += "[server.limits]\n";
    for (key, value) in &options.limits {
        text += &format!("{key} = {value}\n");
    }
    text += "\n[server.checks]\n";
    for check in CHECKS {
        let action = options
            .checks
            .iter()
            .rev()
            .find(|(k, _)| k == check)
            .map_or("off", |(_, a)| a.as_str());
        text += &format!("{check} = {}\n", q(action));
    }
    let lists: Vec<String> = options.dnsbl_lists.iter().map(|l| q(l)).collect();
    text += &format!("dnsbl_lists = [{}]\n", lists.join(", "));
    std::fs::write(path, text).expect("write config");
    // As an admin would keep it: the file may hold a database password (`serve` warns about 0644 then).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).expect("chmod config");
}
