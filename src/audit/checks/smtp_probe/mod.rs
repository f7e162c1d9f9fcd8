//! SMTP probe: talks to every MX address the way a sending server would (skipped with `--no-connect`). The
//! addresses are probed concurrently; every step waits at most `--timeout`. It never sends DATA.
//!
//! The fan-out is capped so that `--all` over many domains never opens hundreds of port-25 connections at once:
//! at most [`MAX_ADDRESSES`] (10) MX addresses are probed per domain, in MX preference order (the rest are named
//! in one `smtp.connect` INFO whose subject is the domain), and at most [`MAX_CONCURRENT`] (16) probes run at
//! once in the whole process. A probe waits at most [`SLOT_WAIT_STEPS`] timeouts for its turn; one that waited
//! longer is `smtp.connect` UNKNOWN, so a long queue never holds up the domain's other findings.
//!
//! Ids (subject `MX-HOST (IP)`):
//! - `smtp.connect`: the TCP connection to port 25 opens. A refused or timed-out connection is UNKNOWN ("could
//!   not test"), never FAIL: many networks block outbound port 25 on the auditing side.
//! - `smtp.banner`: a `220` greeting arrives in time (another code, garbage or silence: FAIL).
//! - `smtp.banner_name`: the host name in the greeting equals the IP's PTR name. A mismatch is WARN, with the
//!   PTR name to announce as the fix. Where the PTR name does not resolve back to the IP it is still WARN: that
//!   root cause is `ptr.fcrdns`'s FAIL, so one fault gives one failing id. No PTR is WARN.
//! - `smtp.ehlo`: `EHLO <helo name>` gets `250`.
//! - `smtp.starttls`: STARTTLS is offered, the handshake succeeds and EHLO works inside TLS (else FAIL).
//! - `smtp.certificate`: the certificate chains to a trusted root (else WARN: only opportunistic senders accept
//!   it; FAIL when the domain publishes a valid `_mta-sts` TXT record, since senders honouring its MTA-STS
//!   policy refuse delivery), covers the MX host name (else FAIL) and expires in more than 14 days (WARN within
//!   14 days, FAIL expired). The `_mta-sts` record is looked up only for an untrusted certificate, once per
//!   domain; the policy's mode is not fetched (a `testing` policy only reports). Trusted roots are webpki-roots
//!   plus the PEM file of `--extra-ca` (a private CA, a lab).
//! - `smtp.rcpt_unknown`: after `MAIL FROM:<postmaster@HELO-NAME>`, `RCPT TO` a random 24-character local part
//!   of the domain gets a 5xx saying the address is bad (PASS): an enhanced status `5.1.x` (5.1.1 etc.), or
//!   550/551/553 without one; 250 is FAIL (accept-then-bounce backscatter); 4xx is WARN (refused for now, e.g.
//!   greylisting). A refused MAIL FROM, a refusal aimed at the sender (`5.1.7`/`5.1.8`, "Sender address
//!   rejected") or at the auditing client (`5.7.x`, `5.5.x`, "Client host rejected", "Helo command rejected",
//!   another 5xx without `5.1.x`) is UNKNOWN: the recipient was not judged.
//! - `smtp.relay` (only with `--relay-test`): after `MAIL FROM:<postmaster@HELO-NAME>` (accepted), `RCPT TO`
//!   an outside recipient must be refused as relaying (`x.7.1`, 554, or a reply naming relaying: PASS);
//!   accepted is FAIL (open relay). A refused MAIL FROM, or a RCPT refusal aimed at the sender or the client or
//!   without a relay status, is UNKNOWN: relaying was not judged. Followed by RSET and QUIT, never DATA. Why this
//!   sender: see `envelope.rs`.
//!
//! Steps that could not happen because an earlier one failed are left out rather than reported.
//!
//! A loopback MX address gets `smtp.banner_name` INFO without comparison: the resolver answers reverse names
//! under `127.in-addr.arpa` itself with `localhost` (RFC 6761), and no receiver ever sees such an address.
//! `--connect-to IP` makes the probe connect to `IP` (and `--smtp-port`) instead of every MX address, while
//! subjects, PTR and certificate checks keep using the MX address and name: a lab, a server behind NAT, and the
//! tests, whose MX hosts have routable-looking addresses with PTRs but listen on loopback.

