//! Configuration: TOML file, environment and flags, resolved once into [`Config`].
//!
//! Precedence for every setting: command-line flag, then environment (`MAILCTL_*`), then the config file, then
//! the built-in default. The config file is `--config FILE` / `MAILCTL_CONFIG`, else `/etc/mailctl/mailctl.toml`
//! when it exists; an explicitly named file that cannot be read is an error, a missing default file is not.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::password::Scheme;

/// Where the system-wide configuration lives when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mailctl/mailctl.toml";

/// The file as written by the admin; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[database]`
    #[serde(default)]
    pub database: DatabaseSection,
    /// `[passwords]`
    #[serde(default)]
    pub passwords: PasswordSection,
    /// `[mail]`
    #[serde(default)]
    pub mail: MailSection,
    /// `[server]`
    #[serde(default)]
    pub server: ServerSection,
    /// `[dns]`
    #[serde(default)]
    pub dns: DnsSection,
}

/// `[server]`: this mail server's identity on the network.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The server's host name: MX target, SMTP banner and HELO name; must match the PTR of its public IPs.
    pub hostname: Option<String>,
    /// The public IPv4/IPv6 addresses mail leaves from (SPF, A/AAAA, PTR).
    #[serde(default)]
    pub public_ips: Vec<std::net::IpAddr>,
    /// Where `serve` puts accepted mail: `"maildir"` (default, under `[mail] vmail_root`), `"lmtp:HOST:PORT"` or
    /// `"lmtp:/path/to/socket"`.
    pub delivery: Option<String>,
    /// Address of the Prometheus text endpoint (`"127.0.0.1:9425"`); absent = no endpoint.
    pub metrics: Option<String>,
    /// The user `serve` switches to once its ports are bound and its TLS key is read (when started as root).
    pub user: Option<String>,
    /// The group `serve` switches to with `user` (default: that user's primary group).
    pub group: Option<String>,
    /// `[server.listen]`: which sockets `serve` binds.
    #[serde(default)]
    pub listen: ListenSection,
    /// `[server.tls]`: certificate and key for STARTTLS and implicit TLS.
    #[serde(default)]
    pub tls: TlsSection,
    /// `[server.limits]`: resource limits of `serve`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[server.checks]`: what `serve` checks on mail from other servers, and what it does about failures.
    #[serde(default)]
    pub checks: ChecksSection,
    /// `[server.queue]`: where mail for other domains waits, and the retry schedule.
    #[serde(default)]
    pub queue: QueueSection,
    /// `[server.outbound]`: how `serve` delivers to other servers.
    #[serde(default)]
    pub outbound: OutboundSection,
    /// `[server.forwarding]`: how mail forwarded to outside addresses is sent on.
    #[serde(default)]
    pub forwarding: ForwardingSection,
    /// `[server.reports]`: DMARC aggregate and TLS reports received by mail.
    #[serde(default)]
    pub reports: ReportsSection,
    /// `[server.greylisting]`: deferring first-time senders on the MX listener.
    #[serde(default)]
    pub greylisting: GreylistingSection,
    /// `[[server.milters]]`: content filters speaking the milter protocol, asked in this order.
    #[serde(default)]
    pub milters: Vec<MilterSection>,
    /// `[server.https]`: the HTTPS side of the hosted domains (MTA-STS policies, mail client setup).
    #[serde(default)]
    pub https: HttpsSection,
    /// `[server.acme]`: certificates from an ACME CA (Let's Encrypt) instead of `[server.tls]` files.
    #[serde(default)]
    pub acme: AcmeSection,
}

/// `[server.acme]`: the listeners' certificate obtained and renewed from an ACME CA (off unless `directory` is
/// set). Defaults and rules in [`crate::acme::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The CA's directory URL, like `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: Option<String>,
    /// The account's contact, like `mailto:postmaster@example.org` (the CA's expiry notices go there).
    pub contact: Option<String>,
    /// `tls-alpn-01` (default: answered on the `[server.https]` listener, port 443) or `http-01`.
    pub challenge: Option<String>,
    /// Where `http-01` challenges are answered, like `[::]:80` (required with `http-01`).
    pub http_listen: Option<String>,
    /// Where the account, the key and the certificate are kept (default `/var/lib/mailctl/acme`).
    pub dir: Option<std::path::PathBuf>,
    /// Renew this many days before the certificate expires (default 30).
    pub renew_days: Option<u32>,
    /// Keep the private key across renewals (default true: TLSA 3 1 1 records stay valid).
    pub reuse_key: Option<bool>,
    /// Extra CA certificates (PEM) trusted for the CA's own HTTPS, for a private or test CA.
    pub directory_ca: Option<std::path::PathBuf>,
}

