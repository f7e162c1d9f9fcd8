//! `serve`'s settings: the `[server]` section of the config (plus `[mail]` and `[dns]`), validated once at start
//! (and by `serve --check-config`) into values the daemon can use without re-checking.
//!
//! Every problem is reported as one line naming the key that was wrong; nothing is half-applied.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};

/// The three kinds of listener, which differ in what they offer and whom they serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerKind {
    /// Port 25: mail from other servers to the hosted domains. Never offers AUTH; runs the inbound checks.
    Smtp,
    /// Port 587: STARTTLS, then AUTH, then mail to anywhere.
    Submission,
    /// Port 465: like submission, with TLS from the first byte.
    Submissions,
}

impl ListenerKind {
    /// Every kind, in the order they are reported.
    pub const ALL: [ListenerKind; 3] = [
        ListenerKind::Smtp,
        ListenerKind::Submission,
        ListenerKind::Submissions,
    ];

    /// The name used in the config, `--listen`, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
        }
    }

    /// The address bound when the config names none.
    pub fn default_addr(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "[::]:25",
            ListenerKind::Submission => "[::]:587",
            ListenerKind::Submissions => "[::]:465",
        }
    }

    /// Parses a listener name as written in the config or `--listen`.
    pub fn parse(name: &str) -> Option<ListenerKind> {
        ListenerKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether clients may authenticate here (never on the MX listener).
    pub fn offers_auth(self) -> bool {
        self != ListenerKind::Smtp
    }
}

/// What the inbound checks do with a failing result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Refuse the mail with a 5xx naming the check.
    Reject,
    /// Accept, and file the mail into the recipient's Junk folder.
    Mark,
    /// Do not run the check (nor report it in Authentication-Results).
    Off,
}

impl Action {
    fn parse(key: &str, value: Option<&str>, default: Action) -> Result<Action> {
        match value {
            None => Ok(default),
            Some("reject") => Ok(Action::Reject),
            Some("mark") => Ok(Action::Mark),
            Some("off") => Ok(Action::Off),
            Some(other) => Err(Error::usage(format!(
                "server.checks.{key}: unknown action '{other}' (expected reject, mark or off)"
            ))),
        }
    }
}

/// The per-check actions and the DNSBL zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPolicy {
    /// SPF `fail` of MAIL FROM (or of HELO for the null sender). Default: mark.
    pub spf: Action,
    /// DKIM: the message carries signatures and none of them verifies. Default: mark.
    pub dkim: Action,
    /// DMARC failure: `reject` honours the domain's `p=` (reject → 550, quarantine → Junk, none → nothing);
    /// `mark` files every failure into Junk. Default: reject.
    pub dmarc: Action,
    /// iprev `fail` (the client IP has no PTR name that resolves back to it). Default: off, since many
    /// legitimate small senders lack one; the result still shows in the log line when enabled.
    pub iprev: Action,
    /// A listing on any of `dnsbl_lists`. Default: reject (with no lists configured nothing is queried).
    pub dnsbl: Action,
    /// DNSBL zones, e.g. `zen.spamhaus.org`.
    pub dnsbl_lists: Vec<String>,
}

/// Where accepted mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryTarget {
    /// Durable Maildir delivery under this base directory (`[mail] vmail_root`).
    Maildir(PathBuf),
    /// LMTP to `HOST:PORT` (e.g. Dovecot's lmtp listener).
    LmtpTcp(String),
    /// LMTP over a unix socket (e.g. `/run/dovecot/lmtp`).
    LmtpUnix(PathBuf),
}

