//! The daemon: start-up, the wiring of the two halves (the inbound [`Context`] the sessions share, the queue
//! manager with outbound delivery and local delivery), the listeners, the signals and the drain.
//!
//! Start-up order: validate the settings (looking `server.user` up), decide whether to drop root, run the
//! start-up checks ([`preflight`]: the Maildir root, the spool, the TLS files as the run-as user, LMTP), load TLS
//! and the outbound trust roots, bind every listener and the metrics endpoint (so a port in use fails the start instead of half-running),
//! drop root ([`privileges`]), then open the database and the queue and start the delivery writer as that
//! user, report the bound addresses, then accept. SIGTERM/SIGINT stop the accepting, let every session finish
//! the transaction it is in (idle sessions get `421` at once), and return when the last one is gone or the
//! drain deadline passes. SIGHUP re-reads the TLS certificate and key, as the user the daemon runs as: after a
//! drop, the key must be readable by `server.user` or `server.group` for a reload to work (the start-up checks refuse
//! to start when it is not).

mod local;
pub mod preflight;
pub mod privileges;
mod reports;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::dns::Resolver;
use crate::error::{Error, Result};
use crate::smtp::deliver::Deliverer;
use crate::smtp::inbound::checks::Checks;
use crate::smtp::inbound::limits::{AuthThrottle, Connections};
use crate::smtp::inbound::{Context, server};
use crate::smtp::metrics::Metrics;
use crate::smtp::outbound::Outbound;
use crate::smtp::queue::manager::{Manager, ManagerOptions};
use crate::smtp::settings::{ListenerKind, Settings};
use crate::smtp::shutdown::{self, Trigger};
use crate::store::Store;
use crate::tls::server::Tls;

/// How long a stopping daemon waits for sessions to finish their transactions.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(45);

/// A started daemon: bound sockets and shared state, not yet accepting.
pub struct Bound {
    server: Arc<Context>,
    listeners: Vec<(ListenerKind, TcpListener)>,
    metrics_listener: Option<TcpListener>,
    https_listener: Option<TcpListener>,
    /// Where ACME HTTP-01 challenges are answered (`[server.acme] http_listen`).
    acme_http_listener: Option<TcpListener>,
    stop: Trigger,
    manager: Manager,
    resolver: Resolver,
}

