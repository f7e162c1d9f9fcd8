//! MTA-STS policy over HTTPS (only with `--fetch-policy`, and only when `_mta-sts.DOMAIN` has a `v=STSv1` TXT
//! record): `GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt` as an RFC 8461 sender does it: the certificate must be
//! trusted and valid for `mta-sts.DOMAIN`, redirects are not followed, the answer must be `200` with
//! `Content-Type: text/plain` and a body of at most 64 KiB.
//!
//! Ids (subject `mta-sts.DOMAIN`):
//! - `mta_sts.policy`: the policy was fetched and parses (`version: STSv1`, a valid `mode`, `max_age`, and `mx`
//!   lines unless the mode is `none`); FAIL otherwise; UNKNOWN when the host could not be reached.
//! - `mta_sts.mode`: `enforce` PASS, `testing` INFO (failures are only reported), `none` WARN (policy withdrawn).
//! - `mta_sts.mx`: every MX host matches some `mx:` pattern (`*.example.org` matches exactly one label); FAIL
//!   listing those that do not, since enforcing senders will not deliver to them. Not reported for mode `none`
//!   or when the domain has no MX host.
//!
//! The host name is resolved with the audit's resolver and port 443 is used; tests override the port with the
//! environment variable `MAILCTL_AUDIT_HTTPS_PORT` (a test knob) and trust their own CA with
//! `MAILCTL_AUDIT_EXTRA_CA` (see [`super::smtp_probe::tls`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::join;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mta_sts::{StsTxt, sts_txt};
use super::smtp_probe::tls;
use crate::audit::{Context, Finding, Status};
use crate::dns::{Answer, RData, RecordType, Resolver};
use crate::model::DomainName;

/// Environment variable overriding the HTTPS port (443): a knob for tests.
pub const HTTPS_PORT_ENV: &str = "MAILCTL_AUDIT_HTTPS_PORT";
/// Largest policy body accepted (RFC 8461 3.3 suggests senders limit it; 64 KiB is generous).
pub const MAX_BODY: usize = 64 * 1024;

mod http;

/// Why the policy could not be fetched: `Unreachable` is "could not test", `Invalid` is the server's fault.
enum FetchError {
    Unreachable(String),
    Invalid(String),
}

/// Fetches and judges the policy.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    if !ctx.options.fetch_policy {
        return Vec::new();
    }
    let host = format!("mta-sts.{domain}");
    // A sender fetches the policy only when the TXT record announces one (RFC 8461 3.3); an invalid record is
    // mta_sts.record's finding, the policy is still worth fetching.
    match sts_txt(ctx.resolver, domain).await {
        StsTxt::Absent => return Vec::new(),
        StsTxt::Failed(e) => {
            let what = format!("TXT _mta-sts.{domain}");
            return vec![Finding::unknown_dns("mta_sts.policy", host, &what, &e)];
        }
        StsTxt::Valid { .. } | StsTxt::Invalid(_) => {}
    }
    let fix = example_policy(ctx, domain);
    let body = match fetch(ctx.resolver, &host, ctx.options.timeout).await {
        Ok(body) => body,
        Err(FetchError::Unreachable(why)) => {
            return vec![Finding::new(
                "mta_sts.policy",
                Status::Unknown,
                host,
                format!("could not test: {why}"),
            )];
        }
        Err(FetchError::Invalid(why)) => {
            let detail = format!("senders cannot use the policy: {why}");
            return vec![Finding::new("mta_sts.policy", Status::Fail, host, detail).fix(fix)];
        }
    };
    let policy = match Policy::parse(&body) {
        Ok(p) => p,
        Err(problems) => {
            let detail = format!("the policy does not parse: {}", problems.join("; "));
            return vec![Finding::new("mta_sts.policy", Status::Fail, host, detail).fix(fix)];
        }
    };
    let mut findings = vec![Finding::new(
        "mta_sts.policy",
        Status::Pass,
        &host,
        format!(
            "mode {}, mx {}, max_age {}",
            policy.mode,
            policy.mx.join(", "),
            policy.max_age
        ),
    )];
    let (status, meaning) = match policy.mode.as_str() {
        "enforce" => (Status::Pass, "senders refuse to deliver without valid TLS"),
        "testing" => (
            Status::Info,
            "senders report TLS failures (TLS-RPT) but deliver anyway; switch to enforce once the reports are \
             clean",
        ),
        _ => (
            Status::Warn,
            "the policy is withdrawn, senders ignore MTA-STS",
        ),
    };
    let mode = Finding::new(
        "mta_sts.mode",
        status,
        &host,
        format!("{}: {meaning}", policy.mode),
    );
    findings.push(if status == Status::Warn {
        mode.fix(fix.clone())
    } else {
        mode
    });
    // With mode none senders ignore the mx lines; without MX hosts there is nothing to compare (mx.present
    // says why).
    if policy.mode != "none" && !ctx.mx.hosts.is_empty() {
        let uncovered: Vec<&str> = ctx
            .mx
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .filter(|h| !policy.mx.iter().any(|p| tls::name_matches(p, h)))
            .collect();
        findings.push(if uncovered.is_empty() {
            Finding::new("mta_sts.mx", Status::Pass, &host, "every MX host matches an mx: line of the policy")
        } else {
            Finding::new(
                "mta_sts.mx",
                Status::Fail,
                &host,
                format!(
                    "{} matched by no mx: line of the policy ({}); enforcing senders will not deliver there",
                    uncovered.join(", "),
                    policy.mx.join(", ")
                ),
            )
            .fix(fix)
        });
    }
    findings
}