/// Resource limits; see `[server.limits]` in the README for the meaning and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in bytes (SIZE).
    pub max_message_size: u64,
    /// Most RCPTs per transaction.
    pub max_recipients: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Most simultaneous connections per client IP.
    pub max_connections_per_ip: usize,
    /// Wait for a command line.
    pub command_timeout: Duration,
    /// Wait for more DATA.
    pub data_timeout: Duration,
    /// Failed AUTHs from one IP before lockout.
    pub auth_max_failures: u32,
    /// How long a locked-out IP stays locked out.
    pub auth_lockout: Duration,
    /// How long to wait, before the greeting, for a client that talks first (zero: no wait).
    pub greet_pause: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 26_214_400,
            max_recipients: 100,
            max_connections: 20_000,
            max_connections_per_ip: 50,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            auth_max_failures: 5,
            auth_lockout: Duration::from_secs(300),
            greet_pause: Duration::ZERO,
        }
    }
}

/// Which queue backend holds mail for other domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueBackend {
    /// A spool directory on this machine.
    Spool(PathBuf),
    /// The MySQL/MariaDB database, shared by every node that uses it.
    Database,
}

/// The outbound queue and its retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Where queued mail lives.
    pub backend: QueueBackend,
    /// Retry schedule, lifetime and delay-warning age.
    pub backoff: crate::smtp::queue::Backoff,
    /// How long a claim on an entry lasts (renewed while a delivery runs).
    pub lease: Duration,
}

/// How mail leaves for other servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSettings {
    /// Remote port (25 in production).
    pub port: u16,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight per destination domain.
    pub per_domain: usize,
    /// Connect, greeting and per-command timeout.
    pub timeout: Duration,
    /// CA certificates trusted besides webpki-roots (`extra_ca`), loaded when the daemon starts.
    pub extra_ca: Option<PathBuf>,
    /// Port of MTA-STS policy fetches (443).
    pub mta_sts_port: u16,
    /// The relay every message goes through, when configured (`[server.outbound.relay]`).
    pub relay: Option<crate::smtp::outbound::relay::RelaySettings>,
}

/// Everything `serve` needs from the configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Banner and HELO name.
    pub hostname: String,
    /// Bound listeners, in order; a kind appears at most once.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    /// Certificate chain and key files, when TLS is configured.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Resource limits.
    pub limits: Limits,
    /// Inbound check actions.
    pub checks: CheckPolicy,
    /// Where accepted mail goes.
    pub delivery: DeliveryTarget,
    /// Prometheus endpoint address.
    pub metrics: Option<SocketAddr>,
    /// The outbound queue.
    pub queue: QueueSettings,
    /// Outbound delivery.
    pub outbound: OutboundSettings,
    /// Forwarding to outside addresses.
    pub forwarding: ForwardingSettings,
    /// `[server.reports]`.
    pub reports: ReportsSettings,
    /// `[server.greylisting]`.
    pub greylisting: GreylistSettings,
    /// `[[server.milters]]`, in order.
    pub milters: Vec<crate::smtp::inbound::milter::MilterSettings>,
    /// `[server.https]`, when it listens.
    pub https: Option<HttpsSettings>,
    /// `[server.acme]`, when the certificate comes from an ACME CA (then `tls` names its files).
    pub acme: Option<crate::acme::AcmeSettings>,
    /// Database URL.
    pub database_url: String,
    /// Nameserver override (`[dns] nameserver` or `--nameserver`).
    pub nameserver: Option<String>,
    /// `server.user` / `server.group`, looked up: whom a root-started daemon becomes once its ports are bound.
    pub run_as: Option<crate::smtp::daemon::privileges::RunAs>,
}

