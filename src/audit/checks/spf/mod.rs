//! SPF (RFC 7208): what a receiver finds when it checks whether an IP may send mail for the domain.
//!
//! Ids:
//! - `spf.record`: exactly one TXT record starting `v=spf1` at the domain. FAIL for none or several (receivers
//!   return none / permerror), UNKNOWN when the TXT lookup itself failed (never "no SPF").
//! - `spf.syntax`: every term of the domain's record (and of each record reached through include/redirect,
//!   reported with that record's name as subject) parses per RFC 7208 12. FAIL lists each bad term and why;
//!   WARN for `ptr`, which RFC 7208 5.5 says not to publish.
//! - `spf.lookups`: over the whole include/redirect tree, at most 10 DNS-querying terms and at most 2 void
//!   lookups (RFC 7208 4.6.4), at most 10 MX hosts per `mx` term (each host without A or AAAA is one more void
//!   lookup), no include loop, every include/redirect target has exactly one SPF record; terms after `all`
//!   are not counted (receivers never reach them). FAIL shows the tree with the count per branch; PASS gives
//!   the totals; UNKNOWN when a lookup in the tree failed.
//! - `spf.all`: how the record ends. `-all`/`~all` PASS, `?all` WARN, `+all` FAIL, no `all` and no redirect
//!   WARN; terms after `all`, or a `redirect` next to `all`, are never evaluated (WARN). With `redirect` and no
//!   `all`, the target record's `all` is judged.
//! - `spf.pass`: mail-auth's SPF evaluation for every outbound IP: `MAIL FROM:<postmaster@DOMAIN>` must give
//!   pass (FAIL otherwise), the HELO name (`server.hostname`, else the first MX host) should (WARN otherwise).
//!   Without `--ip` / `server.public_ips` the MX addresses are a guess (said in the detail): a MAIL FROM that
//!   does not pass is only a WARN, and the HELO name is not evaluated (INFO). When the domain's mail leaves
//!   through a relay host on another machine, the relay host's addresses are evaluated instead (see `eval.rs`). UNKNOWN on temperror, and for a
//!   non-pass when the evaluation took longer than 15 s (mail-auth gives up after 20 s with permerror).
//!
//! - `spf.relay`: only when the domain's mail leaves through a relay host on another machine (`mailctl relay set`,
//!   `[server.outbound.relay]`): with its `spf_include`, the record must reach that domain through `include:` or
//!   `redirect=` (PASS; FAIL with the record that does); without one, INFO (only the relay host's own addresses
//!   are evaluated by `spf.pass`).
//!
//! One fault, one failing id: when there is no single record, only `spf.record` is reported; when the domain's
//! record has a bad term, `spf.pass` is not evaluated (every receiver returns permerror, which `spf.syntax`
//! already says).

mod eval;
mod probe;
pub mod syntax;
mod tree;

use futures_util::future::join;

use self::syntax::{Kind, Record};
use self::tree::Node;
use crate::audit::{Context, Finding, Status};
use crate::dns::{Answer, RData, RecordType};
use crate::model::DomainName;
use crate::records;

/// The SPF values among TXT records (strings of one record joined).
fn spf_values(data: &[RData]) -> Vec<String> {
    crate::dns::txt_strings(data)
        .into_iter()
        .filter(|t| syntax::is_spf(t))
        .collect()
}

/// A TXT record in zone-file form, as `mailctl dns records` prints it.
fn txt_line(name: &str, value: &str) -> String {
    format!(
        "{}. {} IN TXT {}",
        name.trim_end_matches('.'),
        records::TTL,
        crate::dkim::zone_txt_rdata(value)
    )
}

