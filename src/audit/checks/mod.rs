//! One file per check family. A new family is one file, one `pub mod` line and one `family!` line in
//! [`run_all`]. [`relay`] is not a family: it adjusts the others when mail leaves through a relay host. Every family is `async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding>`.

pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod mta_sts;
pub mod mta_sts_policy;
pub mod mx;
pub mod ptr;
pub mod relay;
pub mod reports;
pub mod smtp_probe;
pub mod spf;
pub mod txt_records;

use std::future::Future;
use std::pin::Pin;

use futures_util::future::join_all;

use super::{Context, Finding, Selection};
use crate::model::DomainName;

type Family<'a> = Pin<Box<dyn Future<Output = Vec<Finding>> + Send + 'a>>;

/// Runs every selected family concurrently (MX ran before, in the runner); findings keep family order.
pub async fn run_all(
    ctx: &Context<'_>,
    selection: &Selection,
    domain: &DomainName,
) -> Vec<Finding> {
    let mut families: Vec<Family<'_>> = Vec::new();
    macro_rules! family {
        ($name:literal, $check:expr) => {
            if selection.runs($name) {
                families.push(Box::pin($check));
            }
        };
    }
    // In the order a receiver meets them: identity, the SMTP session, then the domain's policies.
    family!("ptr", ptr::check(ctx, domain));
    family!("smtp", smtp_probe::check(ctx, domain));
    family!("spf", spf::check(ctx, domain));
    family!("dkim", dkim::check(ctx, domain));
    family!("dmarc", dmarc::check(ctx, domain));
    family!("dnsbl", dnsbl::check(ctx, domain));
    family!("mta_sts", mta_sts::check(ctx, domain));
    // Its ids are `mta_sts.*`, so it is selected under that prefix (`--only mta_sts.mx` must run it).
    family!("mta_sts", mta_sts_policy::check(ctx, domain));
    family!("tls_rpt", mta_sts::check_tls_rpt(ctx, domain));
    family!("reports", reports::check(ctx, domain));
    let mut findings: Vec<Finding> = join_all(families).await.into_iter().flatten().collect();
    if let Some(relay) = ctx.known.remote_relay() {
        relay::discount(&mut findings, relay);
        if selection.runs("ptr") {
            findings.insert(0, relay::finding(domain.as_str(), relay));
        }
    }
    findings
}
