//! A scriptable SMTP listener and a tiny HTTPS server for the audit's probe tests, and a throw-away CA for their
//! certificates.
//!
//! [`SmtpListener::start`] binds `IP:0` (use a distinct 127.0.0.x per test so tests run in parallel) and serves
//! every connection from its own thread and tokio runtime, following a [`Script`]: the greeting, whether STARTTLS
//! is offered (with which certificate), whether unknown local recipients or outside recipients are accepted. It
//! never accepts DATA and records every command line it received, so a test can prove what the probe sent, and
//! the most sessions it held at once (from the connection to QUIT), so a test can prove the probe's fan-out cap.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Datelike;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A CA whose certificate the audit trusts through `--extra-ca` (and `serve` through `extra_ca`).
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// Year, month and day `days_from_today` days from today (UTC).
fn ymd(days_from_today: i64) -> (i32, u8, u8) {
    let d = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(days_from_today);
    (d.year(), d.month() as u8, d.day() as u8)
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailctl test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `path` (for `--extra-ca`).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).expect("write CA PEM");
    }

    /// A server configuration presenting a leaf for `names`, valid from yesterday for `days_valid` days.
    pub fn server_config(&self, names: &[&str], days_valid: i64) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("leaf params");
        let ((y0, m0, d0), (y1, m1, d1)) = (ymd(-1), ymd(days_valid));
        params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        let leaf = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        Arc::new(config)
    }
}

/// How the SMTP listener behaves.
#[derive(Clone)]
pub struct Script {
    /// The greeting line, e.g. `220 mx.example ESMTP`; empty: accept the connection and never greet.
    pub banner: String,
    /// Recipients at this domain are local (and unknown, since the probe's local part is random).
    pub local_domain: String,
    /// Offer STARTTLS with this configuration; `None`: not offered.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer 250 to unknown local recipients (accept-then-bounce).
    pub accept_unknown: bool,
    /// Answer 250 to outside recipients (open relay).
    pub open_relay: bool,
    /// The reply to every MAIL FROM instead of `250 2.1.0 Ok`.
    pub mail_reply: Option<String>,
    /// The reply refusing an unknown local recipient instead of `550 5.1.1 ...` (unless `accept_unknown`).
    pub unknown_reply: Option<String>,
    /// The reply refusing an outside recipient instead of `554 5.7.1 ... Relay access denied` (unless
    /// `open_relay`).
    pub relay_reply: Option<String>,
    /// Wait this long before greeting (holds each session open, to observe concurrent sessions).
    pub greeting_delay: Duration,
}