/// The record `mailctl dns records` would publish for the domain, with the run's outbound IPs.
fn suggested_value(ctx: &Context<'_>, domain: &DomainName) -> String {
    let mx_host = ctx
        .known
        .hostname
        .as_deref()
        .or(ctx.mx.hosts.first().map(|h| h.name.as_str()))
        .and_then(|h| h.trim_end_matches('.').parse::<DomainName>().ok())
        .unwrap_or_else(|| DomainName::from_stored(&format!("mail.{domain}")));
    let set = records::build(&records::Inputs {
        domain: domain.clone(),
        mx_host,
        ips: ctx.options.ips.clone(),
        dkim: Vec::new(),
        dmarc_policy: "none".into(),
        report_address: format!("postmaster@{domain}"),
        mta_sts_mode: "testing".into(),
        relay: ctx.known.relay.clone(),
        clients: records::Clients::default(),
    });
    let apex = format!("{domain}.");
    set.records
        .into_iter()
        .find(|r| r.rtype == "TXT" && r.name == apex && syntax::is_spf(&r.value))
        .map_or_else(|| "v=spf1 mx -all".to_string(), |r| r.value)
}

/// Several records merged into one: every term once, a single `all` (the first seen) at the end.
fn merged(values: &[String]) -> String {
    let mut terms: Vec<String> = Vec::new();
    let mut all = None;
    for value in values {
        let parsed = syntax::parse(value);
        for term in &parsed.terms {
            let is_all = parsed
                .mechanisms
                .iter()
                .any(|m| m.kind == Kind::All && &m.text == term);
            if is_all {
                all = all.or(Some(term.clone()));
            } else if !terms.iter().any(|t| t.eq_ignore_ascii_case(term)) {
                terms.push(term.clone());
            }
        }
    }
    terms.extend(all);
    format!("v=spf1 {}", terms.join(" ")).trim_end().to_string()
}

