//! Where a report may go: the `rua=` addresses of the policy, each checked as RFC 7489 section 7.1 demands
//! before a report leaves for a domain outside the policy domain's organization, and each with its size limit
//! (`mailto:reports@example.net!10m`).

use mail_auth::dmarc::URI;
use serde::Serialize;

use crate::dns::Resolver;
use crate::dns::dmarc::organizational_domain_of;

/// One `rua=` address and whether the report goes there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// The address.
    pub address: String,
    /// The largest report the address takes, in bytes (0: no limit).
    pub max_size: usize,
    /// Why the report does not go there; `None` when it does.
    pub refused: Option<String>,
}

/// The longest stored form (the column's size): destinations beyond it are left out.
pub const MAX_STORED: usize = 2000;

/// The stored form of `rua`: `address!bytes` (no `!` without a limit), space-separated; destinations that
/// would make it longer than its column are left out (a record naming dozens is not one to follow anyway).
pub fn format(rua: &[URI]) -> String {
    join_within(rua.iter().map(|u| match u.max_size {
        0 => u.uri.clone(),
        n => format!("{}!{n}", u.uri),
    }))
}

/// `items` space-separated, as many as fit in [`MAX_STORED`] bytes (the rest left out).
pub fn join_within(items: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for one in items {
        if out.len() + 1 + one.len() > MAX_STORED {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&one);
    }
    out
}

/// Reads [`format`]'s output back.
pub fn parse(stored: &str) -> Vec<URI> {
    stored
        .split_whitespace()
        .map(|u| match u.split_once('!') {
            Some((uri, size)) => URI {
                uri: uri.to_string(),
                max_size: size.parse().unwrap_or(0),
            },
            None => URI {
                uri: u.to_string(),
                max_size: 0,
            },
        })
        .collect()
}

/// The destinations of a report about `domain`: each address outside `domain`'s organization must be
/// authorized by a `DOMAIN._report._dmarc.DESTINATION` TXT record starting with `v=DMARC1` (RFC 7489 7.1),
/// so nobody can point a domain's reports at a third party's mailbox.
pub async fn check(resolver: &Resolver, domain: &str, rua: &[URI]) -> Vec<Destination> {
    let own_org = organizational_domain_of(resolver, domain).await.ok();
    let mut out = Vec::with_capacity(rua.len());
    for uri in rua {
        let address = uri.uri.to_ascii_lowercase();
        let refused = match address.rsplit_once('@') {
            None | Some(("", _)) => Some("not an address".to_string()),
            Some((_, target)) => authorize(resolver, domain, own_org.as_deref(), target).await,
        };
        if !out.iter().any(|d: &Destination| d.address == address) {
            out.push(Destination {
                address,
                max_size: uri.max_size,
                refused,
            });
        }
    }
    out
}

/// `None` when reports about `domain` may go to `target`, else why not.
async fn authorize(
    resolver: &Resolver,
    domain: &str,
    own_org: Option<&str>,
    target: &str,
) -> Option<String> {
    let target = target.trim_end_matches('.');
    if target.eq_ignore_ascii_case(domain) {
        return None;
    }
    if let (Some(own), Ok(theirs)) = (own_org, organizational_domain_of(resolver, target).await)
        && own.eq_ignore_ascii_case(&theirs)
    {
        return None;
    }
    let name = format!("{domain}._report._dmarc.{target}");
    match resolver.txt_or_reason(&name).await {
        Ok(records) if records.iter().any(|r| is_authorization(r)) => None,
        Ok(_) => Some(format!(
            "{target} does not accept reports about {domain} (no v=DMARC1 record at {name})"
        )),
        Err(reason) => Some(format!("cannot check {name}: {reason}")),
    }
}

/// Whether a TXT record authorizes external reports: it starts with `v=DMARC1` (RFC 7489 7.1).
fn is_authorization(record: &str) -> bool {
    let record = record.trim_start();
    record
        .get(..8)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
        && record[8..]
            .trim_start()
            .chars()
            .next()
            .is_none_or(|c| c == ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips() {
        let rua = vec![
            URI {
                uri: "dmarc@example.org".into(),
                max_size: 10 * 1024 * 1024,
            },
            URI {
                uri: "agg@reports.example.net".into(),
                max_size: 0,
            },
        ];
        let stored = format(&rua);
        assert_eq!(stored, "dmarc@example.org!10485760 agg@reports.example.net");
        assert_eq!(parse(&stored), rua);
        assert!(parse("").is_empty());
    }

    #[test]
    fn only_a_v_dmarc1_record_authorizes() {
        assert!(is_authorization("v=DMARC1"));
        assert!(is_authorization("v=DMARC1;"));
        assert!(is_authorization(" v=dmarc1 ; rua=mailto:x@y"));
        assert!(!is_authorization("v=DMARC10"));
        assert!(!is_authorization("v=spf1 -all"));
        assert!(!is_authorization(""));
    }
}