/// `[server.https]`: an HTTPS listener (off unless `listen` is set) serving, by Host, each hosted domain's
/// MTA-STS policy and the files mail clients fetch to set themselves up. Defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSection {
    /// Address to listen on, like `[::]:443` (default: off). Needs `[server.tls]`.
    pub listen: Option<String>,
    /// The IMAP server clients are pointed at (default: `server.hostname`).
    pub imap_host: Option<String>,
    /// Its implicit-TLS port (default 993).
    pub imap_port: Option<u16>,
    /// The submission port clients are pointed at, STARTTLS (default 587).
    pub submission_port: Option<u16>,
    /// The MTA-STS mode of the served policies: `testing` (default, as `dns records`) or `enforce`.
    pub mta_sts_mode: Option<String>,
}

/// `[[server.milters]]`: one content filter (rspamd, OpenDKIM, ClamAV...) speaking Sendmail's milter
/// protocol. Only `address` is required; defaults in [`crate::smtp::inbound::milter`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterSection {
    /// `inet:IP:PORT` or `unix:/path/to/socket`.
    pub address: String,
    /// The listeners whose mail it sees: smtp, submission, submissions (default `["smtp"]`).
    pub listeners: Option<Vec<String>>,
    /// Seconds to wait for a permit, the connection and each reply (default 30).
    pub timeout: Option<u64>,
    /// `tempfail` (default) or `accept`: what happens to a message when the milter is down or too slow.
    pub default_action: Option<String>,
    /// Conversations with it at once (default 64).
    pub concurrency: Option<usize>,
}

/// `[server.greylisting]`: mail from a client network, sender and recipient never seen together is deferred
/// once (`451 4.7.1`) and taken when the client retries after `delay`. Off by default. Every key optional;
/// defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreylistingSection {
    /// Turn it on (default false).
    pub enabled: Option<bool>,
    /// Seconds a first-time triplet must wait before a retry is taken (default 300).
    pub delay: Option<u64>,
    /// Hours within which the retry must come, else the triplet starts over (default 24).
    pub retry_window: Option<u64>,
    /// Days a client network that retried once stays exempt (default 35).
    pub whitelist_days: Option<u64>,
}

/// `[server.reports]`: which addresses receive the reports other servers send, and whether the report mail is
/// delivered to their mailboxes too. Every key optional; defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsSection {
    /// Mail to these addresses is searched for reports (default: `postmaster@` of every hosted domain, where
    /// `mailctl dns records` asks receivers to send them); an empty list turns it off.
    pub addresses: Option<Vec<String>>,
    /// Deliver report mail to the mailbox as well (default true).
    pub keep: Option<bool>,
    /// Send DMARC aggregate reports about the mail received to the domains that ask for them, daily
    /// (default true).
    pub send: Option<bool>,
    /// The address the reports come from, also their envelope sender (default: `postmaster@` the hosted
    /// domain of `server.hostname`); reports are DKIM-signed with its domain's active key.
    pub from: Option<String>,
    /// The organization named in the reports (default: the domain of `from`).
    pub org_name: Option<String>,
}

/// `[server.forwarding]`: mail from outside forwarded to an outside address (an alias target in another
/// domain). Every key optional; defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingSection {
    /// Rewrite the envelope sender with SRS (default true).
    pub srs: Option<bool>,
    /// `[server.forwarding.domains."example.org"]`: settings of one forwarding domain, over the global ones.
    #[serde(default)]
    pub domains: std::collections::BTreeMap<String, ForwardingDomainSection>,
}

/// `[server.forwarding.domains."DOMAIN"]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingDomainSection {
    /// Rewrite the envelope sender with SRS for mail this domain forwards.
    pub srs: Option<bool>,
}

/// `[server.queue]`: every key optional; defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// `"spool"` (default: a directory) or `"database"` (the MySQL/MariaDB database, shared by several nodes).
    pub backend: Option<String>,
    /// The spool directory (default `/var/spool/mailctl`).
    pub spool_dir: Option<PathBuf>,
    /// Seconds before the first retry (default 300); each later retry waits twice as long.
    pub retry_initial: Option<u64>,
    /// Longest wait between retries, seconds (default 14400).
    pub retry_max: Option<u64>,
    /// Seconds after which undelivered mail is bounced (default 432000, 5 days).
    pub lifetime: Option<u64>,
    /// Seconds after which the sender is warned that delivery is delayed (default 14400).
    pub delay_warning: Option<u64>,
    /// Seconds a node holds a claimed entry before another node may take it over (default 600); with the
    /// database queue this is how long the entries of a node that died wait.
    pub lease: Option<u64>,
}