impl Settings {
    /// Validates the configuration. `listen` holds `--listen NAME=ADDR` overrides: when any is given, exactly
    /// the named listeners run (so a test or an unprivileged run binds nothing it did not ask for).
    pub fn from_config(config: &Config, listen: &[String]) -> Result<Settings> {
        let server = &config.server;
        let hostname = hostname(config)?;
        let listeners = listeners(&server.listen, listen)?;
        let run_as = match (&server.user, &server.group) {
            (Some(user), group) => Some(crate::smtp::daemon::privileges::RunAs::resolve(
                user,
                group.as_deref(),
            )?),
            (None, Some(_)) => {
                return Err(Error::usage("server.group is set but server.user is not"));
            }
            (None, None) => None,
        };
        let tls = match (&server.tls.cert, &server.tls.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(Error::usage("server.tls: cert is set but key is not")),
            (None, Some(_)) => return Err(Error::usage("server.tls: key is set but cert is not")),
        };
        let acme_on = server.acme.directory.is_some();
        if acme_on && tls.is_some() {
            return Err(Error::usage(
                "server.acme manages the certificate: remove server.tls cert and key (or server.acme)",
            ));
        }
        let https = https(&server.https, &hostname, tls.is_some() || acme_on)?;
        let acme =
            crate::acme::settings::settings(&server.acme, https.as_ref(), &config.public_ips)?;
        let tls = match &acme {
            Some(a) => Some(a.files()),
            None => tls,
        };
        if tls.is_none()
            && let Some((_, addr)) = listeners
                .iter()
                .find(|(k, _)| *k == ListenerKind::Submissions)
        {
            return Err(Error::usage(format!(
                "listener submissions ({addr}) needs server.tls cert and key (or turn it off)"
            )));
        }
        if https.is_some() && config.hostname.is_none() {
            return Err(Error::usage(
                "server.https needs server.hostname: the MTA-STS policy names it as the MX, exactly as \
                 `mailctl dns records` prints it",
            ));
        }
        Ok(Settings {
            https,
            acme,
            hostname,
            listeners,
            tls,
            limits: limits(&server.limits)?,
            checks: checks(&server.checks)?,
            delivery: delivery(server.delivery.as_deref(), &config.vmail_root)?,
            metrics: server
                .metrics
                .as_deref()
                .map(|m| {
                    m.parse::<SocketAddr>().map_err(|_| {
                        Error::usage(format!("server.metrics: '{m}' is not an IP:PORT address"))
                    })
                })
                .transpose()?,
            queue: queue(&server.queue, &config.database_url)?,
            outbound: outbound(&server.outbound)?,
            forwarding: forwarding(&server.forwarding)?,
            reports: reports(&server.reports)?,
            greylisting: greylisting(&server.greylisting)?,
            milters: crate::smtp::inbound::milter::settings(&server.milters)?,
            database_url: config.database_url.clone(),
            nameserver: config.nameserver.clone(),
            run_as,
        })
    }
}

/// `[server.forwarding]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingSettings {
    /// SRS for every forwarding domain without a setting of its own.
    pub srs: bool,
    /// Forwarding domains (lower-case) whose SRS setting differs from `srs`.
    pub srs_by_domain: std::collections::BTreeMap<String, bool>,
}

impl Default for ForwardingSettings {
    fn default() -> Self {
        ForwardingSettings {
            srs: true,
            srs_by_domain: Default::default(),
        }
    }
}

impl ForwardingSettings {
    /// Whether mail forwarded by `domain` gets an SRS sender.
    pub fn srs_for(&self, domain: &str) -> bool {
        self.srs_by_domain
            .get(&domain.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.srs)
    }
}

/// Validates `[server.forwarding]`: domain keys must be domain names.
fn forwarding(file: &crate::config::ForwardingSection) -> Result<ForwardingSettings> {
    let mut out = ForwardingSettings {
        srs: file.srs.unwrap_or(true),
        ..ForwardingSettings::default()
    };
    for (name, section) in &file.domains {
        let domain = name
            .parse::<crate::model::DomainName>()
            .map_err(|e| Error::usage(format!("server.forwarding.domains: {e}")))?;
        if let Some(srs) = section.srs {
            out.srs_by_domain.insert(domain.to_string(), srs);
        }
    }
    Ok(out)
}

