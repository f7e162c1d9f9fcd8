//! Load generators for a running `mailctl serve` (or any SMTP server): `bench smtp` (messages over concurrent
//! sessions, throughput and latency) and `bench connections` (many idle connections, what holding them costs the
//! server).
//!
//! They speak SMTP over tokio TCP (with rustls after STARTTLS when asked) and nothing else, so what they measure is the server, not a client
//! library. Nothing here prints: each bench returns a report that `cli::bench` renders.

pub mod client;
pub mod connections;
pub mod login;
pub mod message;
pub mod smtp;
pub mod stats;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::Error;

/// How long one TCP connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `addr` with [`CONNECT_TIMEOUT`] and Nagle off (a bench writes small commands and measures
/// replies; delayed ACKs would otherwise add tens of milliseconds to every pipelined round trip).
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The error for a server that cannot be reached at all: exit 3, like every other unreachable backend.
pub fn unreachable(addr: SocketAddr, e: &std::io::Error) -> Error {
    Error::Connect {
        addr: addr.to_string(),
        reason: e.to_string(),
    }
}
