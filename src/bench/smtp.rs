//! `bench smtp`: messages over concurrent SMTP sessions, measuring throughput and end-of-DATA latency.
//!
//! Each session greets, says EHLO (then STARTTLS and AUTH when asked, see [`super::login`]), then runs transactions (MAIL, RCPT, DATA, message) until the shared total is
//! reached, and QUITs. A message counts once it got a final answer: 2xx is accepted, any other code rejected
//! (except 421, which closes the session). A connection that fails (the server was killed, a reply timed out)
//! is an error: the session reconnects after [`RECONNECT_DELAY`] and retries its message under a new
//! Message-ID, so a kill-and-restart loop can run underneath. A login or STARTTLS the server refuses for good
//! stops the run (every session), so a wrong password is one failed AUTH per session, not a retry loop. Accepted messages go to the `--log` file, one line
//! each, written straight to the OS: a crash test checks every line against the Maildir.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::client::{Client, Reply};
use super::login::{self, Security};
use super::message::{self, Spec};
use super::stats::{self, LatencySummary};
use crate::error::{Error, Result};

/// Pause before a session reconnects after a connection error.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// How long one reply may take before the connection counts as failed.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A session that has not managed to connect for this long gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// After `--duration` expires, how long transactions in flight may still take.
const GRACE: Duration = Duration::from_secs(5);

/// What to send, where, and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server address.
    pub addr: SocketAddr,
    /// Envelope and header sender.
    pub from: String,
    /// Envelope and header recipient.
    pub to: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Messages to send in total (accepted plus rejected).
    pub messages: u64,
    /// Size of each message in bytes.
    pub size: usize,
    /// Pipeline MAIL, RCPT and DATA when the server offers PIPELINING.
    pub pipelining: bool,
    /// Stop after this long even if the total is not reached.
    pub duration: Option<Duration>,
    /// Append `Message-ID reply` for every accepted message here.
    pub log: Option<PathBuf>,
    /// STARTTLS and AUTH at the start of every session.
    pub security: Security,
    /// One connection per message (QUIT after each, as smtp-source does by default) instead of one per
    /// session for all its messages.
    pub new_connection: bool,
    /// The server's PID: its CPU time over the run is reported per accepted message.
    pub server_pid: Option<u32>,
}

/// What a run measured (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Messages asked for.
    pub messages: u64,
    /// Messages the server accepted (2xx after DATA).
    pub accepted: u64,
    /// Messages the server refused.
    pub rejected: u64,
    /// Refusals by reply code.
    pub rejected_by_code: BTreeMap<u16, u64>,
    /// Connection failures (connect, I/O, timeout, 421, protocol errors).
    pub errors: u64,
    /// The first connection failure, to tell what went wrong.
    pub first_error: Option<String>,
    /// Whether MAIL/RCPT/DATA were pipelined (asked for and offered).
    pub pipelined: bool,
    /// How sessions started: `plain`, `starttls` or `starttls+auth`.
    pub security: &'static str,
    /// Wall-clock time of the whole run.
    pub elapsed_seconds: f64,
    /// Accepted messages per second.
    pub messages_per_second: f64,
    /// From the final `.` sent to the 2xx reply, accepted messages only.
    pub latency_ms: LatencySummary,
    /// One connection per message.
    pub new_connection: bool,
    /// The server's CPU time (user + system) over the run per accepted message, microseconds (with
    /// `--server-pid`).
    pub server_cpu_us_per_message: Option<f64>,
    /// Why writing the `--log` file failed (the run continues; the command then fails).
    #[serde(skip)]
    pub log_error: Option<String>,
}

/// State every session shares.
struct Shared {
    opts: Options,
    helo: String,
    domain: String,
    tag: String,
    claimed: AtomicU64,
    next_id: AtomicU64,
    errors: AtomicU64,
    first_error: OnceLock<String>,
    pipelined: AtomicU64,
    stopped: AtomicBool,
    log: Option<Mutex<File>>,
    log_error: OnceLock<String>,
    deadline: Option<Instant>,
}

/// What one session measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    rejected: BTreeMap<u16, u64>,
}

/// How one transaction ended, when the connection survived it.
enum Outcome {
    Accepted(Duration),
    Rejected(u16),
}