impl Bound {
    /// Loads TLS and the outbound trust roots, binds every socket, drops root (when started as root with
    /// `server.user`), then opens the database and the queue. Errors: bad TLS or CA files or a `server.user`
    /// this process cannot become (exit 2), a port that cannot be bound (exit 1, naming the listener),
    /// unreachable database (exit 3).
    pub async fn start(settings: Settings) -> Result<Bound> {
        let plan = privileges::Plan::decide(settings.run_as.as_ref())?;
        if let Some(acme) = &settings.acme {
            // The listeners start with the stored certificate, or a placeholder until the first one is issued.
            let owner = match &plan {
                privileges::Plan::Switch(r) => Some((r.uid, r.gid)),
                _ => None,
            };
            crate::acme::store::Store::new(&acme.dir).prepare(&settings.hostname, owner)?;
        }
        let found = preflight::check(&settings, &plan).await;
        for warning in &found.warnings {
            tracing::warn!(target: "mailctl::smtp", "{warning}");
        }
        found.into_result()?;
        let tls = match &settings.tls {
            Some((cert, key)) => Some(Tls::load(cert, key)?),
            None => None,
        };
        let resolver = Resolver::new(settings.nameserver.as_deref())?;
        let outbound = Outbound::new(
            resolver.clone(),
            settings.hostname.clone(),
            &settings.outbound,
        )?;
        let mut listeners = Vec::new();
        for (kind, addr) in &settings.listeners {
            listeners.push((*kind, bind(kind.name(), *addr).await?));
        }
        let metrics_listener = match settings.metrics {
            Some(addr) => Some(bind("metrics", addr).await?),
            None => None,
        };
        let https_listener = match &settings.https {
            Some(h) => Some(bind("https", h.listen).await?),
            None => None,
        };
        let acme_http_listener = match settings.acme.as_ref().map(|a| a.challenge) {
            Some(crate::acme::settings::Challenge::Http(addr)) => {
                Some(bind("acme http-01", addr).await?)
            }
            _ => None,
        };
        if let privileges::Plan::Switch(r) = &plan {
            privileges::switch(r)?;
        }
        let (store, _) = Store::open(&settings.database_url).await?;
        // Forwarded mail needs an SRS secret; the first start on a database makes one (every node shares it).
        let mut tx = store.begin_write().await?;
        if crate::provision::srs::ensure_secret(&mut tx).await? {
            tracing::info!(target: "mailctl::smtp", "created the first SRS secret (mailctl srs list)");
        }
        tx.commit().await?;
        let metrics = Arc::new(Metrics::default());
        let reports = Arc::new(crate::reports::send::recorder::Recorder::start(
            store.clone(),
            metrics.clone(),
        ));
        let mut outbound = outbound
            .with_routes(store.clone())
            .with_metrics(metrics.clone());
        if settings.reports.send {
            outbound = outbound.with_reports(reports.clone());
        }
        let queue_settings = settings.queue.clone();
        let queue = tokio::task::spawn_blocking({
            let store = store.clone();
            move || crate::smtp::queue::open(&queue_settings, Some(store))
        })
        .await
        .map_err(|e| Error::Refused(format!("cannot open the queue: {e}")))??;
        let (stop, shutdown) = shutdown::channel();
        let server = Context {
            checks: Checks::new(
                resolver.clone(),
                settings.checks.clone(),
                settings.hostname.clone(),
            ),
            deliverer: Deliverer::start(&settings.delivery, &settings.hostname),
            metrics,
            tls,
            connections: Connections::new(
                settings.limits.max_connections,
                settings.limits.max_connections_per_ip,
            ),
            auth_throttle: AuthThrottle::new(
                settings.limits.auth_max_failures,
                settings.limits.auth_lockout,
            ),
            shutdown,
            queue: queue.clone(),
            queue_waker: OnceLock::new(),
            reports,
            send_counter: crate::smtp::inbound::send_counter::SendCounter::start(store.clone()),
            milters: crate::smtp::inbound::milter::Milters::new(&settings.milters),
            away: crate::smtp::inbound::vacation::Away::default(),
            challenges: Arc::default(),
            store,
            settings,
        };
        let server = Arc::new(server);
        let manager = Manager::new(
            queue,
            Arc::new(outbound),
            Arc::new(local::Local(server.clone())),
            server.settings.hostname.clone(),
            server.settings.outbound.clone(),
            server.settings.queue.backoff,
        )
        .with_options(ManagerOptions {
            lease: server.settings.queue.lease,
            ..ManagerOptions::default()
        })
        .with_refusals(Arc::new(local::Breaker(server.clone())));
        let _ = server.queue_waker.set(manager.waker());
        report_identity(&plan);
        Ok(Bound {
            server,
            listeners,
            metrics_listener,
            https_listener,
            acme_http_listener,
            stop,
            manager,
            resolver,
        })
    }