/// Runs every SPF check for the domain.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let name = domain.as_str();
    let values = match ctx.resolver.query(name, RecordType::TXT).await {
        Answer::Failed(e) => return vec![Finding::unknown_dns("spf.record", name, "TXT", &e)],
        Answer::NxDomain | Answer::NoData => Vec::new(),
        Answer::Records { data, .. } => spf_values(&data),
    };
    let value = match values.as_slice() {
        [one] => one.clone(),
        [] => {
            return vec![
                Finding::new(
                    "spf.record",
                    Status::Fail,
                    name,
                    "no SPF record (TXT v=spf1): receivers cannot tell which IPs may send for the domain",
                )
                .fix(txt_line(name, &suggested_value(ctx, domain))),
            ];
        }
        more => {
            return vec![
                Finding::new(
                    "spf.record",
                    Status::Fail,
                    name,
                    format!(
                        "{} SPF records, receivers return permerror (RFC 7208 4.5): {}",
                        more.len(),
                        more.iter()
                            .map(|v| format!("\"{v}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .fix(format!(
                    "publish only one: {}",
                    txt_line(name, &merged(more))
                )),
            ];
        }
    };
    let record = syntax::parse(&value);
    let mut findings = vec![Finding::new(
        "spf.record",
        Status::Pass,
        name,
        value.clone(),
    )];
    let walk = tree::walk(ctx.resolver, name, record.clone());
    let (tree, passes) = if record.errors.is_empty() {
        join(walk, eval::check(ctx, domain, &value)).await
    } else {
        (walk.await, Vec::new())
    };
    findings.extend(syntax_findings(&tree));
    findings.push(tree::finding(name, &tree));
    findings.push(all_finding(name, &record, &tree, || {
        suggested_value(ctx, domain)
    }));
    findings.extend(relay_finding(ctx, name, &tree, &value));
    findings.extend(passes);
    findings
}

/// `spf.relay`, when the domain's mail leaves through a relay host on another machine: with an `spf_include`
/// (the provider's SPF domain), the record must reach it through `include:` or `redirect=` (PASS, else FAIL
/// with the record that does); without one, INFO that only the relay host's own addresses can be evaluated.
fn relay_finding(ctx: &Context<'_>, name: &str, tree: &Node, value: &str) -> Option<Finding> {
    let relay = ctx.known.remote_relay()?;
    let Some(include) = &relay.spf_include else {
        return Some(Finding::new(
            "spf.relay",
            Status::Info,
            name,
            format!(
                "mail leaves through the relay host {}: no spf_include is configured, so only the relay host's \
                 own addresses are evaluated (spf.pass); a provider usually sends from others, named by the SPF \
                 domain its documentation gives",
                relay.url
            ),
        ));
    };
    let reached = tree
        .nodes()
        .iter()
        .skip(1)
        .any(|n| n.domain.eq_ignore_ascii_case(include.as_str()));
    Some(if reached {
        Finding::new(
            "spf.relay",
            Status::Pass,
            name,
            format!(
                "mail leaves through the relay host {}; the record authorizes its provider's addresses \
                 (include:{include})",
                relay.url
            ),
        )
    } else {
        Finding::new(
            "spf.relay",
            Status::Fail,
            name,
            format!(
                "mail leaves through the relay host {}, but the record does not reach include:{include}: \
                 receivers' SPF check fails for the provider's addresses",
                relay.url
            ),
        )
        .fix(txt_line(name, &with_include(value, include.as_str())))
    })
}

/// `value` with `include:DOMAIN` before its `all` or `redirect=` (or at the end).
fn with_include(value: &str, include: &str) -> String {
    let terms: Vec<&str> = value.split_whitespace().skip(1).collect();
    let last = |t: &&str| {
        let t = t
            .trim_start_matches(['+', '-', '~', '?'])
            .to_ascii_lowercase();
        t == "all" || t.starts_with("redirect=")
    };
    let at = terms.iter().position(last).unwrap_or(terms.len());
    let mut out = vec!["v=spf1"];
    out.extend(&terms[..at]);
    let term = format!("include:{include}");
    out.push(&term);
    out.extend(&terms[at..]);
    out.join(" ")
}

/// `spf.syntax` for the domain's record, then for each reached record that has bad terms.
fn syntax_findings(tree: &Node) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, node) in tree.nodes().into_iter().enumerate() {
        let Some(record) = &node.record else { continue };
        if record.errors.is_empty() {
            if i > 0 {
                continue;
            }
            let ptr = record.mechanisms.iter().find(|m| m.kind == Kind::Ptr);
            findings.push(match ptr {
                Some(m) => Finding::new(
                    "spf.syntax",
                    Status::Warn,
                    node.domain.as_str(),
                    format!(
                        "'{}': ptr is slow and unreliable; RFC 7208 5.5 says not to use it and some receivers skip it",
                        m.text
                    ),
                )
                .fix(format!("replace {} by the ip4:/ip6: terms of the sending hosts", m.text)),
                None => Finding::new(
                    "spf.syntax",
                    Status::Pass,
                    node.domain.as_str(),
                    match record.terms.len() {
                        1 => "1 term, valid".to_string(),
                        n => format!("{n} terms, all valid"),
                    },
                ),
            });
            continue;
        }
        let bad: Vec<String> = record
            .errors
            .iter()
            .map(|(t, why)| format!("'{t}': {why}"))
            .collect();
        let reached = if i > 0 {
            format!(" (reached through {})", node.label)
        } else {
            String::new()
        };
        let terms: Vec<&str> = record.errors.iter().map(|(t, _)| t.as_str()).collect();
        findings.push(
            Finding::new(
                "spf.syntax",
                Status::Fail,
                node.domain.as_str(),
                format!(
                    "invalid term{}{reached}, receivers return permerror: {}",
                    if bad.len() > 1 { "s" } else { "" },
                    bad.join("; ")
                ),
            )
            .fix(format!(
                "correct or remove {} in the SPF record of {}",
                terms.join(", "),
                node.domain
            )),
        );
    }
    findings
}

/// The record with its `all` moved to the end as `{qualifier}all` and any ignored redirect dropped.
fn with_all(record: &Record, qualifier: char) -> String {
    let mut terms: Vec<&str> = record
        .terms
        .iter()
        .map(String::as_str)
        .filter(|t| {
            !record
                .mechanisms
                .iter()
                .any(|m| m.kind == Kind::All && m.text == *t)
        })
        .filter(|t| !t.to_ascii_lowercase().starts_with("redirect="))
        .collect();
    let all = format!("{qualifier}all");
    terms.push(&all);
    format!("v=spf1 {}", terms.join(" "))
}

