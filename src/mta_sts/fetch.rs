//! Fetching a policy over HTTPS as an RFC 8461 sender does: the host `mta-sts.DOMAIN` resolved through the one
//! [`Resolver`], the certificate verified against the caller's roots for that name, no redirects followed, a
//! `200` answer with `Content-Type: text/plain` and a body of at most [`super::MAX_BODY`] bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join;
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Policy, http};
use crate::dns::{Answer, RData, RecordType, Resolver};

/// How to fetch: the caller decides whom to trust and where to connect.
#[derive(Clone)]
pub struct FetchOptions {
    /// The HTTPS port: 443, or a test server's port.
    pub port: u16,
    /// The trusted roots (webpki-roots, plus a test CA where a caller has a knob for one).
    pub roots: Arc<RootCertStore>,
    /// Bound on the connection, the TLS handshake and the whole exchange, each.
    pub timeout: Duration,
    /// The `User-Agent` sent, so the domain's logs show who asked.
    pub user_agent: &'static str,
}

/// Why the policy could not be had: `Unreachable` is "could not ask", `Invalid` is the server's fault (an
/// auditor reports the first as "could not test" and the second as a failure; a sender treats both as "no
/// policy" unless it has one cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// DNS, the connection or the handshake timed out or got no answer.
    Unreachable(String),
    /// The server answered with something a sender cannot use (bad certificate, redirect, wrong type, a
    /// policy that does not parse).
    Invalid(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(why) | FetchError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Fetches and parses the policy of `domain` (an ASCII domain name).
pub async fn fetch_policy(
    resolver: &Resolver,
    domain: &str,
    options: &FetchOptions,
) -> Result<Policy, FetchError> {
    let body = fetch_policy_text(resolver, domain, options).await?;
    Policy::parse(&body).map_err(|problems| {
        FetchError::Invalid(format!(
            "the policy does not parse: {}",
            problems.join("; ")
        ))
    })
}

/// Fetches the policy text of `domain` (an ASCII domain name) from `https://mta-sts.DOMAIN`, unparsed.
pub async fn fetch_policy_text(
    resolver: &Resolver,
    domain: &str,
    options: &FetchOptions,
) -> Result<String, FetchError> {
    let host = format!("mta-sts.{domain}");
    let ips = addresses(resolver, &host).await?;
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {}\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n",
        options.user_agent
    );
    let expect = http::Expect {
        max_body: super::MAX_BODY,
        every_status: false,
        head_only: false,
    };
    let response = https_request(
        &host,
        &ips,
        options.port,
        options.roots.clone(),
        request.as_bytes(),
        options.timeout,
        expect,
    )
    .await?;
    response.policy_text().map_err(FetchError::Invalid)
}

/// One HTTPS/1.1 exchange with `host` at the first of `ips` that accepts on `port`: the chain verified against
/// `roots` for `host`, `request` (head and body, `Connection: close`) sent, the response read until complete
/// or closed and framed as `expect` says; the connection, the handshake and the exchange each within
/// `timeout`. Shared by the policy fetch and the ACME client.
pub async fn https_request(
    host: &str,
    ips: &[IpAddr],
    port: u16,
    roots: Arc<RootCertStore>,
    request: &[u8],
    timeout: Duration,
    expect: http::Expect,
) -> Result<http::Response, FetchError> {
    let mut errors = Vec::new();
    let mut tcp = None;
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no answer within {} s", timeout.as_secs())),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        FetchError::Unreachable(format!("cannot connect to {host} ({})", errors.join("; ")))
    })?;
    let config = crate::tls::strict_config(roots)
        .map_err(|e| FetchError::Unreachable(format!("TLS setup failed on our side ({e})")))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| FetchError::Invalid(format!("{host} is not a valid TLS server name ({e})")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut stream = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(FetchError::Invalid(format!("TLS with {host} failed: {e}"))),
        Err(_) => {
            return Err(FetchError::Unreachable(format!(
                "TLS handshake with {host} timed out"
            )));
        }
    };
    let exchange = async {
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(r) = http::parse(&buf, false, expect).map_err(std::io::Error::other)? {
                return Ok(r);
            }
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                // Many servers close without TLS close_notify; the framing decides what was complete.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return http::parse(&buf, true, expect)
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other("incomplete response"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let response = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(FetchError::Invalid(format!("bad HTTP response: {e}"))),
        Err(_) => {
            return Err(FetchError::Unreachable(format!(
                "no complete response within {} s",
                timeout.as_secs()
            )));
        }
    };
    let _ = tokio::time::timeout(timeout, stream.shutdown()).await;
    Ok(response)
}

/// The A and AAAA addresses of `host`.
async fn addresses(resolver: &Resolver, host: &str) -> Result<Vec<IpAddr>, FetchError> {
    let (v4, v6) = join(
        resolver.query(host, RecordType::A),
        resolver.query(host, RecordType::AAAA),
    )
    .await;
    let ips: Vec<IpAddr> = v4
        .data()
        .iter()
        .chain(v6.data())
        .filter_map(RData::ip_addr)
        .collect();
    if !ips.is_empty() {
        return Ok(ips);
    }
    for answer in [v4, v6] {
        if let Answer::Failed(e) = answer {
            return Err(FetchError::Unreachable(format!(
                "DNS lookup of {host} failed after a retry ({e})"
            )));
        }
    }
    Err(FetchError::Invalid(format!(
        "{host} has no A or AAAA record"
    )))
}
