//! Recipients and senders as a receiving server must treat them: what `RCPT TO:<x>` means for the hosted
//! domains, and which `MAIL FROM` addresses an authenticated login may use.
//!
//! # Design
//!
//! [`resolve`] answers one RCPT over an open [`Tx`]; it never touches a socket, so the session calls it per
//! recipient and turns the [`Recipient`] into a reply (`250`, `550 5.1.1`, `554 5.7.1`, `550 5.2.1`), and a
//! database error into `451 4.3.0`. The answer is final at RCPT time: nothing is accepted that would bounce later,
//! so this server sends no backscatter.
//!
//! The rules are those of a stock Postfix over postfixadmin's tables (the maps [`crate::lookup_config`]
//! generates, read with virtual(5)'s search order), so a database behaves the same behind either server:
//!
//! 1. **Domain.** The recipient's domain must be a `domain` row with `active = 1` and `backupmx = 0`
//!    (`virtual_mailbox_domains`). Otherwise the answer is [`Recipient::NotLocal`]: an inactive domain is not
//!    hosted at all, as in Postfix (the relay decision then refuses strangers with 554). A backup-MX domain is
//!    not local either; whether to accept it for relaying to its primary (Postfix's `relay_domains`) is the
//!    relay policy's question, not the recipient table's.
//! 2. **Alias domain.** If the domain has an active `alias_domain` row, `x@alias` means `x@target` and the
//!    rewritten address is resolved instead (rows stored inside the alias domain itself are not consulted while
//!    the mapping is active; mailctl refuses to create them). A mapping whose target is not an active hosted
//!    domain delivers nowhere: [`Recipient::Disabled`]. An inactive mapping is ignored and the domain is an
//!    ordinary one.
//! 3. **Address.** An active `alias` row for the exact address wins, then a `mailbox` row (postfixadmin gives
//!    every mailbox a self-alias, `alice -> alice`, which means "deliver to the mailbox"). With a recipient
//!    delimiter (default `+`), `alice+tag@d` that matches neither falls back to `alice@d`, exactly like
//!    Postfix's `recipient_delimiter`; the extension is not propagated to alias targets.
//! 4. **Catch-all.** Only when no mailbox exists under either name, the active catch-all `@domain` takes it.
//!    A mailbox, even a disabled one, is never swallowed by a catch-all (Postfix would do that if the self-alias
//!    row were missing or inactive; here the mailbox row alone is enough).
//! 5. **Nothing.** No alias, no mailbox, no catch-all: [`Recipient::Unknown`].
//!
//! Alias targets are expanded breadth-first, each target going through the same steps (so targets may be
//! aliases, alias-domain addresses, subaddresses or unknown names caught by a catch-all). Expansion is bounded
//! for hostile or broken tables: every address is expanded once (a loop `a -> b -> a` simply stops), a target
//! more than [`ResolveLimits::max_depth`] rewrites away from the recipient is dropped, and at most
//! [`ResolveLimits::max_targets`] goto entries are looked at in total, so one RCPT costs a bounded number of
//! queries. What was dropped, and why, is written to `via` for the log line.
//!
//! Targets that deliver nothing (unknown hosted addresses, disabled mailboxes, inactive domains, cut-off
//! chains) are noted in `via` and skipped: the recipient is accepted if *anything* deliverable remains. If
//! nothing does, the answer is [`Recipient::Disabled`] when a disabled mailbox or domain was among the dead
//! ends (so `alice -> alice` for a disabled alice is refused as disabled, while a forward the admin put on a
//! disabled mailbox still works), and [`Recipient::Unknown`] otherwise. Targets in domains this server does not
//! host (or only backs up) go to `external`, for the outbound queue.
//!
//! [`resolve_parts`] is the entry point for an envelope path straight from the command parser: it lower-cases
//! the local part and answers local parts that no stored address could have (`%`/`!` routing, quoted strings,
//! UTF-8) without a lookup, so no address trick can turn into a relay.
//!
//! [`may_send_as`] is Postfix's `reject_sender_login_mismatch` over the same tables; see its documentation for
//! what counts as owning an address.

mod sender;
mod walk;

#[cfg(test)]
mod tests;

pub use sender::{SendAs, may_send_as, sender_check};

use crate::error::Result;
use crate::model::{Address, DomainName};
use crate::store::{MailboxRow, Tx};
use walk::DomainState;

/// Bounds on alias expansion and the subaddress rule; the defaults suit any sane table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveLimits {
    /// How many rewrites (alias hops, alias-domain mappings, catch-all hops) a delivered target may be away from
    /// the recipient. Deeper targets are dropped and noted. Default 10.
    pub max_depth: usize,
    /// How many goto entries are examined in total for one recipient, which bounds the number of queries and
    /// the size of the answer. Entries beyond it are dropped and noted. Default 100.
    pub max_targets: usize,
    /// Postfix's `recipient_delimiter`: `alice+tag@d` falls back to `alice@d` when nothing matches it exactly.
    /// `None` turns subaddressing off. Default `Some('+')`.
    pub delimiter: Option<char>,
}

impl Default for ResolveLimits {
    fn default() -> Self {
        ResolveLimits {
            max_depth: 10,
            max_targets: 100,
            delimiter: Some('+'),
        }
    }
}

