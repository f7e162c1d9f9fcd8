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
//! Fetching and parsing are [`crate::mta_sts`]'s (shared with the outbound SMTP client). The host name is
//! resolved with the audit's resolver; the port is 443 unless `--https-port` says otherwise, and the roots are
//! webpki-roots plus `--extra-ca`.

use crate::audit::{Context, Finding, Status};
use crate::model::DomainName;
use crate::mta_sts::{FetchError, FetchOptions, Mode, Policy, StsTxt, fetch_policy_text, sts_txt};

/// Largest policy body accepted (the shared limit of [`crate::mta_sts`]).
pub use crate::mta_sts::MAX_BODY;

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
    let body = match fetch(ctx, domain).await {
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
    let (status, meaning) = match policy.mode {
        Mode::Enforce => (Status::Pass, "senders refuse to deliver without valid TLS"),
        Mode::Testing => (
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
    if policy.mode != Mode::None && !ctx.mx.hosts.is_empty() {
        let uncovered: Vec<&str> = ctx
            .mx
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .filter(|h| !policy.allows_mx(h))
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

/// Fetches the policy text with the run's trusted roots and port (`--extra-ca`, `--https-port`).
async fn fetch(ctx: &Context<'_>, domain: &DomainName) -> Result<String, FetchError> {
    let options = FetchOptions {
        port: ctx.options.https_port,
        roots: ctx.options.trust.roots(),
        timeout: ctx.options.timeout,
        user_agent: "mailctl-audit",
    };
    fetch_policy_text(ctx.resolver, domain.as_str(), &options).await
}