/// `[server.outbound]`: every key optional; defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSection {
    /// The port remote MX hosts are contacted on (default 25; tests use another).
    pub port: Option<u16>,
    /// Most deliveries in flight at once (default 20).
    pub concurrency: Option<usize>,
    /// Most deliveries in flight to one destination domain (default 4).
    pub per_domain: Option<usize>,
    /// Seconds to wait for a connection, the greeting and each reply (default 60; the end of DATA gets 600).
    pub timeout: Option<u64>,
    /// A PEM file of CA certificates trusted besides webpki-roots for verified TLS (MTA-STS `enforce`) and
    /// MTA-STS policy fetches: a private CA, a lab (default: none).
    pub extra_ca: Option<PathBuf>,
    /// The port MTA-STS policies are fetched from (default 443, what RFC 8461 prescribes; a lab may differ).
    pub mta_sts_port: Option<u16>,
    /// `[server.outbound.relay]`: send everything through a relay host (smarthost) instead of to the
    /// recipients' MX hosts (default: none).
    pub relay: Option<RelaySection>,
}

/// `[server.outbound.relay]`: the relay host every outbound message goes through (a provider's submission
/// server, when port 25 or the PTR of this host are unusable). Checked by [`crate::smtp::outbound::relay`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// `smtp://HOST[:PORT]` (STARTTLS, port 587 by default) or `smtps://HOST[:PORT]` (implicit TLS, 465).
    pub url: Option<String>,
    /// `"required"` (default: a verified certificate for HOST) or `"none"` (a relay on loopback only).
    pub tls: Option<String>,
    /// A PEM file of CA certificates trusted besides webpki-roots for the relay (a private relay).
    pub ca: Option<PathBuf>,
    /// AUTH PLAIN/LOGIN as this user (never without TLS).
    pub username: Option<String>,
    /// The file holding the password (read at start; never in argv, config output or logs).
    pub password_file: Option<PathBuf>,
    /// The SPF `include:` domain of the relay provider, which `mailctl dns records` adds to the SPF record.
    pub spf_include: Option<String>,
}

/// `[server.listen]`: one address per listener (`"[::]:25"`, `"127.0.0.1:2525"`), or `"off"`.
/// Absent keys take the defaults `[::]:25`, `[::]:587` and `[::]:465`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// The MX listener: mail from other servers to the hosted domains; never offers AUTH.
    pub smtp: Option<String>,
    /// Message submission (587): STARTTLS, then AUTH, then mail to anywhere.
    pub submission: Option<String>,
    /// Submission over implicit TLS (465).
    pub submissions: Option<String>,
}

/// `[server.tls]`: PEM files, re-read on SIGHUP.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate chain, leaf first (e.g. Let's Encrypt's `fullchain.pem`).
    pub cert: Option<PathBuf>,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key: Option<PathBuf>,
}

/// `[server.limits]`: every key optional; defaults in [`crate::smtp::settings`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_size: Option<u64>,
    /// Most recipients in one transaction.
    pub max_recipients: Option<usize>,
    /// Most simultaneous connections over all listeners.
    pub max_connections: Option<usize>,
    /// Most simultaneous connections from one client IP.
    pub max_connections_per_ip: Option<usize>,
    /// Seconds to wait for a command line before closing the connection.
    pub command_timeout: Option<u64>,
    /// Seconds to wait for more DATA before closing the connection.
    pub data_timeout: Option<u64>,
    /// Failed AUTH attempts from one IP before it is locked out.
    pub auth_max_failures: Option<u32>,
    /// Seconds an IP stays locked out of AUTH after too many failures.
    pub auth_lockout: Option<u64>,
    /// Seconds to wait before the greeting for a client that talks first (0, the default: only input
    /// already there when the greeting is sent is caught).
    pub greet_pause: Option<u64>,
}

