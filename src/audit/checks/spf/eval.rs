//! `spf.pass`: the domain's SPF evaluated by mail-auth, exactly as a receiving server running it would, for each
//! outbound IP and both identities: `MAIL FROM:<postmaster@DOMAIN>` (must pass) and the HELO name (should pass:
//! receivers check it for bounces, whose MAIL FROM is empty).
//!
//! The outbound IPs are known only from `--ip` (or `server.public_ips`). Without them the MX addresses stand in
//! as a guess: a MAIL FROM that does not pass is then a WARN (the guess may simply be wrong), and the HELO name
//! is not evaluated at all (INFO), since both the IP and the name would be guesses.
//!
//! When the domain's mail leaves through a relay host on another machine (`mailctl relay set`, or
//! `[server.outbound.relay]`), receivers see the relay's addresses, not this server's: those are evaluated instead
//! (the relay host's A/AAAA; a non-pass is WARN when an `spf_include` names the provider's SPF domain, which
//! `spf.relay` judges, FAIL otherwise), and the HELO name is not evaluated (the relay says its own).
//!
//! mail-auth, like receivers, gives an evaluation a time budget (20 s) and returns permerror once it is spent.
//! An evaluation that ends in temperror, or takes longer than [`SLOW`] without passing, says more about the
//! DNS on the way than about the record: UNKNOWN, never FAIL.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mail_auth::SpfResult;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfOutput};

use super::{syntax, txt_line};
use crate::audit::{Context, Finding, Status};
use crate::model::DomainName;

/// Evaluations slower than this came close to mail-auth's (and receivers') budget of 20 s.
pub const SLOW: Duration = Duration::from_secs(15);

/// Where the evaluated IPs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `--ip` / `server.public_ips`.
    Configured,
    /// The MX addresses, standing in for unknown outbound IPs.
    Guessed,
    /// The addresses of the relay host the domain's mail leaves through (its provider may send from others,
    /// authorized by `spf_include`).
    Relay {
        /// The relay's host name.
        host: String,
        /// Whether an `spf_include` is configured (then `spf.relay` judges the provider's addresses).
        include: bool,
    },
}

/// The IPs to evaluate and where they come from; `Err` is the finding when the relay host has no address.
async fn outbound_ips(ctx: &Context<'_>) -> Result<(Vec<IpAddr>, Source), Finding> {
    if let Some(relay) = ctx.known.remote_relay() {
        let source = Source::Relay {
            host: relay.host.clone(),
            include: relay.spf_include.is_some(),
        };
        if let Ok(ip) = relay.host.parse::<IpAddr>() {
            return Ok((vec![ip], source));
        }
        return match ctx.resolver.addresses(&relay.host).await {
            Ok(ips) if !ips.is_empty() => Ok((ips, source)),
            Ok(_) => Err(Finding::new(
                "spf.pass",
                Status::Fail,
                relay.host.as_str(),
                format!(
                    "the relay host {} has no address: mail from the domain cannot leave",
                    relay.url
                ),
            )),
            Err(e) => Err(Finding::unknown_dns(
                "spf.pass",
                relay.host.as_str(),
                "A/AAAA of the relay host",
                &e,
            )),
        };
    }
    if !ctx.options.ips.is_empty() {
        return Ok((ctx.options.ips.clone(), Source::Configured));
    }
    let mut ips: Vec<IpAddr> = ctx.mx.addresses().into_iter().map(|(_, ip)| ip).collect();
    ips.sort();
    ips.dedup();
    Ok((ips, Source::Guessed))
}

/// The name the server says in HELO: `server.hostname`, else the first MX host.
fn helo_name(ctx: &Context<'_>) -> Option<String> {
    ctx.known
        .hostname
        .clone()
        .or_else(|| ctx.mx.hosts.first().map(|h| h.name.clone()))
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
}