/// What one RCPT address means for this server.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    /// Accept: deliver into these local mailboxes and hand `external` to the outbound queue.
    Local {
        /// Active mailboxes to deliver into, each once, in the order the expansion reached them. The rows carry
        /// `maildir`, `quota` and `active`; their `password` field is blanked, since a password hash has no
        /// business travelling with a delivery (or showing up in a `Debug` log line).
        mailboxes: Vec<MailboxRow>,
        /// Alias targets outside the hosted domains (or in backup-MX domains), each once, to be relayed.
        external: Vec<Address>,
        /// The expansion, one step per entry (`info@d -> alice@d, bob@far`), including what was skipped and
        /// why; for the transaction's log line. Entries are built from canonical addresses or escaped text.
        via: Vec<String>,
    },
    /// The domain is hosted but nothing deliverable answers to the address: `550 5.1.1` at RCPT.
    Unknown,
    /// The domain is not hosted here (absent, inactive, or only a backup MX): a relay question, refused with
    /// `554 5.7.1 relay access denied` unless the client is authenticated.
    NotLocal,
    /// Everything the address leads to is switched off (a disabled mailbox, an alias of only disabled
    /// mailboxes, an alias domain whose target is disabled): `550 5.2.1` at RCPT. Never caught by a catch-all.
    Disabled,
    /// An SRS address of a hosted domain that verified ([`crate::srs`]): a bounce (or reply) to mail this
    /// server forwarded, on its way back to the original sender outside, which it is relayed to, from any
    /// client. The address as it was encoded (it may not be one this server would accept as a name).
    Returned(String),
    /// An SRS address of a hosted domain that is forged, expired or malformed, or whose bounces are not
    /// returned (the forwarded mail's sender was not authenticated): `550 5.1.1` at RCPT, with the reason.
    BadSrs(String),
}

/// Resolves one recipient address, as the session does for each RCPT.
///
/// Errors are database errors only; the session answers them with `451 4.3.0` so the sender retries.
pub async fn resolve(tx: &mut Tx, address: &Address, limits: ResolveLimits) -> Result<Recipient> {
    walk::Walk::new(tx, limits).run(address).await
}

/// Resolves a recipient given as the raw parts of an envelope path (the local part as the client wrote it,
/// the domain as the command parser canonicalized it), for addresses that may not fit [`Address`].
///
/// Local parts are matched lower-case. A local part that no hosted address could have (`%` and `!` routing
/// tricks, quoted strings with spaces or `@`, UTF-8, over-long) is [`Recipient::Unknown`] in a hosted domain
/// and [`Recipient::NotLocal`] elsewhere, so none of them can make this server relay; a domain that is not a
/// name (an address literal) is [`Recipient::NotLocal`].
pub async fn resolve_parts(
    tx: &mut Tx,
    local: &str,
    domain: &str,
    limits: ResolveLimits,
) -> Result<Recipient> {
    let Ok(domain) = domain.parse::<DomainName>() else {
        return Ok(Recipient::NotLocal);
    };
    if crate::srs::is_srs(local) && is_hosted(tx, &domain).await? {
        return srs_recipient(tx, local, limits).await;
    }
    if let Ok(address) = format!("{local}@{domain}").parse::<Address>()
        && address.domain == domain
    {
        return resolve(tx, &address, limits).await;
    }
    Ok(match walk::domain_state(tx, &domain).await? {
        DomainState::Hosted | DomainState::AliasOf(_) => Recipient::Unknown,
        DomainState::BrokenAlias(_) => Recipient::Disabled,
        DomainState::Inactive | DomainState::BackupMx | DomainState::Foreign => Recipient::NotLocal,
    })
}

/// Whether `domain` is hosted here (an active, non-backup domain, or an active alias domain of one).
pub async fn is_hosted(tx: &mut Tx, domain: &DomainName) -> Result<bool> {
    Ok(matches!(
        walk::domain_state(tx, domain).await?,
        DomainState::Hosted | DomainState::AliasOf(_)
    ))
}

/// An SRS local part of a hosted domain: reversed with the stored secrets. A reversed address in a hosted
/// domain is resolved as any recipient (one level: an SRS address never reverses to another of ours that
/// verifies, since ours are never made from our own domains' senders).
async fn srs_recipient(tx: &mut Tx, local: &str, limits: ResolveLimits) -> Result<Recipient> {
    let srs = crate::provision::srs::load(tx).await?;
    let today = crate::srs::day(chrono::Utc::now().timestamp().max(0) as u64);
    let original = match srs.reverse(local, today) {
        Ok(crate::srs::Reversed::Address(original)) => original,
        Ok(crate::srs::Reversed::Silent) => {
            return Ok(Recipient::BadSrs(
                "the forwarded mail's sender was not authenticated, so bounces are not returned"
                    .into(),
            ));
        }
        Err(e) => return Ok(Recipient::BadSrs(e.to_string())),
    };
    let Some((_, domain)) = original.rsplit_once('@') else {
        return Ok(Recipient::BadSrs("the SRS address holds no domain".into()));
    };
    let hosted = match domain.parse::<DomainName>() {
        Ok(d) => is_hosted(tx, &d).await?,
        Err(_) => {
            return Ok(Recipient::BadSrs(
                "the SRS address holds no valid domain".into(),
            ));
        }
    };
    match original.parse::<Address>() {
        Ok(address) if hosted && !crate::srs::is_srs(address.local.as_str()) => {
            resolve(tx, &address, limits).await
        }
        _ if hosted => Ok(Recipient::BadSrs(
            "the SRS address leads back to this server".into(),
        )),
        _ => Ok(Recipient::Returned(original)),
    }
}

/// `alice@d` for `alice+tag@d`: the part before the first delimiter, when that leaves a valid, non-empty local
/// part. `None` when there is no delimiter, subaddressing is off, or the base would be malformed.
pub(crate) fn base_address(address: &Address, delimiter: Option<char>) -> Option<Address> {
    let delimiter = delimiter?;
    let (base, _extension) = address.local.as_str().split_once(delimiter)?;
    let local = base.parse().ok()?;
    Some(Address {
        local,
        domain: address.domain.clone(),
    })
}