/// `[server.reports]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportsSettings {
    /// The report addresses (lower case); None: `postmaster@` of every hosted domain.
    pub addresses: Option<Vec<String>>,
    /// Deliver report mail to the mailboxes too.
    pub keep: bool,
    /// Send our own reports daily.
    pub send: bool,
    /// The address our reports come from (None: `postmaster@` the hosted domain of the host name).
    pub from: Option<String>,
    /// The organization named in our reports (None: the domain of `from`).
    pub org_name: Option<String>,
}

impl Default for ReportsSettings {
    fn default() -> Self {
        ReportsSettings {
            addresses: None,
            keep: true,
            send: true,
            from: None,
            org_name: None,
        }
    }
}

impl ReportsSettings {
    /// Whether mail to `recipient` (an accepted RCPT, so in a hosted domain) is searched for reports.
    pub fn is_report_address(&self, recipient: &str) -> bool {
        let recipient = recipient.to_ascii_lowercase();
        match &self.addresses {
            None => recipient
                .rsplit_once('@')
                .is_some_and(|(local, _)| local == "postmaster"),
            Some(list) => list.contains(&recipient),
        }
    }
}

/// `[server.https]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSettings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The IMAP server for clients.
    pub imap_host: String,
    /// Its implicit-TLS port.
    pub imap_port: u16,
    /// The submission (STARTTLS) port for clients.
    pub submission_port: u16,
    /// `testing` or `enforce`.
    pub mta_sts_mode: String,
}

/// Validates `[server.https]`: `None` when it does not listen.
fn https(
    file: &crate::config::HttpsSection,
    hostname: &str,
    tls: bool,
) -> Result<Option<HttpsSettings>> {
    let Some(listen) = &file.listen else {
        return Ok(None);
    };
    let listen = listen.parse::<SocketAddr>().map_err(|_| {
        Error::usage(format!(
            "server.https.listen: '{listen}' is not an IP:PORT address"
        ))
    })?;
    if !tls {
        return Err(Error::usage(
            "server.https.listen needs server.tls cert and key (the certificate must name mta-sts.DOMAIN and \
             autoconfig.DOMAIN of every hosted domain), or [server.acme] to obtain one",
        ));
    }
    let mode = file.mta_sts_mode.as_deref().unwrap_or("testing");
    if !matches!(mode, "testing" | "enforce") {
        return Err(Error::usage(format!(
            "server.https.mta_sts_mode: '{mode}' is neither testing nor enforce"
        )));
    }
    let imap_host = match &file.imap_host {
        Some(h) => h
            .parse::<crate::model::DomainName>()
            .map_err(|e| Error::usage(format!("server.https.imap_host: {e}")))?
            .to_string(),
        None => hostname.to_string(),
    };
    Ok(Some(HttpsSettings {
        listen,
        imap_host,
        imap_port: file.imap_port.unwrap_or(993),
        submission_port: file.submission_port.unwrap_or(587),
        mta_sts_mode: mode.to_string(),
    }))
}

/// `[server.greylisting]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreylistSettings {
    /// On.
    pub enabled: bool,
    /// How long a first-time triplet waits.
    pub delay: Duration,
    /// Within how long the retry must come.
    pub retry_window: Duration,
    /// How long a network that retried stays exempt.
    pub whitelist: Duration,
}

impl Default for GreylistSettings {
    fn default() -> Self {
        GreylistSettings {
            enabled: false,
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(24 * 3600),
            whitelist: Duration::from_secs(35 * 86_400),
        }
    }
}