/// `value` with an `ip4:`/`ip6:` term for `ip` placed first, where it matches before any lookup.
fn with_ip(value: &str, ip: IpAddr) -> String {
    let term = match ip {
        IpAddr::V4(v4) => format!("ip4:{v4}"),
        IpAddr::V6(v6) => format!("ip6:{v6}"),
    };
    let rest = value.split_once(' ').map_or("", |(_, r)| r.trim());
    if rest.is_empty() {
        format!("v=spf1 {term} -all")
    } else {
        format!("v=spf1 {term} {rest}")
    }
}

fn consequence(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Fail => "receivers reject or junk the mail",
        SpfResult::SoftFail => "most receivers junk the mail",
        SpfResult::Neutral | SpfResult::None => "receivers treat the mail as unauthenticated",
        SpfResult::PermError => "the SPF record is broken; DMARC treats it as a failure",
        SpfResult::Pass | SpfResult::TempError => "",
    }
}

/// Evaluates every outbound IP; `record` is the domain's (single, parsed) SPF record, used for the fix.
pub async fn check(ctx: &Context<'_>, domain: &DomainName, record: &str) -> Vec<Finding> {
    let (ips, source) = match outbound_ips(ctx).await {
        Ok(found) => found,
        Err(finding) => return vec![finding],
    };
    if ips.is_empty() {
        return vec![Finding::new(
            "spf.pass",
            Status::Info,
            domain.as_str(),
            "not evaluated: no outbound IP known (pass --ip or set server.public_ips) and the domain has no MX \
             addresses",
        )];
    }
    let helo = helo_name(ctx);
    let sender = format!("postmaster@{domain}");
    let mut runs = Vec::new();
    for ip in &ips {
        runs.push(mail_from(
            ctx,
            domain,
            *ip,
            &sender,
            helo.as_deref(),
            record,
            &source,
        ));
    }
    let mut findings: Vec<Finding> = join_all(runs).await;
    match &helo {
        _ if matches!(source, Source::Relay { .. }) => findings.push(Finding::new(
            "spf.pass",
            Status::Info,
            domain.as_str(),
            "HELO identity not evaluated: mail leaves through the relay host, which says its own name",
        )),
        _ if source == Source::Guessed => findings.push(Finding::new(
            "spf.pass",
            Status::Info,
            domain.as_str(),
            "HELO identity not evaluated: pass --ip and set server.hostname (the MX addresses are only a guess \
             at the outbound IPs)",
        )),
        Some(h) => findings.extend(join_all(ips.iter().map(|ip| helo_check(ctx, *ip, h))).await),
        None => findings.push(Finding::new(
            "spf.pass",
            Status::Info,
            domain.as_str(),
            "HELO identity not evaluated: no server.hostname configured and no MX host",
        )),
    }
    findings
}

async fn mail_from(
    ctx: &Context<'_>,
    domain: &DomainName,
    ip: IpAddr,
    sender: &str,
    helo: Option<&str>,
    record: &str,
    source: &Source,
) -> Finding {
    let helo = helo.unwrap_or(domain.as_str());
    let params = SpfParameters::verify_mail_from(ip, helo, &ctx.options.helo_name, sender);
    let (result, took) = timed(ctx.resolver.authenticator(), params).await;
    let subject = format!("{ip} MAIL FROM:<{sender}>");
    let shown = result.to_string().to_ascii_lowercase();
    if let Some(unknown) = unreliable(&subject, domain.as_str(), result, took) {
        return unknown;
    }
    if result == SpfResult::Pass {
        let source = match source {
            Source::Guessed => {
                " (no --ip given: the MX addresses are taken as the outbound IPs)".to_string()
            }
            Source::Relay { host, .. } => format!(" (an address of the relay host {host})"),
            Source::Configured => String::new(),
        };
        return Finding::new(
            "spf.pass",
            Status::Pass,
            subject,
            format!("{shown}{source}{}", slow_note(took)),
        );
    }
    let (status, source) = match source {
        Source::Guessed => (
            Status::Warn,
            "; MX address used as a guess; pass --ip with the real outbound IPs".to_string(),
        ),
        Source::Relay {
            host,
            include: true,
        } => (
            Status::Warn,
            format!(
                "; this is the relay host {host}'s own address, its provider may send from others (spf.relay \
                 judges its include)"
            ),
        ),
        Source::Relay {
            host,
            include: false,
        } => (
            Status::Fail,
            format!(
                "; mail leaves through the relay host {host}; authorize it, or set spf_include to its provider's \
                 SPF domain"
            ),
        ),
        Source::Configured => (Status::Fail, String::new()),
    };
    Finding::new(
        "spf.pass",
        status,
        subject,
        format!("{shown}: {}{source}", consequence(result)),
    )
    .fix(txt_line(domain.as_str(), &with_ip(record, ip)))
}