/// The policy the domain should serve, with its MX hosts.
fn example_policy(ctx: &Context<'_>, domain: &DomainName) -> String {
    let mx: String = match ctx.mx.hosts.as_slice() {
        [] => format!("mx: mail.{domain}\n"),
        hosts => hosts.iter().map(|h| format!("mx: {}\n", h.name)).collect(),
    };
    format!(
        "serve with Content-Type: text/plain (and change the id in _mta-sts.{domain}):\n\
         version: STSv1\nmode: enforce\n{mx}max_age: 604800"
    )
}

/// A parsed policy (RFC 8461 3.2).
#[derive(Debug, PartialEq, Eq)]
struct Policy {
    mode: String,
    mx: Vec<String>,
    max_age: u64,
}

impl Policy {
    /// Parses a policy body; `Err` lists every problem.
    fn parse(body: &str) -> Result<Policy, Vec<String>> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in body.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "version" => version = version.or(Some(value)),
                "mode" => mode = mode.or(Some(value)),
                "max_age" => max_age = max_age.or(Some(value)),
                "mx" => mx.push(value),
                _ => {}
            }
        }
        let mut problems = Vec::new();
        match version.as_deref() {
            Some("STSv1") => {}
            Some(v) => problems.push(format!(
                "version is \"{}\", not STSv1",
                crate::model::printable(v)
            )),
            None => problems.push("no version: STSv1 line".into()),
        }
        let mode = mode.unwrap_or_default();
        if !["enforce", "testing", "none"].contains(&mode.as_str()) {
            problems.push(format!(
                "mode \"{}\" is not enforce, testing or none",
                crate::model::printable(&mode)
            ));
        }
        let age = max_age
            .as_deref()
            .filter(|a| !a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|a| a.parse::<u64>().ok())
            .filter(|a| *a <= 31_557_600);
        if age.is_none() {
            problems.push("max_age is missing or not a number of seconds up to 31557600".into());
        }
        if mx.is_empty() && mode != "none" {
            problems.push("no mx: line".into());
        }
        match age {
            Some(max_age) if problems.is_empty() => Ok(Policy { mode, mx, max_age }),
            _ => Err(problems),
        }
    }
}

fn https_port() -> Result<u16, String> {
    match std::env::var(HTTPS_PORT_ENV) {
        Ok(p) => p
            .trim()
            .parse()
            .map_err(|_| format!("{HTTPS_PORT_ENV}={p} is not a port")),
        Err(_) => Ok(443),
    }
}

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

/// Connects to the first reachable address of `host`, then GETs the policy over verified TLS.
async fn fetch(resolver: &Resolver, host: &str, timeout: Duration) -> Result<String, FetchError> {
    let port = https_port().map_err(FetchError::Unreachable)?;
    let ips = addresses(resolver, host).await?;
    let mut errors = Vec::new();
    let mut tcp = None;
    for ip in ips {
        let addr = SocketAddr::new(ip, port);
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
    let config = tls::roots().and_then(tls::strict_config).map_err(|e| {
        FetchError::Unreachable(format!("TLS setup failed on the auditing side ({e})"))
    })?;
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
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailctl-audit\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(r) = http::parse_response(&buf, false).map_err(std::io::Error::other)? {
                return Ok(r);
            }
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                // Many servers close without TLS close_notify; the framing decides what was complete.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return http::parse_response(&buf, true)
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
    response.policy_text().map_err(FetchError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_policy_parses() {
        let text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\n\
                    max_age: 604800\r\n";
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.mode, "enforce");
        assert_eq!(p.mx, ["mail.example.org", "*.example.net"]);
        assert_eq!(p.max_age, 604800);
    }

    #[test]
    fn every_problem_is_listed() {
        let problems = Policy::parse("version: STSv2\nmode: strict\nmax_age: -1\n").unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(Policy::parse("").is_err());
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 0\n").is_ok());
        assert!(
            Policy::parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n")
                .is_err()
        );
    }
}
