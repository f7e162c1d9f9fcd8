//! Which `MAIL FROM` addresses an authenticated login owns: Postfix's `reject_sender_login_mismatch` over the
//! `sender_login_maps` that [`crate::lookup_config`] generates, made a little stricter where Postfix is loose.

use super::base_address;
use super::walk::{DomainState, domain_state};
use crate::error::Result;
use crate::model::Address;
use crate::store::Tx;

/// Whether the SMTP login `login` may use `sender` as its envelope sender (MAIL FROM).
///
/// The login must be an active mailbox with `smtp_active = 1` (the session checks that at AUTH already; this
/// check keeps a stale session from sending after the mailbox was switched off). Then it owns:
///
/// - its own mailbox address;
/// - an address whose active alias row lists the login in its goto **directly**. Nested aliases do not count
///   (`list -> team -> alice` does not let alice send as `list`), as in Postfix: owning an address is a fact
///   written in its own row, not something inherited through a distribution list;
/// - the same addresses in an active alias domain of their domain (`alice@alias` for `alice@target`), since mail
///   to them reaches the login too;
/// - with a `delimiter` (Postfix's `recipient_delimiter`, normally `Some('+')`), `alice+tag@d` when nothing
///   matches it exactly and the login owns `alice@d` (Postfix's lookup order for `smtpd_sender_login_maps`).
///
/// Stricter than Postfix, on purpose: another user's **mailbox** address is owned only by that user, even if
/// its self-alias forwards a copy to the login (a forward hands over mail, not the right to impersonate); a
/// catch-all `@domain` pointing at the login gives no right to send as arbitrary names of the domain; and the
/// sender's domain must be an active, hosted (not backup-MX) domain here.
///
/// Errors are database errors only; the session answers them with `451 4.3.0`.
pub async fn may_send_as(
    tx: &mut Tx,
    login: &Address,
    sender: &Address,
    delimiter: Option<char>,
) -> Result<bool> {
    Ok(sender_check(tx, login, Some(sender), delimiter).await? == SendAs::Allowed)
}

/// What [`may_send_as`] decided, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAs {
    /// The login may send as the sender.
    Allowed,
    /// The login may send, but the sender is not one of its addresses.
    NotOwned,
    /// The login may not send at all (no active mailbox, or SMTP turned off: by the admin or the breaker).
    LoginOff,
}

/// [`may_send_as`] with the reason for a no; `sender` None is the null sender `<>`, which any login that may
/// send at all may use (notifications).
pub async fn sender_check(
    tx: &mut Tx,
    login: &Address,
    sender: Option<&Address>,
    delimiter: Option<char>,
) -> Result<SendAs> {
    let me = login.to_string();
    if !tx
        .mailbox(&me)
        .await?
        .is_some_and(|m| m.active && m.smtp_active)
    {
        return Ok(SendAs::LoginOff);
    }
    let Some(sender) = sender else {
        return Ok(SendAs::Allowed);
    };
    Ok(match owns(tx, &me, sender, delimiter).await? {
        true => SendAs::Allowed,
        false => SendAs::NotOwned,
    })
}

/// Whether the login `me` owns `sender` (see [`may_send_as`]).
async fn owns(tx: &mut Tx, me: &str, sender: &Address, delimiter: Option<char>) -> Result<bool> {
    let sender = match domain_state(tx, &sender.domain).await? {
        DomainState::Hosted => sender.clone(),
        DomainState::AliasOf(target) => Address {
            local: sender.local.clone(),
            domain: target,
        },
        DomainState::BrokenAlias(_)
        | DomainState::Inactive
        | DomainState::BackupMx
        | DomainState::Foreign => return Ok(false),
    };
    if let Some(owned) = owned_by(tx, me, &sender).await? {
        return Ok(owned);
    }
    match base_address(&sender, delimiter) {
        Some(base) => Ok(owned_by(tx, me, &base).await?.unwrap_or(false)),
        None => Ok(false),
    }
}

/// Whether `login` owns `address` according to the address's own rows; `None` when the address has no rows
/// (no mailbox, no active alias), so the caller may try the address without its extension.
async fn owned_by(tx: &mut Tx, login: &str, address: &Address) -> Result<Option<bool>> {
    let key = address.to_string();
    if tx.mailbox(&key).await?.is_some() {
        return Ok(Some(key == login));
    }
    match tx.alias(&key).await?.filter(|a| a.active) {
        Some(row) => Ok(Some(row.targets().iter().any(|t| {
            t.parse::<Address>()
                .is_ok_and(|target| target.to_string() == login)
        }))),
        None => Ok(None),
    }
}