/// Runs mail-auth's evaluation and measures how long it took.
async fn timed(auth: &MessageAuthenticator, params: SpfParameters<'_>) -> (SpfResult, Duration) {
    let started = Instant::now();
    let output: SpfOutput = auth.verify_spf(params).await;
    (output.result(), started.elapsed())
}

/// UNKNOWN for a temperror, or for a non-pass that took longer than [`SLOW`] (mail-auth's budget nearly or
/// entirely spent: its permerror then says nothing about the record).
fn unreliable(subject: &str, name: &str, result: SpfResult, took: Duration) -> Option<Finding> {
    match result {
        SpfResult::TempError => Some(temperror(subject.to_string(), name)),
        SpfResult::Pass => None,
        _ if took > SLOW => Some(Finding::new(
            "spf.pass",
            Status::Unknown,
            subject,
            format!(
                "could not test: evaluating the SPF of {name} took {} s and gave {}; mail-auth, like receivers, \
                 gives up after 20 s with permerror, so slow DNS on the way rather than the record may be why",
                took.as_secs(),
                result.to_string().to_ascii_lowercase()
            ),
        )),
        _ => None,
    }
}

/// Appended to a pass that took longer than [`SLOW`].
fn slow_note(took: Duration) -> String {
    if took > SLOW {
        format!(
            "; but it took {} s, close to the 20 s after which receivers give up",
            took.as_secs()
        )
    } else {
        String::new()
    }
}

async fn helo_check(ctx: &Context<'_>, ip: IpAddr, helo: &str) -> Finding {
    let params = SpfParameters::verify_ehlo(ip, helo, &ctx.options.helo_name);
    let (result, took) = timed(ctx.resolver.authenticator(), params).await;
    let subject = format!("{ip} HELO {helo}");
    let shown = result.to_string().to_ascii_lowercase();
    if let Some(unknown) = unreliable(&subject, helo, result, took) {
        return unknown;
    }
    match result {
        SpfResult::Pass => Finding::new(
            "spf.pass",
            Status::Pass,
            subject,
            format!("{shown}{}", slow_note(took)),
        ),
        _ => {
            // Fix the HELO name's own record when it has exactly one; else publish one.
            let existing = ctx.resolver.txt(helo).await.unwrap_or_default();
            let spf: Vec<&String> = existing.iter().filter(|t| syntax::is_spf(t)).collect();
            let value = match spf.as_slice() {
                [one] => with_ip(one, ip),
                _ => with_ip("v=spf1 -all", ip),
            };
            Finding::new(
                "spf.pass",
                Status::Warn,
                subject,
                format!(
                    "{shown} for the HELO name: {} where they check it, as they do for bounces (empty MAIL \
                     FROM)",
                    consequence(result)
                ),
            )
            .fix(txt_line(helo, &value))
        }
    }
}

fn temperror(subject: String, name: &str) -> Finding {
    Finding::new(
        "spf.pass",
        Status::Unknown,
        subject,
        format!(
            "could not test: a DNS lookup failed while evaluating the SPF of {name} (temperror)"
        ),
    )
}