/// Runs the bench. Fails with exit 3 when `addr` cannot be connected to at all, and with a file error when the
/// log cannot be opened; everything else is in the report.
pub async fn run(opts: Options) -> Result<Report> {
    let log = match &opts.log {
        Some(path) => Some(Mutex::new(
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| Error::File {
                    action: "open",
                    path: path.clone(),
                    source,
                })?,
        )),
        None => None,
    };
    let cpu = |pid: u32| {
        crate::sys::process_cpu(pid).map_err(|e| {
            Error::refused(format!("--server-pid {pid}: cannot read its CPU time: {e}"))
        })
    };
    let cpu_before = opts.server_pid.map(cpu).transpose()?;
    let first = super::connect(opts.addr)
        .await
        .map_err(|e| super::unreachable(opts.addr, &e))?;
    let start = Instant::now();
    let domain = opts
        .from
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| "bench.test".to_string());
    let shared = Arc::new(Shared {
        helo: domain.clone(),
        domain,
        tag: message::run_tag(),
        claimed: AtomicU64::new(0),
        next_id: AtomicU64::new(1),
        errors: AtomicU64::new(0),
        first_error: OnceLock::new(),
        pipelined: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        log,
        log_error: OnceLock::new(),
        deadline: opts.duration.map(|d| start + d),
        opts,
    });
    let mut first = Some(first);
    let tasks: Vec<_> = (0..shared.opts.sessions)
        .map(|_| tokio::spawn(session(shared.clone(), first.take())))
        .collect();
    let mut latencies = Vec::new();
    let mut rejected_by_code = BTreeMap::new();
    for task in tasks {
        match task.await {
            Ok(t) => {
                latencies.extend(t.latencies);
                for (code, n) in t.rejected {
                    *rejected_by_code.entry(code).or_insert(0) += n;
                }
            }
            Err(e) => shared.error(&io::Error::other(format!("session task failed: {e}"))),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let accepted = latencies.len() as u64;
    let server_cpu_us_per_message = match (shared.opts.server_pid, cpu_before) {
        (Some(pid), Some(before)) if accepted > 0 => {
            let used = cpu(pid)?.saturating_sub(before);
            Some((used.as_secs_f64() * 1e6 / accepted as f64 * 10.0).round() / 10.0)
        }
        _ => None,
    };
    Ok(Report {
        sessions: shared.opts.sessions,
        messages: shared.opts.messages,
        accepted,
        rejected: rejected_by_code.values().sum(),
        rejected_by_code,
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error.get().cloned(),
        pipelined: shared.pipelined.load(Ordering::Relaxed) > 0,
        security: login::describe(&shared.opts.security),
        elapsed_seconds: (elapsed * 1000.0).round() / 1000.0,
        messages_per_second: if elapsed > 0.0 {
            (accepted as f64 / elapsed * 10.0).round() / 10.0
        } else {
            0.0
        },
        latency_ms: stats::summarize(&mut latencies),
        new_connection: shared.opts.new_connection,
        server_cpu_us_per_message,
        log_error: shared.log_error.get().cloned(),
    })
}

impl Shared {
    /// Time is up, or a fatal refusal stopped the run.
    fn expired(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The deadline for the next reply: [`REPLY_TIMEOUT`] from now, but never past the end of `--duration`
    /// plus [`GRACE`].
    fn reply_deadline(&self) -> Instant {
        let normal = Instant::now() + REPLY_TIMEOUT;
        match self.deadline {
            Some(d) => normal.min(d + GRACE),
            None => normal,
        }
    }

    /// Claims the next message slot, or None when the total is reached or time is up.
    fn claim(&self) -> Option<u64> {
        if self.expired() {
            return None;
        }
        let slot = self.claimed.fetch_add(1, Ordering::Relaxed);
        (slot < self.opts.messages).then_some(slot)
    }

    fn error(&self, e: &io::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let _ = self.first_error.set(e.to_string());
    }

    /// Appends `Message-ID reply` to the log in one write, so each line reaches the OS before the next message.
    fn log(&self, message_id: &str, reply: &Reply) {
        let Some(log) = &self.log else { return };
        let line = format!("{message_id} {}\n", reply.text());
        let written = match log.lock() {
            Ok(mut file) => file.write_all(line.as_bytes()),
            Err(_) => Err(io::Error::other("log lock poisoned")),
        };
        if let Err(e) = written {
            let _ = self.log_error.set(e.to_string());
        }
    }
}

/// One session: connect (or use `first`), run transactions until the total is reached, reconnect on errors.
async fn session(shared: Arc<Shared>, mut first: Option<tokio::net::TcpStream>) -> Tally {
    let mut tally = Tally::default();
    let mut pending: Option<u64> = None;
    let mut failing_since: Option<Instant> = None;
    loop {
        if pending.is_none() {
            pending = shared.claim();
            if pending.is_none() {
                return tally;
            }
        } else if shared.expired() {
            return tally;
        }
        let stream = match first.take() {
            Some(s) => Ok(s),
            None => super::connect(shared.opts.addr).await,
        };
        let client = match stream {
            Ok(s) => {
                let until = shared.reply_deadline();
                login::establish(s, &shared.helo, &shared.opts.security, until).await
            }
            Err(e) => Err(e),
        };
        let mut client = match client {
            Ok(c) => {
                failing_since = None;
                c
            }
            Err(e) => {
                shared.error(&e);
                if login::is_fatal(&e) {
                    shared.stopped.store(true, Ordering::Relaxed);
                    return tally;
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP_AFTER {
                    return tally;
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        let pipelining = shared.opts.pipelining && client.pipelining;
        loop {
            let Some(slot) = pending.or_else(|| shared.claim()) else {
                client.quit(shared.reply_deadline()).await;
                return tally;
            };
            pending = Some(slot);
            match transaction(&shared, &mut client, slot, pipelining).await {
                Ok(Outcome::Accepted(latency)) => {
                    tally.latencies.push(latency);
                    pending = None;
                    if shared.opts.new_connection {
                        client.quit(shared.reply_deadline()).await;
                        break;
                    }
                }
                Ok(Outcome::Rejected(code)) => {
                    *tally.rejected.entry(code).or_insert(0) += 1;
                    pending = None;
                    if let Err(e) = reset(&shared, &mut client).await {
                        shared.error(&e);
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        break;
                    }
                }
                Err(e) => {
                    shared.error(&e);
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    break;
                }
            }
        }
    }
}

/// One MAIL/RCPT/DATA transaction for message slot `slot`.
async fn transaction(
    shared: &Shared,
    client: &mut Client,
    slot: u64,
    pipelining: bool,
) -> io::Result<Outcome> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let message_id = message::message_id(&shared.tag, id, &shared.domain);
    let opts = &shared.opts;
    let text = message::build(&Spec {
        from: &opts.from,
        to: &opts.to,
        message_id: &message_id,
        seq: slot + 1,
        size: opts.size,
    });
    let payload = message::dot_stuff(&text);
    let mail = match client.size {
        true => format!("MAIL FROM:<{}> SIZE={}\r\n", opts.from, text.len()),
        false => format!("MAIL FROM:<{}>\r\n", opts.from),
    };
    let rcpt = format!("RCPT TO:<{}>\r\n", opts.to);
    let mut refused = None;
    let data = if pipelining {
        shared.pipelined.fetch_add(1, Ordering::Relaxed);
        client
            .send(format!("{mail}{rcpt}DATA\r\n").as_bytes())
            .await?;
        for _ in 0..2 {
            let r = checked(client.reply(shared.reply_deadline()).await?)?;
            if !r.is_positive() {
                refused.get_or_insert(r.code);
            }
        }
        checked(client.reply(shared.reply_deadline()).await?)?
    } else {
        for command in [mail, rcpt] {
            client.send(command.as_bytes()).await?;
            let r = checked(client.reply(shared.reply_deadline()).await?)?;
            if !r.is_positive() {
                return Ok(Outcome::Rejected(r.code));
            }
        }
        client.send(b"DATA\r\n").await?;
        checked(client.reply(shared.reply_deadline()).await?)?
    };
    if data.code != 354 {
        return Ok(Outcome::Rejected(refused.unwrap_or(data.code)));
    }
    client.send(&payload).await?;
    let sent = Instant::now();
    let reply = checked(client.reply(shared.reply_deadline()).await?)?;
    let latency = sent.elapsed();
    if let Some(code) = refused {
        return Ok(Outcome::Rejected(code));
    }
    if !reply.is_positive() {
        return Ok(Outcome::Rejected(reply.code));
    }
    shared.log(&message_id, &reply);
    Ok(Outcome::Accepted(latency))
}

/// RSET after a refused transaction, so the next one starts clean.
async fn reset(shared: &Shared, client: &mut Client) -> io::Result<()> {
    client.send(b"RSET\r\n").await?;
    checked(client.reply(shared.reply_deadline()).await?).map(|_| ())
}

/// Turns a 421 (the server is closing the connection) into a connection error, so the message is retried.
fn checked(reply: Reply) -> io::Result<Reply> {
    if reply.code == 421 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("server closed the session: {}", reply.summary()),
        ));
    }
    Ok(reply)
}