mod conn;
mod envelope;
pub mod reply;
mod session;
pub mod tls;

use std::net::{IpAddr, SocketAddr};

use futures_util::future::{join, join_all};
use tokio::sync::{OnceCell, Semaphore};

use crate::audit::{Context, Finding, Status};
use crate::dns::reverse_name;
use crate::dns::{Answer, RData, RecordType, Resolver};
use crate::model::DomainName;
use crate::mta_sts::StsTxt;

/// At most this many MX addresses are probed per domain.
pub const MAX_ADDRESSES: usize = 10;
/// At most this many SMTP probes run at once in the process, whatever the number of domains audited.
pub const MAX_CONCURRENT: usize = 16;
/// How many `--timeout`s a probe waits for one of the [`MAX_CONCURRENT`] slots before giving up.
pub const SLOT_WAIT_STEPS: u32 = 6;

/// The process-wide probe slots.
static SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT);

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

/// Probes the first [`MAX_ADDRESSES`] MX addresses concurrently, within the process-wide slots.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    if !ctx.options.connect {
        return Vec::new();
    }
    let mut addresses = ctx.mx.addresses();
    let total = addresses.len();
    let skipped = addresses.split_off(total.min(MAX_ADDRESSES));
    let sts = OnceCell::new();
    let probes = addresses
        .into_iter()
        .map(|(host, ip)| probe_address(ctx, domain, &sts, host, ip));
    let mut findings: Vec<Finding> = join_all(probes).await.into_iter().flatten().collect();
    if !skipped.is_empty() {
        let names: Vec<String> = skipped
            .iter()
            .map(|(h, ip)| format!("{h} ({ip})"))
            .collect();
        findings.push(Finding::new(
            "smtp.connect",
            Status::Info,
            domain.to_string(),
            format!(
                "only the first {MAX_ADDRESSES} of {total} MX addresses are probed (in MX preference order); not \
                 probed: {}",
                names.join(", ")
            ),
        ));
    }
    findings
}

/// The dialogue with one address, once one of the process-wide slots is free.
async fn probe_in_slot(target: &session::Target<'_>) -> session::Outcome {
    let wait = target.timeout * SLOT_WAIT_STEPS;
    match tokio::time::timeout(wait, SLOTS.acquire()).await {
        Ok(Ok(permit)) => {
            let outcome = session::probe(target).await;
            drop(permit);
            outcome
        }
        _ => session::Outcome {
            findings: vec![target.finding(
                "smtp.connect",
                Status::Unknown,
                format!(
                    "could not test: not probed within {} s, while {MAX_CONCURRENT} other SMTP probes were \
                     running (the limit per run); audit fewer domains at once",
                    wait.as_secs()
                ),
            )],
            banner: None,
        },
    }
}

async fn probe_address(
    ctx: &Context<'_>,
    domain: &DomainName,
    sts: &OnceCell<StsTxt>,
    host: String,
    ip: IpAddr,
) -> Vec<Finding> {
    let connect_ip = ctx.options.connect_to.unwrap_or(ip);
    let target = session::Target {
        host: &host,
        ip,
        addr: SocketAddr::new(connect_ip, ctx.options.smtp_port),
        domain,
        helo: &ctx.options.helo_name,
        timeout: ctx.options.timeout,
        relay_test: ctx.options.relay_test,
        resolver: ctx.resolver,
        trust: &ctx.options.trust,
        sts,
    };
    let ptr_name = reverse_name(&ip);
    let (outcome, ptr) = join(
        probe_in_slot(&target),
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
    // WARN, not FAIL: the missing forward confirmation is ptr.fcrdns's FAIL, and one fault fails one id.
    Finding::new(
        ID,
        Status::Warn,
        subject,
        format!(
            "the banner names \"{shown}\" but the PTR name of {ip} is {listed}, which does not resolve back to \
             {ip} (no forward-confirmed reverse DNS: the failure is reported as ptr.fcrdns)"
        ),
    )
    .fix(format!("{first}. 3600 IN {rtype} {ip}, then {}", banner_fix(&first)))
}
