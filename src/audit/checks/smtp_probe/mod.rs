//! SMTP probe: talks to every MX address the way a sending server would (skipped with `--no-connect`). All
//! addresses are probed concurrently; every step waits at most `--timeout`. It never sends DATA.
//!
//! Ids (subject `MX-HOST (IP)`):
//! - `smtp.connect`: the TCP connection to port 25 opens. A refused or timed-out connection is UNKNOWN ("could
//!   not test"), never FAIL: many networks block outbound port 25 on the auditing side.
//! - `smtp.banner`: a `220` greeting arrives in time (another code, garbage or silence: FAIL).
//! - `smtp.banner_name`: the host name in the greeting equals the IP's PTR name. A mismatch is WARN where the
//!   PTR name resolves back to the IP (FCrDNS passes) and FAIL where it does not; no PTR is WARN.
//! - `smtp.ehlo`: `EHLO <helo name>` gets `250`.
//! - `smtp.starttls`: STARTTLS is offered, the handshake succeeds and EHLO works inside TLS (else FAIL).
//! - `smtp.certificate`: the certificate chains to a trusted root (else WARN: only opportunistic senders accept
//!   it), covers the MX host name (else FAIL) and expires in more than 14 days (WARN within 14 days, FAIL
//!   expired). Trusted roots are webpki-roots plus the PEM file named by `MAILCTL_AUDIT_EXTRA_CA` (a knob for
//!   tests and private CAs).
//! - `smtp.rcpt_unknown`: after `MAIL FROM:<postmaster@HELO-NAME>`, `RCPT TO` a random 24-character local part
//!   of the domain gets 5xx (PASS); 250 is FAIL (accept-then-bounce backscatter); 4xx is WARN (refused for now,
//!   e.g. greylisting). A refused MAIL FROM, or a RCPT refusal aimed at the sender (`5.1.7`/`5.1.8`, "Sender
//!   address rejected"), is UNKNOWN: the recipient was not judged.
//! - `smtp.relay` (only with `--relay-test`): from an outside sender to an outside recipient, RCPT must be
//!   refused (PASS); accepted is FAIL (open relay). Followed by RSET and QUIT, never DATA.
//!
//! Steps that could not happen because an earlier one failed are left out rather than reported.
//!
//! A loopback MX address gets `smtp.banner_name` INFO without comparison: the resolver answers reverse names
//! under `127.in-addr.arpa` itself with `localhost` (RFC 6761), and no receiver ever sees such an address. So
//! that tests can still give their MX a routable-looking address with a PTR, the environment variable
//! `MAILCTL_AUDIT_SMTP_CONNECT_TO=IP` (a test knob) makes the probe connect to `IP` instead of every MX address,
//! while subjects, PTR and certificate checks keep using the MX address and name.

mod conn;
mod envelope;
pub mod reply;
mod session;
pub mod tls;

use std::net::{IpAddr, SocketAddr};

use futures_util::future::{join, join_all};

use crate::audit::{Context, Finding, Status};
use crate::dns::records::reverse_name;
use crate::dns::{Answer, RData, RecordType, Resolver};
use crate::model::DomainName;

/// Environment variable redirecting every probe connection to one IP (a test knob, see the module docs).
pub const CONNECT_TO_ENV: &str = "MAILCTL_AUDIT_SMTP_CONNECT_TO";

/// Finding order within one address, as the dialogue goes.
const ORDER: &[&str] = &[
    "smtp.connect",
    "smtp.banner",
    "smtp.banner_name",
    "smtp.ehlo",
    "smtp.starttls",
    "smtp.certificate",
    "smtp.rcpt_unknown",
    "smtp.relay",
];

/// Probes every MX address concurrently.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    if !ctx.options.connect {
        return Vec::new();
    }
    let probes = ctx
        .mx
        .addresses()
        .into_iter()
        .map(|(host, ip)| probe_address(ctx, domain, host, ip));
    join_all(probes).await.into_iter().flatten().collect()
}