/// Validates `[server.greylisting]`: the delay shorter than the retry window, none of them zero.
fn greylisting(file: &crate::config::GreylistingSection) -> Result<GreylistSettings> {
    let d = GreylistSettings::default();
    let delay = file.delay.map_or(d.delay, Duration::from_secs);
    let retry_window = file.retry_window.map_or(d.retry_window, |h| {
        Duration::from_secs(h.saturating_mul(3600))
    });
    let whitelist = file.whitelist_days.map_or(d.whitelist, |days| {
        Duration::from_secs(days.saturating_mul(86_400))
    });
    if delay.is_zero() || delay >= retry_window {
        return Err(Error::usage(
            "server.greylisting.delay: must be at least 1 second and shorter than retry_window",
        ));
    }
    if whitelist.is_zero() {
        return Err(Error::usage(
            "server.greylisting.whitelist_days: must be at least 1",
        ));
    }
    Ok(GreylistSettings {
        enabled: file.enabled.unwrap_or(false),
        delay,
        retry_window,
        whitelist,
    })
}

/// `server.hostname`, or the system's host name when it is a fully qualified domain name.
pub fn hostname(config: &Config) -> Result<String> {
    match &config.hostname {
        Some(h) => Ok(h
            .parse::<crate::model::DomainName>()
            .map_err(|e| Error::usage(format!("server.hostname: {e}")))?
            .to_string()),
        None => system_hostname(),
    }
}

