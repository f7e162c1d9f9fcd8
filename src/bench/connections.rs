//! `bench connections`: open many idle SMTP connections, hold them, and measure what that costs the server.
//!
//! Connections are opened in batches (each batch connects and reads its banners before the next starts), so the
//! server's accept queue is never flooded and what is measured is holding connections, not SYN drops. With a
//! server PID, the server's VmRSS and VmHWM are read from `/proc/PID/status` before the ramp-up and while every
//! connection is held, which gives the memory each idle connection costs.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::parse_line;
use crate::error::{Error, Result};

/// File descriptors kept free for everything else the process has open.
pub const FD_RESERVE: u64 = 64;
/// How long a banner may take.
const BANNER_TIMEOUT: Duration = Duration::from_secs(10);

/// What to open and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server address.
    pub addr: SocketAddr,
    /// Connections to open.
    pub count: u64,
    /// Connections opened at once during the ramp-up.
    pub batch: usize,
    /// How long to hold them once all are open.
    pub hold: Duration,
    /// The server's PID, to read its memory use.
    pub server_pid: Option<u32>,
}

/// The server's memory, from `/proc/PID/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerMemory {
    /// The PID read.
    pub pid: u32,
    /// VmRSS before the first connection, MiB.
    pub vm_rss_before_mib: f64,
    /// Highest VmRSS seen while every connection was held, MiB.
    pub vm_rss_mib: f64,
    /// VmHWM (peak RSS) over the hold, MiB: at least every resident size sampled.
    pub vm_hwm_mib: f64,
    /// (VmRSS held - VmRSS before) / established connections, KiB.
    pub kib_per_connection: f64,
}

/// What a run measured (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Connections asked for.
    pub count: u64,
    /// Connections that got a 220 banner.
    pub established: u64,
    /// Connections the server answered with something other than 220 (e.g. 421 too many connections).
    pub refused: u64,
    /// Connections that failed (connect error, timeout, closed before a banner).
    pub failed: u64,
    /// Established connections still open at the end of the hold.
    pub still_open: u64,
    /// The first refusal or failure, to tell what went wrong.
    pub first_error: Option<String>,
    /// Time to open all connections.
    pub ramp_seconds: f64,
    /// Time they were held.
    pub hold_seconds: f64,
    /// The server's memory, with `--server-pid`.
    pub server: Option<ServerMemory>,
}

/// How one connection attempt ended.
enum Attempt {
    Open(TcpStream),
    Refused(String),
    Failed(io::Error),
}

/// Reads `VmRSS` and `VmHWM` (in MiB) from `/proc/PID/status`.
pub fn server_memory(pid: u32) -> io::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no VmRSS/VmHWM in the status file (a kernel thread?)",
        )
    })
}

/// `VmRSS` and `VmHWM` in MiB from the text of a `/proc/PID/status` file.
pub fn parse_status(status: &str) -> Option<(f64, f64)> {
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some((kib / 1024.0 * 100.0).round() / 100.0)
    };
    let rss = field("VmRSS:")?;
    // The kernel updates the high-water mark lazily (at unmap and exit), so a busy process can show a VmRSS
    // above its VmHWM for a moment; the peak is at least what is resident now.
    Some((rss, field("VmHWM:")?.max(rss)))
}