/// `spf.all`. A fix never breaks what works: a record that authorizes nobody but `all` is replaced by the one
/// `mailctl dns records` would publish (`suggested`: the MX, the outbound IPs, the relay's include), since
/// turning its `+all` into `-all` would make the domain's own server fail SPF.
fn all_finding(
    domain: &str,
    record: &Record,
    tree: &Node,
    suggested: impl FnOnce() -> String,
) -> Finding {
    let Some(all) = record.all() else {
        return match record.effective_redirect() {
            Some(target) => redirected_all(domain, target, tree),
            None => Finding::new(
                "spf.all",
                Status::Warn,
                domain,
                "no 'all' and no redirect: unlisted IPs get neutral, as if the domain had no SPF policy",
            )
            .fix(txt_line(domain, &with_all(record, '-'))),
        };
    };
    let (status, meaning) = judge(all.qualifier);
    let mut ignored: Vec<&str> = record
        .mechanisms
        .iter()
        .skip_while(|m| m.kind != Kind::All)
        .skip(1)
        .map(|m| m.text.as_str())
        .collect();
    let redirect = record.redirect.as_ref().map(|r| format!("redirect={r}"));
    ignored.extend(redirect.as_deref());
    let detail = format!("{}: {meaning}", all.text);
    if status == Status::Pass && !ignored.is_empty() {
        return Finding::new(
            "spf.all",
            Status::Warn,
            domain,
            format!(
                "{detail}; never evaluated because they come after all or next to it: {}",
                ignored.join(" ")
            ),
        )
        .fix(txt_line(domain, &with_all(record, all.qualifier)));
    }
    let finding = Finding::new("spf.all", status, domain, detail);
    let authorizes_someone =
        record.mechanisms.iter().any(|m| m.kind != Kind::All) || record.redirect.is_some();
    match status {
        Status::Pass => finding,
        _ if authorizes_someone => finding.fix(txt_line(domain, &with_all(record, '-'))),
        _ => finding.fix(txt_line(domain, &suggested())),
    }
}

fn judge(qualifier: char) -> (Status, &'static str) {
    match qualifier {
        '-' => (Status::Pass, "mail from unlisted IPs fails SPF"),
        '~' => (
            Status::Pass,
            "mail from unlisted IPs soft-fails (most receivers junk it; -all is stricter)",
        ),
        '?' => (
            Status::Warn,
            "unlisted IPs get neutral, the same as having no SPF policy",
        ),
        _ => (
            Status::Fail,
            "every IP on the internet may send mail as this domain",
        ),
    }
}

/// `spf.all` for a record that ends in `redirect=`: the `all` of the record it leads to.
fn redirected_all(domain: &str, target: &str, tree: &Node) -> Finding {
    let mut node = tree.redirect_child();
    let mut via = vec![format!("redirect={target}")];
    while let Some(n) = node {
        let Some(record) = &n.record else { break };
        if let Some(all) = record.all() {
            let (status, meaning) = judge(all.qualifier);
            return Finding::new(
                "spf.all",
                status,
                domain,
                format!("{} via {}: {meaning}", all.text, via.join(" -> ")),
            );
        }
        match record.effective_redirect() {
            Some(next) => via.push(format!("redirect={next}")),
            None => {
                return Finding::new(
                    "spf.all",
                    Status::Warn,
                    domain,
                    format!(
                        "no 'all' at the end of {}: unlisted IPs get neutral",
                        via.join(" -> ")
                    ),
                );
            }
        }
        node = n.redirect_child();
    }
    Finding::new(
        "spf.all",
        Status::Info,
        domain,
        format!(
            "not judged: {} has no usable record (see spf.lookups)",
            via.join(" -> ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::with_include;

    #[test]
    fn the_include_goes_before_all_or_redirect() {
        assert_eq!(
            with_include("v=spf1 mx ip4:192.0.2.1 -all", "_spf.p.example"),
            "v=spf1 mx ip4:192.0.2.1 include:_spf.p.example -all"
        );
        assert_eq!(
            with_include("v=spf1 a redirect=_spf.example.org", "_spf.p.example"),
            "v=spf1 a include:_spf.p.example redirect=_spf.example.org"
        );
        assert_eq!(
            with_include("v=spf1 mx", "_spf.p.example"),
            "v=spf1 mx include:_spf.p.example"
        );
    }
}