/// Validates `[server.reports]` (also used by `mailctl reports send`): the addresses must be addresses.
pub fn reports(file: &crate::config::ReportsSection) -> Result<ReportsSettings> {
    let addresses = match &file.addresses {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|a| {
                    a.parse::<crate::model::Address>()
                        .map(|a| a.to_string().to_ascii_lowercase())
                        .map_err(|e| Error::usage(format!("server.reports.addresses: {e}")))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let from = match &file.from {
        None => None,
        Some(a) => Some(
            a.parse::<crate::model::Address>()
                .map(|a| a.to_string().to_ascii_lowercase())
                .map_err(|e| Error::usage(format!("server.reports.from: {e}")))?,
        ),
    };
    let org_name = match file.org_name.as_deref().map(str::trim) {
        Some("") => return Err(Error::usage("server.reports.org_name: must not be empty")),
        other => other.map(str::to_string),
    };
    Ok(ReportsSettings {
        addresses,
        keep: file.keep.unwrap_or(true),
        send: file.send.unwrap_or(true),
        from,
        org_name,
    })
}

/// Validates `[server.queue]` alone (also used by `mailctl queue`, which needs no listeners).
pub fn queue(file: &crate::config::QueueSection, database_url: &str) -> Result<QueueSettings> {
    let backend = match file.backend.as_deref() {
        None | Some("spool") => QueueBackend::Spool(
            file.spool_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/spool/mailctl")),
        ),
        Some("database") => {
            if !(database_url.starts_with("mysql:") || database_url.starts_with("mariadb:")) {
                return Err(Error::usage(
                    "server.queue.backend = \"database\" needs a MySQL/MariaDB database (the queue is shared by nodes)",
                ));
            }
            QueueBackend::Database
        }
        Some(other) => {
            return Err(Error::usage(format!(
                "server.queue.backend: unknown backend '{other}' (expected spool or database)"
            )));
        }
    };
    let mut backoff = crate::smtp::queue::Backoff::default();
    let secs = |key: &str, v: Option<u64>, default: Duration| -> Result<Duration> {
        match v {
            Some(0) => Err(Error::usage(format!(
                "server.queue.{key}: must be at least 1"
            ))),
            Some(v) => Ok(Duration::from_secs(v)),
            None => Ok(default),
        }
    };
    backoff.initial = secs("retry_initial", file.retry_initial, backoff.initial)?;
    backoff.max = secs("retry_max", file.retry_max, backoff.max)?;
    backoff.give_up_after = secs("lifetime", file.lifetime, backoff.give_up_after)?;
    backoff.warn_after = secs("delay_warning", file.delay_warning, backoff.warn_after)?;
    backoff
        .validate()
        .map_err(|e| Error::usage(format!("server.queue: {e}")))?;
    let lease = secs("lease", file.lease, Duration::from_secs(600))?;
    if lease < Duration::from_secs(10) {
        return Err(Error::usage(
            "server.queue.lease: must be at least 10 seconds",
        ));
    }
    Ok(QueueSettings {
        backend,
        backoff,
        lease,
    })
}

fn outbound(file: &crate::config::OutboundSection) -> Result<OutboundSettings> {
    let at_least_one = |key: &str, v: Option<usize>, default: usize| -> Result<usize> {
        match v {
            Some(0) => Err(Error::usage(format!(
                "server.outbound.{key}: must be at least 1"
            ))),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    for (key, port) in [("port", file.port), ("mta_sts_port", file.mta_sts_port)] {
        if port == Some(0) {
            return Err(Error::usage(format!(
                "server.outbound.{key}: must be a port number from 1 to 65535"
            )));
        }
    }
    Ok(OutboundSettings {
        port: file.port.unwrap_or(25),
        concurrency: at_least_one("concurrency", file.concurrency, 20)?,
        per_domain: at_least_one("per_domain", file.per_domain, 4)?,
        timeout: Duration::from_secs(
            at_least_one("timeout", file.timeout.map(|t| t as usize), 60)? as u64,
        ),
        extra_ca: file.extra_ca.clone(),
        mta_sts_port: file.mta_sts_port.unwrap_or(443),
        relay: file
            .relay
            .as_ref()
            .map(crate::smtp::outbound::relay::RelaySettings::from_section)
            .transpose()?,
    })
}

fn listeners(
    file: &crate::config::ListenSection,
    flags: &[String],
) -> Result<Vec<(ListenerKind, SocketAddr)>> {
    let mut chosen: Vec<(ListenerKind, String, String)> = Vec::new();
    if flags.is_empty() {
        for kind in ListenerKind::ALL {
            let value = match kind {
                ListenerKind::Smtp => &file.smtp,
                ListenerKind::Submission => &file.submission,
                ListenerKind::Submissions => &file.submissions,
            };
            let value = value.as_deref().unwrap_or(kind.default_addr());
            chosen.push((
                kind,
                value.to_string(),
                format!("server.listen.{}", kind.name()),
            ));
        }
    } else {
        for flag in flags {
            let (name, addr) = flag.split_once('=').ok_or_else(|| {
                Error::usage(format!(
                    "--listen '{flag}': expected NAME=ADDR, e.g. smtp=127.0.0.1:2525"
                ))
            })?;
            let kind = ListenerKind::parse(name).ok_or_else(|| {
                Error::usage(format!(
                    "--listen '{flag}': unknown listener '{name}' (expected smtp, submission or submissions)"
                ))
            })?;
            if chosen.iter().any(|(k, _, _)| *k == kind) {
                return Err(Error::usage(format!(
                    "--listen: listener {name} given twice"
                )));
            }
            chosen.push((kind, addr.to_string(), format!("--listen {name}")));
        }
    }
    let mut out = Vec::new();
    for (kind, value, key) in chosen {
        if value == "off" {
            continue;
        }
        let addr = value.parse::<SocketAddr>().map_err(|_| {
            Error::usage(format!(
                "{key}: '{value}' is not an IP:PORT address (or \"off\")"
            ))
        })?;
        out.push((kind, addr));
    }
    if out.is_empty() {
        return Err(Error::usage("every listener is off: nothing to serve"));
    }
    Ok(out)
}

/// The longest `greet_pause`: every connection waits that long for its greeting (postscreen waits 6 s).
const MAX_GREET_PAUSE: u64 = 30;

fn limits(file: &crate::config::LimitsSection) -> Result<Limits> {
    let d = Limits::default();
    let positive = |key: &str, v: Option<u64>, default: u64| -> Result<u64> {
        match v {
            Some(0) => Err(Error::usage(format!(
                "server.limits.{key}: must be at least 1"
            ))),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    Ok(Limits {
        max_message_size: positive(
            "max_message_size",
            file.max_message_size,
            d.max_message_size,
        )?,
        max_recipients: positive(
            "max_recipients",
            file.max_recipients.map(|v| v as u64),
            d.max_recipients as u64,
        )? as usize,
        max_connections: positive(
            "max_connections",
            file.max_connections.map(|v| v as u64),
            d.max_connections as u64,
        )? as usize,
        max_connections_per_ip: positive(
            "max_connections_per_ip",
            file.max_connections_per_ip.map(|v| v as u64),
            d.max_connections_per_ip as u64,
        )? as usize,
        command_timeout: Duration::from_secs(positive(
            "command_timeout",
            file.command_timeout,
            d.command_timeout.as_secs(),
        )?),
        data_timeout: Duration::from_secs(positive(
            "data_timeout",
            file.data_timeout,
            d.data_timeout.as_secs(),
        )?),
        auth_max_failures: positive(
            "auth_max_failures",
            file.auth_max_failures.map(u64::from),
            u64::from(d.auth_max_failures),
        )?
        .min(u64::from(u32::MAX)) as u32,
        auth_lockout: Duration::from_secs(positive(
            "auth_lockout",
            file.auth_lockout,
            d.auth_lockout.as_secs(),
        )?),
        greet_pause: match file.greet_pause {
            Some(s) if s > MAX_GREET_PAUSE => {
                return Err(Error::usage(format!(
                    "server.limits.greet_pause: at most {MAX_GREET_PAUSE} seconds"
                )));
            }
            Some(s) => Duration::from_secs(s),
            None => d.greet_pause,
        },
    })
}

fn checks(file: &crate::config::ChecksSection) -> Result<CheckPolicy> {
    let mut lists = Vec::new();
    for zone in file.dnsbl_lists.clone().unwrap_or_default() {
        let parsed = zone
            .parse::<crate::model::DomainName>()
            .map_err(|e| Error::usage(format!("server.checks.dnsbl_lists: '{zone}': {e}")))?;
        lists.push(parsed.to_string());
    }
    Ok(CheckPolicy {
        spf: Action::parse("spf", file.spf.as_deref(), Action::Mark)?,
        dkim: Action::parse("dkim", file.dkim.as_deref(), Action::Mark)?,
        dmarc: Action::parse("dmarc", file.dmarc.as_deref(), Action::Reject)?,
        iprev: Action::parse("iprev", file.iprev.as_deref(), Action::Off)?,
        dnsbl: Action::parse("dnsbl", file.dnsbl.as_deref(), Action::Reject)?,
        dnsbl_lists: lists,
    })
}

fn delivery(value: Option<&str>, vmail_root: &std::path::Path) -> Result<DeliveryTarget> {
    let bad = |v: &str, why: &str| {
        Error::usage(format!(
            "server.delivery: '{v}' {why} (expected \"maildir\", \"lmtp:HOST:PORT\" or \"lmtp:/path/to/socket\")"
        ))
    };
    match value {
        None | Some("maildir") => Ok(DeliveryTarget::Maildir(vmail_root.to_path_buf())),
        Some(v) => match v.strip_prefix("lmtp:") {
            Some(path) if path.starts_with('/') => {
                Ok(DeliveryTarget::LmtpUnix(PathBuf::from(path)))
            }
            Some(hostport) => match hostport.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                {
                    Ok(DeliveryTarget::LmtpTcp(hostport.to_string()))
                }
                _ => Err(bad(v, "has no valid HOST:PORT")),
            },
            None => Err(bad(v, "is not a delivery method")),
        },
    }
}

/// The kernel's host name, when the config names none; it must be a fully qualified name.
fn system_hostname() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = raw.trim();
    match name.parse::<crate::model::DomainName>() {
        Ok(d) if name.contains('.') => Ok(d.to_string()),
        _ => Err(Error::usage(format!(
            "server.hostname is not set and the system host name '{name}' is not a fully qualified domain name"
        ))),
    }
}