/// `[server.checks]`: per-check action for inbound mail from other servers: `"reject"`, `"mark"` (file into
/// Junk) or `"off"`; plus the DNS blocklists to consult.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksSection {
    /// SPF of MAIL FROM (and HELO when MAIL FROM is empty).
    pub spf: Option<String>,
    /// DKIM signatures.
    pub dkim: Option<String>,
    /// DMARC policy of the From domain.
    pub dmarc: Option<String>,
    /// iprev: the client IP's PTR name must resolve back to it.
    pub iprev: Option<String>,
    /// DNS blocklists of the client IP.
    pub dnsbl: Option<String>,
    /// The DNSBL zones to query, e.g. `["zen.spamhaus.org"]`.
    pub dnsbl_lists: Option<Vec<String>>,
}

/// `[dns]`: how mailctl resolves names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Ask this nameserver (`IP` or `IP:PORT`) instead of the system resolver (`/etc/resolv.conf`).
    pub nameserver: Option<String>,
}

/// `[database]`: which store to use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `mysql://user:pass@host:port/db` or `sqlite:///path/to/file.db`.
    pub url: Option<String>,
}

/// `[passwords]`: how new passwords are hashed and what is accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSection {
    /// `SHA512-CRYPT` (default), `BLF-CRYPT` or `ARGON2ID`.
    pub scheme: Option<String>,
    /// Minimum length of a new password (default 8).
    pub min_length: Option<usize>,
}

/// `[mail]`: where Maildirs live and which system user owns them (used by the generated Dovecot config).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    /// Root of all Maildirs (default `/var/vmail`); a mailbox lives at `<root>/<domain>/<local>/`.
    pub vmail_root: Option<PathBuf>,
    /// Numeric uid owning the Maildirs (default 5000).
    pub vmail_uid: Option<u32>,
    /// Numeric gid owning the Maildirs (default 5000).
    pub vmail_gid: Option<u32>,
}

/// Where the database URL came from, reported by `db status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `--database-url`
    Flag,
    /// `MAILCTL_DATABASE_URL`
    Env,
    /// the config file
    ConfigFile,
    /// the built-in SQLite default
    Default,
}

/// Fully resolved settings for one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database URL (may contain a password; redact before printing).
    pub database_url: String,
    /// Where `database_url` came from.
    pub database_source: Source,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Scheme for newly hashed passwords.
    pub password_scheme: Scheme,
    /// Minimum length of a new password.
    pub min_password_length: usize,
    /// Root of all Maildirs.
    pub vmail_root: PathBuf,
    /// Owner uid of the Maildirs.
    pub vmail_uid: u32,
    /// Owner gid of the Maildirs.
    pub vmail_gid: u32,
    /// `server.hostname`, if set.
    pub hostname: Option<String>,
    /// `server.public_ips`.
    pub public_ips: Vec<std::net::IpAddr>,
    /// `dns.nameserver`, if set (a `--nameserver` flag overrides it).
    pub nameserver: Option<String>,
    /// `[server]` as written, for `serve`, which validates it into [`crate::smtp::settings::Settings`].
    pub server: ServerSection,
    /// Problems worth a warning that do not stop the run (a world-readable file holding the database
    /// password); `cli` prints them, `serve` logs them.
    pub warnings: Vec<String>,
}

/// The values that flags and environment may set, already merged by clap (flag beats env).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config` / `MAILCTL_CONFIG`.
    pub config_path: Option<PathBuf>,
    /// `--database-url` (flag) value.
    pub database_url_flag: Option<String>,
    /// `MAILCTL_DATABASE_URL` value.
    pub database_url_env: Option<String>,
}

impl Config {
    /// Resolves the configuration from overrides, the config file and defaults.
    pub fn load(o: &Overrides) -> Result<Config> {
        let (file, config_file) = match &o.config_path {
            Some(p) => (read_file(p)?, Some(p.clone())),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                let p = PathBuf::from(DEFAULT_CONFIG_PATH);
                (read_file(&p)?, Some(p))
            }
            None => (FileConfig::default(), None),
        };
        let warnings = config_file
            .as_deref()
            .and_then(|p| exposed_password(p, &file))
            .into_iter()
            .collect();
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let (database_url, database_source) = if let Some(u) = non_empty(&o.database_url_flag) {
            (u, Source::Flag)
        } else if let Some(u) = non_empty(&o.database_url_env) {
            (u, Source::Env)
        } else if let Some(u) = non_empty(&file.database.url) {
            (u, Source::ConfigFile)
        } else {
            (default_database_url(), Source::Default)
        };
        let password_scheme = match &file.passwords.scheme {
            Some(s) => s
                .parse::<Scheme>()
                .map_err(|e| config_error(&config_file, &e))?,
            None => Scheme::default(),
        };
        Ok(Config {
            database_url,
            database_source,
            config_file,
            password_scheme,
            min_password_length: file.passwords.min_length.unwrap_or(8),
            vmail_root: file
                .mail
                .vmail_root
                .unwrap_or_else(|| PathBuf::from("/var/vmail")),
            vmail_uid: file.mail.vmail_uid.unwrap_or(5000),
            vmail_gid: file.mail.vmail_gid.unwrap_or(5000),
            hostname: file.server.hostname.clone(),
            public_ips: file.server.public_ips.clone(),
            nameserver: file.dns.nameserver,
            server: file.server,
            warnings,
        })
    }
}