impl Script {
    /// A well-configured server greeting as `host`, local for `domain`, with STARTTLS.
    pub fn healthy(host: &str, domain: &str, tls: Arc<rustls::ServerConfig>) -> Script {
        Script {
            banner: format!("220 {host} ESMTP mailctl-test"),
            local_domain: domain.to_string(),
            tls: Some(tls),
            accept_unknown: false,
            open_relay: false,
            mail_reply: None,
            unknown_reply: None,
            relay_reply: None,
            greeting_delay: Duration::ZERO,
        }
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// Sessions open now and the most open at once.
#[derive(Default)]
struct Sessions {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

/// One session counted in [`Sessions`] until QUIT arrives or the session ends, whichever is first.
struct Active {
    sessions: Arc<Sessions>,
    open: AtomicBool,
}

impl Active {
    fn new(sessions: Arc<Sessions>) -> Active {
        sessions.total.fetch_add(1, Ordering::SeqCst);
        let now = sessions.now.fetch_add(1, Ordering::SeqCst) + 1;
        sessions.max.fetch_max(now, Ordering::SeqCst);
        Active {
            sessions,
            open: AtomicBool::new(true),
        }
    }

    fn end(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            self.sessions.now.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.end();
    }
}

/// A server on its own thread and runtime, stopped and joined on drop.
struct Background {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Binds `ip:0` and calls `serve` for every connection.
    fn start<F, Fut>(ip: IpAddr, serve: F) -> Background
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let std_listener = std::net::TcpListener::bind((ip, 0)).expect("bind test listener");
        std_listener.set_nonblocking(true).expect("non-blocking");
        let addr = std_listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                while let Ok((stream, _)) = listener.accept().await {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    tokio::task::spawn_local(serve(stream));
                }
            });
        });
        Background {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The scriptable SMTP listener.
pub struct SmtpListener {
    server: Background,
    log: Log,
    sessions: Arc<Sessions>,
}

impl SmtpListener {
    /// Serves `script` on `ip` (a random port).
    pub fn start(ip: &str, script: Script) -> SmtpListener {
        let ip: IpAddr = ip.parse().expect("listener IP");
        let log: Log = Arc::default();
        let sessions: Arc<Sessions> = Arc::default();
        let (script, session_log, counted) = (Arc::new(script), log.clone(), sessions.clone());
        let server = Background::start(ip, move |tcp| {
            let active = Active::new(counted.clone());
            session(tcp, script.clone(), session_log.clone(), active)
        });
        SmtpListener {
            server,
            log,
            sessions,
        }
    }

    /// The most sessions open at once so far (counted from the connection to QUIT).
    pub fn max_sessions(&self) -> usize {
        self.sessions.max.load(Ordering::SeqCst)
    }

    /// How many connections were accepted so far.
    pub fn sessions(&self) -> usize {
        self.sessions.total.load(Ordering::SeqCst)
    }

    /// The port, for `--smtp-port`.
    pub fn port(&self) -> String {
        self.server.addr.port().to_string()
    }

    /// Every command line received so far, across connections.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

enum Next {
    Done,
    StartTls,
}

async fn session(tcp: TcpStream, script: Arc<Script>, log: Log, active: Active) {
    let mut conn = BufReader::new(tcp);
    if !script.greeting_delay.is_zero() {
        tokio::time::sleep(script.greeting_delay).await;
    }
    if script.banner.is_empty() {
        // A server that accepts and then says nothing: hold the connection until the client gives up.
        let _ = conn.read_line(&mut String::new()).await;
        return;
    }
    let banner = format!("{}\r\n", script.banner);
    if conn.get_mut().write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    if let Next::StartTls = dialogue(&mut conn, &script, &log, false, &active).await
        && let Some(config) = script.tls.clone()
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        if let Ok(tls) = acceptor.accept(conn.into_inner()).await {
            dialogue(&mut BufReader::new(tls), &script, &log, true, &active).await;
        }
    }
}

fn recipient_domain(line: &str) -> String {
    let addr = line.split_once(':').map(|(_, a)| a).unwrap_or("");
    let addr = addr.trim().trim_start_matches('<');
    let addr = addr.split('>').next().unwrap_or("");
    addr.rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    script: &Script,
    log: &Log,
    in_tls: bool,
    active: &Active,
) -> Next {
    loop {
        let mut line = String::new();
        match conn.read_line(&mut line).await {
            Ok(0) | Err(_) => return Next::Done,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        log.lock().expect("log").push(line.clone());
        let upper = line.to_ascii_uppercase();
        let host = script.banner.split_whitespace().nth(1).unwrap_or("test");
        let (reply, next) = if upper.starts_with("EHLO ") {
            let tls = if script.tls.is_some() && !in_tls {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            (
                format!("250-{host} hello\r\n250-PIPELINING\r\n{tls}250 8BITMIME"),
                None,
            )
        } else if upper == "STARTTLS" && script.tls.is_some() && !in_tls {
            ("220 2.0.0 Ready to start TLS".into(), Some(Next::StartTls))
        } else if upper.starts_with("MAIL FROM:") {
            let reply = script.mail_reply.as_deref().unwrap_or("250 2.1.0 Ok");
            (reply.into(), None)
        } else if upper.starts_with("RCPT TO:") {
            let local = recipient_domain(&line) == script.local_domain;
            let reply = match (local, script.accept_unknown, script.open_relay) {
                (true, true, _) | (false, _, true) => "250 2.1.5 Ok",
                (true, false, _) => script
                    .unknown_reply
                    .as_deref()
                    .unwrap_or("550 5.1.1 Recipient address rejected: User unknown"),
                (false, _, false) => script
                    .relay_reply
                    .as_deref()
                    .unwrap_or("554 5.7.1 Relay access denied"),
            };
            (reply.into(), None)
        } else if upper == "DATA" {
            ("554 5.5.1 this test listener refuses DATA".into(), None)
        } else if upper == "RSET" || upper == "NOOP" {
            ("250 2.0.0 Ok".into(), None)
        } else if upper == "QUIT" {
            // Before the reply: the probe frees its slot only after reading it.
            active.end();
            ("221 2.0.0 Bye".into(), Some(Next::Done))
        } else {
            ("502 5.5.2 Error: command not recognized".into(), None)
        };
        let out = format!("{reply}\r\n");
        if conn.get_mut().write_all(out.as_bytes()).await.is_err() {
            return Next::Done;
        }
        if let Some(next) = next {
            if let Next::Done = next {
                let _ = conn.get_mut().shutdown().await;
            }
            return next;
        }
    }
}

/// An HTTPS server answering every request with one fixed HTTP response (head and body as given).
pub struct HttpsServer {
    server: Background,
}

impl HttpsServer {
    /// Serves `response` (a complete HTTP/1.1 response) over TLS with `tls` on `ip`.
    pub fn start(ip: &str, tls: Arc<rustls::ServerConfig>, response: String) -> HttpsServer {
        let ip: IpAddr = ip.parse().expect("server IP");
        let response = Arc::new(response);
        let server = Background::start(ip, move |tcp| {
            let (tls, response) = (tls.clone(), response.clone());
            async move {
                let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else {
                    return;
                };
                let mut conn = BufReader::new(stream);
                let mut line = String::new();
                while conn.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = conn.get_mut().write_all(response.as_bytes()).await;
                let _ = conn.get_mut().shutdown().await;
            }
        });
        HttpsServer { server }
    }

    /// The port, for `--https-port`.
    pub fn port(&self) -> String {
        self.server.addr.port().to_string()
    }
}

/// A `200 text/plain` response carrying `body`.
pub fn policy_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