async fn probe_address(
    ctx: &Context<'_>,
    domain: &DomainName,
    host: String,
    ip: IpAddr,
) -> Vec<Finding> {
    let connect_ip = match std::env::var(CONNECT_TO_ENV) {
        Err(_) => ip,
        Ok(v) => match v.trim().parse::<IpAddr>() {
            Ok(redirect) => redirect,
            Err(_) => {
                let detail = format!(
                    "could not test: {CONNECT_TO_ENV}={} is not an IP address",
                    crate::model::printable(&v)
                );
                return vec![Finding::new(
                    "smtp.connect",
                    Status::Unknown,
                    format!("{host} ({ip})"),
                    detail,
                )];
            }
        },
    };
    let target = session::Target {
        host: &host,
        ip,
        addr: SocketAddr::new(connect_ip, ctx.options.smtp_port),
        domain,
        helo: &ctx.options.helo_name,
        timeout: ctx.options.timeout,
        relay_test: ctx.options.relay_test,
    };
    let ptr_name = reverse_name(&ip);
    let (outcome, ptr) = join(
        session::probe(&target),
        ctx.resolver.query(&ptr_name, RecordType::PTR),
    )
    .await;
    let mut findings = outcome.findings;
    if let Some(banner) = outcome.banner {
        let subject = format!("{host} ({ip})");
        let name = banner.greeting_host().unwrap_or("").to_string();
        findings.push(banner_name(ctx.resolver, subject, &name, ip, ptr).await);
    }
    findings.sort_by_key(|f| ORDER.iter().position(|id| *id == f.id));
    findings
}

/// Whether `name` has an address record equal to `ip`; `Err` when DNS did not answer.
async fn resolves_to(resolver: &Resolver, name: &str, ip: IpAddr) -> Result<bool, String> {
    let rtype = if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    match resolver.query(name, rtype).await {
        Answer::Records { data, .. } => Ok(data.iter().filter_map(RData::ip_addr).any(|a| a == ip)),
        Answer::NxDomain | Answer::NoData => Ok(false),
        Answer::Failed(e) => Err(e),
    }
}

/// `smtp.banner_name`: the greeting's host name against the PTR name(s) of `ip`.
async fn banner_name(
    resolver: &Resolver,
    subject: String,
    name: &str,
    ip: IpAddr,
    ptr: Answer,
) -> Finding {
    const ID: &str = "smtp.banner_name";
    let shown = crate::model::printable(name);
    let announced = name.trim_end_matches('.').to_ascii_lowercase();
    let rev = reverse_name(&ip);
    if ip.is_loopback() {
        return Finding::new(
            ID,
            Status::Info,
            subject,
            format!(
                "the banner names \"{shown}\"; not compared: {ip} is a loopback address, which receivers never \
                 see, and whose PTR the resolver answers itself (localhost)"
            ),
        );
    }
    let names: Vec<String> = match ptr {
        Answer::Failed(e) => return Finding::unknown_dns(ID, subject, &format!("PTR {rev}"), &e),
        Answer::NxDomain | Answer::NoData => {
            return Finding::new(
                ID,
                Status::Warn,
                subject,
                format!("{ip} has no PTR record, so the banner name \"{shown}\" cannot match it"),
            )
            .fix(format!(
                "ask the owner of {ip} (your hosting provider) to publish: {rev} 3600 IN PTR {}.",
                if announced.is_empty() {
                    "<your MX host name>"
                } else {
                    &announced
                }
            ));
        }
        Answer::Records { data, .. } => data
            .iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(p.0.to_string().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
    };
    if !announced.is_empty() && names.contains(&announced) {
        return Finding::new(
            ID,
            Status::Pass,
            subject,
            format!("the banner names {announced}, the PTR name of {ip}"),
        );
    }
    let listed = names.join(", ");
    let checks = join_all(names.iter().map(|n| resolves_to(resolver, n, ip))).await;
    let confirmed = names
        .iter()
        .zip(&checks)
        .find(|(_, c)| matches!(c, Ok(true)))
        .map(|(n, _)| n.clone());
    let banner_fix =
        |ptr: &str| format!("announce the PTR name in the greeting (Postfix: myhostname = {ptr})");
    if let Some(ptr) = confirmed {
        return Finding::new(
            ID,
            Status::Warn,
            subject,
            format!("the banner names \"{shown}\" but the PTR name of {ip} is {listed} (which resolves back to {ip})"),
        )
        .fix(banner_fix(&ptr));
    }
    if let Some(Err(e)) = checks.iter().find(|c| c.is_err()) {
        return Finding::unknown_dns(ID, subject, &format!("the address of {listed}"), e);
    }
    let first = names.first().cloned().unwrap_or_default();
    let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
    Finding::new(
        ID,
        Status::Fail,
        subject,
        format!(
            "the banner names \"{shown}\" but the PTR name of {ip} is {listed}, which does not resolve back to \
             {ip} (no forward-confirmed reverse DNS)"
        ),
    )
    .fix(format!("{first}. 3600 IN {rtype} {ip}, then {}", banner_fix(&first)))
}
