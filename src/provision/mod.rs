//! Provisioning rules: what may be created, changed and deleted, on top of the store's rows.
//!
//! Every function here takes an open [`Tx`] and leaves committing to the caller, so a command (or a whole CSV
//! import) is all-or-nothing. The rules are postfixadmin's: limits per domain (`0` unlimited, `-1` none allowed),
//! a self-alias row for every mailbox, catch-alls as `@domain`, alias domains that must point at a real domain.

mod aliases;
mod app_passwords;
pub mod dkim;
mod domains;
pub mod limits;
mod mailboxes;
pub mod srs;
mod vacation;

pub use aliases::{
    add_alias, add_alias_domain, delete_alias, delete_alias_domain, set_alias, update_alias,
};
pub use app_passwords::{
    add_app_password, add_totp_exception, delete_totp_exception, disable_totp, enable_totp,
    login_hashes, revoke_app_password,
};
pub use domains::{
    DomainSettings, add_domain, contents, delete_domain, require_domain, update_domain,
};
pub use mailboxes::{
    Added, MailboxSettings, NewMailbox, add_mailbox, add_mailboxes, delete_mailbox,
    require_mailbox, set_password, update_mailbox,
};
pub use vacation::{VacationSettings, set_vacation, vacation, vacation_off};

use crate::error::{Error, Result};
use crate::store::Tx;

/// Bytes per "MB" for `--quota-mb` and the domain's MB limits: postfixadmin's default `quota_multiplier`, so
/// quotas mean the same to mailctl and to a postfixadmin sharing the database.
pub const MB: i64 = 1_024_000;

/// The largest MB value that still fits in bytes.
pub const MAX_MB: i64 = i64::MAX / MB;

/// Checks free text that ends up in the database and in generated mail headers: one line, at most 255 chars.
/// Control characters (C0, DEL, C1 such as NEL) and the Unicode line and paragraph separators are refused: any
/// of them can end or rewrite a header line in some program that shows the text.
pub fn free_text(field: &str, value: &str) -> Result<String> {
    if value
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(Error::usage(format!(
            "{field} '{}' contains control characters (CR, LF, tab...)",
            crate::model::printable(value)
        )));
    }
    if value.chars().count() > 255 {
        return Err(Error::usage(format!(
            "{field} is longer than 255 characters"
        )));
    }
    Ok(value.to_string())
}

/// Refuses to provision mailboxes or aliases inside a domain that is only an alias of another.
async fn refuse_alias_domain(tx: &mut Tx, domain: &str, what: &str) -> Result<()> {
    if let Some(ad) = tx.alias_domain(domain).await? {
        return Err(alias_domain_refusal(domain, &ad.target_domain, what));
    }
    Ok(())
}

/// Why a `what` cannot be added in `domain`, an alias domain of `target`.
fn alias_domain_refusal(domain: &str, target: &str, what: &str) -> Error {
    Error::refused(format!(
        "{domain} is an alias domain of {target}; add the {what} in {target} instead"
    ))
}

/// Checks a postfixadmin-style count limit (`0` unlimited, `-1` none allowed).
fn check_count_limit(domain: &str, what: &str, limit: i64, have: i64) -> Result<()> {
    if limit < 0 {
        return Err(Error::refused(format!("domain {domain} allows no {what}")));
    }
    if limit > 0 && have >= limit {
        return Err(Error::refused(format!(
            "domain {domain} allows at most {limit} {what} and has {have}"
        )));
    }
    Ok(())
}