/// Runs the bench. Fails (exit 1) when the open-file limit cannot fit `count`, (exit 2) when the server's
/// status file cannot be read, and (exit 3) when the first connection cannot be made at all.
pub async fn run(opts: Options) -> Result<Report> {
    let limit =
        crate::sys::raise_nofile_limit().map_err(|e| Error::refused(format!("getrlimit: {e}")))?;
    if opts.count.saturating_add(FD_RESERVE) > limit {
        return Err(Error::refused(format!(
            "--count {} needs {} open files but this process may open only {limit} \
             (raise the hard limit: ulimit -Hn, or LimitNOFILE= in a systemd unit)",
            opts.count,
            opts.count + FD_RESERVE
        )));
    }
    let before = match opts.server_pid {
        Some(pid) => Some(
            server_memory(pid)
                .map_err(|e| Error::usage(format!("cannot read the memory of PID {pid}: {e}")))?,
        ),
        None => None,
    };
    let start = Instant::now();
    let first = super::connect(opts.addr)
        .await
        .map_err(|e| super::unreachable(opts.addr, &e))?;
    let mut report = Report {
        count: opts.count,
        established: 0,
        refused: 0,
        failed: 0,
        still_open: 0,
        first_error: None,
        ramp_seconds: 0.0,
        hold_seconds: 0.0,
        server: None,
    };
    let mut held = Vec::with_capacity(opts.count.min(1 << 20) as usize);
    let mut first = Some(first);
    let mut done = 0u64;
    while done < opts.count {
        let n = (opts.count - done).min(opts.batch.max(1) as u64);
        let batch = (0..n).map(|_| open(opts.addr, first.take()));
        for attempt in join_all(batch).await {
            match attempt {
                Attempt::Open(s) => held.push(s),
                Attempt::Refused(why) => {
                    report.refused += 1;
                    report.first_error.get_or_insert(why);
                }
                Attempt::Failed(e) => {
                    report.failed += 1;
                    report.first_error.get_or_insert(e.to_string());
                }
            }
        }
        done += n;
    }
    report.established = held.len() as u64;
    report.ramp_seconds = round(start.elapsed().as_secs_f64());
    let hold_start = Instant::now();
    let mut peak = (0.0f64, 0.0f64);
    let mut memory_error = None;
    loop {
        if let Some(pid) = opts.server_pid {
            match server_memory(pid) {
                // The high-water mark of the whole hold: never below any resident size sampled in it.
                Ok((rss, hwm)) => peak = (peak.0.max(rss), peak.1.max(hwm)),
                Err(e) => memory_error = Some(e),
            }
        }
        let left = opts.hold.saturating_sub(hold_start.elapsed());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    report.hold_seconds = round(hold_start.elapsed().as_secs_f64());
    report.still_open = held.iter().filter(|s| is_open(s)).count() as u64;
    drop(held);
    if let (Some(pid), Some((rss_before, _))) = (opts.server_pid, before) {
        if let Some(e) = memory_error.filter(|_| peak.0 == 0.0) {
            return Err(Error::refused(format!(
                "cannot read the memory of PID {pid} during the hold: {e}"
            )));
        }
        let grown_kib = (peak.0 - rss_before).max(0.0) * 1024.0;
        report.server = Some(ServerMemory {
            pid,
            vm_rss_before_mib: rss_before,
            vm_rss_mib: peak.0,
            vm_hwm_mib: peak.1,
            kib_per_connection: match report.established {
                0 => 0.0,
                n => round(grown_kib / n as f64),
            },
        });
    }
    Ok(report)
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Opens one connection (or takes `ready`) and reads its banner.
async fn open(addr: SocketAddr, ready: Option<TcpStream>) -> Attempt {
    let mut stream = match ready {
        Some(s) => s,
        None => match super::connect(addr).await {
            Ok(s) => s,
            Err(e) => return Attempt::Failed(e),
        },
    };
    match tokio::time::timeout(BANNER_TIMEOUT, banner(&mut stream)).await {
        Err(_) => Attempt::Failed(io::Error::new(io::ErrorKind::TimedOut, "no banner in time")),
        Ok(Err(e)) => Attempt::Failed(e),
        Ok(Ok((220, _))) => Attempt::Open(stream),
        Ok(Ok((code, text))) => Attempt::Refused(format!("banner was {code} {text}")),
    }
}

/// Reads the (possibly multi-line) greeting and returns its code and last line's text.
async fn banner(stream: &mut TcpStream) -> io::Result<(u16, String)> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the banner",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            match parse_line(line.trim_end()) {
                Some((code, false, last)) => return Ok((code, last.to_string())),
                Some((_, true, _)) => {}
                None => {
                    return Err(super::client::protocol(format!(
                        "malformed banner {:?}",
                        line.trim_end()
                    )));
                }
            }
        }
        if buf.len() > 8192 {
            return Err(super::client::protocol("banner too long".into()));
        }
    }
}

/// True when the server has neither closed the connection nor sent anything since the banner.
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_file_fields_are_read_in_mebibytes() {
        let status = "Name:\tmailctl\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_status(status), Some((10.0, 20.0)));
        assert_eq!(parse_status("Name:\tkthreadd\n"), None);
        // A high-water mark the kernel has not caught up on yet is never below what is resident.
        let lagging = "VmHWM:\t   10240 kB\nVmRSS:\t   11264 kB\n";
        assert_eq!(parse_status(lagging), Some((11.0, 11.0)));
    }

    #[test]
    fn own_status_is_readable() {
        let (rss, hwm) = server_memory(std::process::id()).unwrap();
        assert!(rss > 0.0 && hwm >= rss);
    }

    #[test]
    fn nofile_limit_is_raised_to_something_usable() {}
}