    /// The bound addresses, listeners first, then `("metrics", addr)` and `("https", addr)`.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out: Vec<(&'static str, SocketAddr)> = self
            .listeners
            .iter()
            .filter_map(|(k, l)| l.local_addr().ok().map(|a| (k.name(), a)))
            .collect();
        if let Some(m) = &self.metrics_listener
            && let Ok(a) = m.local_addr()
        {
            out.push(("metrics", a));
        }
        if let Some(h) = &self.https_listener
            && let Ok(a) = h.local_addr()
        {
            out.push(("https", a));
        }
        out
    }

    /// Accepts connections until SIGTERM/SIGINT, then drains. SIGHUP reloads TLS.
    pub async fn run(self) -> Result<()> {
        let Bound {
            server,
            listeners,
            metrics_listener,
            https_listener,
            acme_http_listener,
            stop,
            manager,
            resolver,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        let delivering = tokio::spawn(manager.run(server.shutdown.clone()));
        if let Some(acme) = server.settings.acme.clone() {
            tokio::spawn(crate::acme::manager::run(
                server.clone(),
                acme,
                resolver.clone(),
            ));
        }
        if server.settings.reports.send {
            tokio::spawn(reports::daily(
                server.clone(),
                resolver,
                server.shutdown.clone(),
            ));
        }
        for (kind, listener) in listeners {
            tasks.spawn(server::accept_loop(server.clone(), kind, listener));
        }
        if let Some(l) = metrics_listener {
            tasks.spawn(crate::smtp::metrics::serve_endpoint(
                l,
                server.metrics.clone(),
                server.shutdown.clone(),
            ));
        }
        if let (Some(l), Some(settings)) = (https_listener, server.settings.https.clone()) {
            tasks.spawn(crate::smtp::https::serve(l, server.clone(), settings));
        }
        if let Some(l) = acme_http_listener {
            tasks.spawn(crate::acme::challenge::serve_http(
                l,
                server.challenges.clone(),
                server.shutdown.clone(),
            ));
        }
        wait_for_stop(&server).await?;
        tracing::info!(target: "mailctl::smtp", "stopping: no new connections, finishing transactions in flight");
        stop.fire();
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            while tasks.join_next().await.is_some() {}
            while server.connections.open() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(target: "mailctl::smtp", open = server.connections.open(),
                "drain deadline passed; closing the remaining connections");
        }
        // The queue manager finishes (or releases) the deliveries it has in flight.
        let _ = delivering.await;
        server.reports.flush().await;
        server.send_counter.flush().await;
        server.store.close().await;
        tracing::info!(target: "mailctl::smtp", "stopped");
        Ok(())
    }
}

/// Says in the log, once the start succeeded, whom the daemon runs as, and warns when that is root.
fn report_identity(plan: &privileges::Plan) {
    match plan {
        privileges::Plan::Switch(r) => {
            tracing::info!(target: "mailctl::smtp", user = %r.user, group = %r.group, uid = r.uid, gid = r.gid,
                "ports bound, root dropped");
        }
        privileges::Plan::StayRoot => {
            tracing::warn!(target: "mailctl::smtp",
                "serve runs as root: set server.user so that it drops root once its ports are bound");
        }
        privileges::Plan::AlreadyThere | privileges::Plan::Unprivileged => {}
    }
}

async fn bind(name: &str, addr: SocketAddr) -> Result<TcpListener> {
    let attempt = TcpListener::bind(addr).await;
    // `[::]` on a host without IPv6: fall back to all IPv4 addresses on the same port.
    let attempt = match attempt {
        Err(e)
            if addr.ip().is_unspecified()
                && addr.is_ipv6()
                && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port()))).await
        }
        other => other,
    };
    attempt.map_err(|e| Error::Refused(format!("cannot listen for {name} on {addr}: {e}")))
}

/// Waits for SIGTERM or SIGINT, reloading TLS on every SIGHUP meanwhile.
async fn wait_for_stop(server: &Context) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let setup = |e: std::io::Error| Error::Refused(format!("cannot install signal handlers: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    let mut hup = signal(SignalKind::hangup()).map_err(setup)?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => match &server.tls {
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!(target: "mailctl::smtp", "SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!(target: "mailctl::smtp", error = %e,
                        "SIGHUP: TLS reload failed, keeping the previous certificate"),
                },
                None => tracing::info!(target: "mailctl::smtp", "SIGHUP: no TLS configured, nothing to reload"),
            },
        }
    }
}