fn config_error(file: &Option<PathBuf>, msg: &str) -> Error {
    match file {
        Some(p) => Error::usage(format!("config file {}: {msg}", p.display())),
        None => Error::usage(msg.to_string()),
    }
}

/// The warning for a config file that every local user may read while it holds the database password (the
/// only secret the file format has: the password of a `mysql://` URL in `[database] url`).
fn exposed_password(path: &Path, file: &FileConfig) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let url = file.database.url.as_deref()?;
    let has_password = match url::Url::parse(url.trim()) {
        Ok(u) => u.password().is_some_and(|p| !p.is_empty()),
        Err(_) => crate::store::redact_url(url) != url,
    };
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (has_password && mode & 0o004 != 0).then(|| {
        format!(
            "config file {0} is readable by every user and holds the database password: \
             chmod 640 {0} (and chgrp it to the group mailctl runs as)",
            path.display()
        )
    })
}

fn read_file(path: &Path) -> Result<FileConfig> {
    // A config file named on the command line that cannot be read is a usage error, like a bad flag.
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("cannot read config file {}: {e}", path.display())))?;
    parse(&text).map_err(|e| Error::usage(format!("config file {}: {e}", path.display())))
}

/// Parses config text; the error is one line naming the offending key or position.
pub fn parse(text: &str) -> std::result::Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| {
        // The message may quote a key as written, and a quoted key can hold any character (`"a\nb" = 1`):
        // control characters are escaped so the error stays one line and cannot forge terminal or log output.
        let msg = crate::model::one_line(e.message().trim());
        match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                match key_at(text, line) {
                    Some(key) => format!("line {line}: {key}: {msg}"),
                    None => format!("line {line}: {msg}"),
                }
            }
            None => msg,
        }
    })
}

/// The dotted key a `key = value` line on `line` (1-based) sets, with the table header above it:
/// `server.forwarding.srs` for `srs = "yes"` under `[server.forwarding]`. `None` where the line is not a
/// plain assignment (a header, a continuation of a multi-line value), so the message never guesses.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let (lhs, _) = here.split_once('=')?;
    let lhs = lhs.trim();
    let plain = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.\" ".contains(c))
    };
    if !plain(lhs) || lhs.starts_with('[') {
        return None;
    }
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['));
    let key = lhs.split('.').map(str::trim).collect::<Vec<_>>().join(".");
    Some(match table {
        Some(header) => {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            if name.is_empty() || !plain(name) {
                return None;
            }
            format!("{name}.{key}")
        }
        None => key,
    })
}

/// The embedded default: a SQLite file in the user's data directory.
///
/// `$XDG_DATA_HOME/mailctl/mailctl.db`, else `$HOME/.local/share/mailctl/mailctl.db`, else `./mailctl.db`.
pub fn default_sqlite_path() -> PathBuf {
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env_dir("XDG_DATA_HOME") {
        d.join("mailctl").join("mailctl.db")
    } else if let Some(h) = env_dir("HOME") {
        h.join(".local/share/mailctl/mailctl.db")
    } else {
        PathBuf::from("mailctl.db")
    }
}

fn default_database_url() -> String {
    format!("sqlite://{}", default_sqlite_path().display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let err = parse("[database]\nurl = \"sqlite://x\"\nulr = 1\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(err.contains("ulr"), "{err}");
    }

    #[test]
    fn errors_quoting_a_key_with_control_characters_stay_one_line() {
        // Found by fuzz/fuzz_targets/config.rs: the unknown key came back with a raw newline and ESC.
        let err = parse("[server]\n\"a\\nb\\u001b[2J\" = 1\n").unwrap_err();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(
            err.starts_with("line 2: unknown field `a\\nb\\u{1b}[2J`"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let f = parse("").unwrap();
        assert!(f.database.url.is_none());
    }
}
