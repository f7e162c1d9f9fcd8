//! Mailboxes: quota and count limits, the self-alias row, passwords.

use super::{MB, check_count_limit, free_text, refuse_alias_domain, require_domain};
use crate::error::{Error, Result};
use crate::model::Address;
use crate::store::{AliasRow, DomainRow, MailboxRow, Tx};

/// The settable properties of a mailbox; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Default)]
pub struct MailboxSettings {
    /// Display name.
    pub name: Option<String>,
    /// Quota in bytes (0 unlimited); defaults to the domain's max quota per mailbox.
    pub quota_bytes: Option<i64>,
    /// Mail delivered and IMAP login allowed.
    pub active: Option<bool>,
    /// SMTP AUTH allowed.
    pub smtp_active: Option<bool>,
}

/// The mailbox row, or a not-found error naming it.
pub async fn require_mailbox(tx: &mut Tx, addr: &Address) -> Result<MailboxRow> {
    tx.mailbox(&addr.to_string())
        .await?
        .ok_or_else(|| Error::not_found("mailbox", addr))
}

/// Checks `quota` (bytes) against the domain's per-mailbox maximum and total quota, where `others` is the sum
/// of the other mailboxes' quotas.
fn check_quota(domain: &DomainRow, quota: i64, others: i64) -> Result<()> {
    let name = &domain.domain;
    if quota < 0 {
        return Err(Error::usage(format!(
            "quota must not be negative, got {quota}"
        )));
    }
    if domain.maxquota > 0 {
        if quota == 0 {
            return Err(Error::refused(format!(
                "domain {name} limits mailboxes to {} MB; an unlimited quota is not allowed",
                domain.maxquota
            )));
        }
        if quota > domain.maxquota.saturating_mul(MB) {
            return Err(Error::refused(format!(
                "quota {} MB is over domain {name}'s limit of {} MB per mailbox",
                quota / MB,
                domain.maxquota
            )));
        }
    }
    if domain.quota > 0 {
        if quota == 0 {
            return Err(Error::refused(format!(
                "domain {name} has a total quota of {} MB; give the mailbox a quota with --quota-mb",
                domain.quota
            )));
        }
        if others.saturating_add(quota) > domain.quota.saturating_mul(MB) {
            return Err(Error::refused(format!(
                "domain {name}'s total quota of {} MB would be exceeded ({} MB allocated, {} MB requested)",
                domain.quota,
                others / MB,
                quota / MB
            )));
        }
    }
    Ok(())
}

/// Creates a mailbox with an already hashed password, plus its self-alias row.
pub async fn add_mailbox(
    tx: &mut Tx,
    addr: &Address,
    password_hash: String,
    s: &MailboxSettings,
) -> Result<MailboxRow> {
    let username = addr.to_string();
    if !tx.lock_domain(addr.domain.as_str()).await? {
        return Err(Error::not_found("domain", &addr.domain));
    }
    let domain = require_domain(tx, &addr.domain).await?;
    refuse_alias_domain(tx, &domain.domain, "mailbox").await?;
    if tx.mailbox(&username).await?.is_some() {
        return Err(Error::exists("mailbox", addr));
    }
    if tx.alias(&username).await?.is_some() {
        return Err(Error::refused(format!(
            "{addr} is already an alias; delete the alias first"
        )));
    }
    let usage = tx.domain_usage(&domain.domain).await?;
    check_count_limit(
        &domain.domain,
        "mailboxes",
        domain.mailboxes,
        usage.mailboxes,
    )?;
    let quota = s
        .quota_bytes
        .unwrap_or(domain.maxquota.max(0).saturating_mul(MB));
    check_quota(&domain, quota, usage.quota_bytes)?;
    let now = crate::time::now_db();
    let row = MailboxRow {
        username: username.clone(),
        password: password_hash,
        name: free_text("name", s.name.as_deref().unwrap_or(""))?,
        maildir: format!("{}/{}/", addr.domain, addr.local),
        quota,
        local_part: addr.local.to_string(),
        domain: domain.domain.clone(),
        created: now.clone(),
        modified: now.clone(),
        active: s.active.unwrap_or(true),
        smtp_active: s.smtp_active.unwrap_or(true),
    };
    tx.insert_mailbox(&row).await?;
    tx.insert_alias(&AliasRow {
        address: username.clone(),
        goto: username,
        domain: domain.domain,
        created: now.clone(),
        modified: now,
        active: true,
    })
    .await?;
    Ok(row)
}

/// Changes a mailbox's name, quota or flags. Activation also switches its self-alias row.
pub async fn update_mailbox(
    tx: &mut Tx,
    addr: &Address,
    s: &MailboxSettings,
) -> Result<MailboxRow> {
    tx.lock_domain(addr.domain.as_str()).await?;
    let mut row = require_mailbox(tx, addr).await?;
    if let Some(n) = &s.name {
        row.name = free_text("name", n)?;
    }
    if let Some(q) = s.quota_bytes {
        let domain = require_domain(tx, &addr.domain).await?;
        let usage = tx.domain_usage(&domain.domain).await?;
        check_quota(&domain, q, usage.quota_bytes - row.quota)?;
        row.quota = q;
    }
    if let Some(a) = s.active {
        // The self-alias stays active: were it switched off, Postfix would fall through to a catch-all and
        // deliver a disabled mailbox's mail elsewhere instead of refusing it.
        row.active = a;
    }
    if let Some(a) = s.smtp_active {
        row.smtp_active = a;
    }
    row.modified = crate::time::now_db();
    tx.update_mailbox(&row).await?;
    Ok(row)
}

/// Replaces a mailbox's password hash.
pub async fn set_password(
    tx: &mut Tx,
    addr: &Address,
    password_hash: String,
) -> Result<MailboxRow> {
    let mut row = require_mailbox(tx, addr).await?;
    row.password = password_hash;
    row.modified = crate::time::now_db();
    tx.update_mailbox(&row).await?;
    Ok(row)
}

/// Deletes a mailbox and its self-alias. Returns the other aliases that still forward to it, which the caller
/// should mention: mail sent to them will now bounce for this destination.
pub async fn delete_mailbox(tx: &mut Tx, addr: &Address) -> Result<Vec<String>> {
    tx.lock_domain(addr.domain.as_str()).await?;
    let row = require_mailbox(tx, addr).await?;
    tx.delete_mailbox(&row.username).await?;
    let still = tx
        .aliases(None, true)
        .await?
        .into_iter()
        .filter(|a| a.targets().iter().any(|t| t == &row.username))
        .map(|a| a.address)
        .collect();
    Ok(still)
}
