//! `spf.pass`: the domain's SPF evaluated by mail-auth, exactly as a receiving server running it would, for each
//! outbound IP and both identities: `MAIL FROM:<postmaster@DOMAIN>` (must pass) and the HELO name (should pass:
//! receivers check it for bounces, whose MAIL FROM is empty).

use std::net::IpAddr;

use futures_util::future::join_all;
use mail_auth::SpfResult;
use mail_auth::spf::verify::SpfParameters;

use super::{syntax, txt_line};
use crate::audit::{Context, Finding, Status};
use crate::model::DomainName;

/// The IPs to evaluate, and whether they were guessed from the MX addresses.
fn outbound_ips(ctx: &Context<'_>) -> (Vec<IpAddr>, bool) {
    if !ctx.options.ips.is_empty() {
        return (ctx.options.ips.clone(), false);
    }
    let mut ips: Vec<IpAddr> = ctx.mx.addresses().into_iter().map(|(_, ip)| ip).collect();
    ips.sort();
    ips.dedup();
    (ips, true)
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
    let (ips, guessed) = outbound_ips(ctx);
    if ips.is_empty() {
        return vec![Finding::new(
            "spf.pass",
            Status::Info,
            domain.as_str(),
            "not evaluated: no outbound IP known (pass --ip or set server.public_ips) and the domain has no MX \
             addresses",
        )];
    }
    let source = if guessed {
        " (no --ip given: the MX addresses are taken as the outbound IPs)"
    } else {
        ""
    };
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
            source,
        ));
    }
    let mut findings: Vec<Finding> = join_all(runs).await;
    match &helo {
        Some(h) => {
            findings.extend(join_all(ips.iter().map(|ip| helo_check(ctx, *ip, h, source))).await)
        }
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
    source: &str,
) -> Finding {
    let helo = helo.unwrap_or(domain.as_str());
    let params = SpfParameters::verify_mail_from(ip, helo, &ctx.options.helo_name, sender);
    let result = ctx
        .resolver
        .authenticator()
        .verify_spf(params)
        .await
        .result();
    let subject = format!("{ip} MAIL FROM:<{sender}>");
    let shown = result.to_string().to_ascii_lowercase();
    match result {
        SpfResult::Pass => Finding::new(
            "spf.pass",
            Status::Pass,
            subject,
            format!("{shown}{source}"),
        ),
        SpfResult::TempError => temperror(subject, domain.as_str()),
        _ => Finding::new(
            "spf.pass",
            Status::Fail,
            subject,
            format!("{shown}: {}{source}", consequence(result)),
        )
        .fix(txt_line(domain.as_str(), &with_ip(record, ip))),
    }
}

async fn helo_check(ctx: &Context<'_>, ip: IpAddr, helo: &str, source: &str) -> Finding {
    let params = SpfParameters::verify_ehlo(ip, helo, &ctx.options.helo_name);
    let result = ctx
        .resolver
        .authenticator()
        .verify_spf(params)
        .await
        .result();
    let subject = format!("{ip} HELO {helo}");
    let shown = result.to_string().to_ascii_lowercase();
    match result {
        SpfResult::Pass => Finding::new(
            "spf.pass",
            Status::Pass,
            subject,
            format!("{shown}{source}"),
        ),
        SpfResult::TempError => temperror(subject, helo),
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
                     FROM){source}",
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
