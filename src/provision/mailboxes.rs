//! Mailboxes: quota and count limits, the self-alias row, passwords.

use super::{MB, check_count_limit, free_text, require_domain};
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
    let mut added = add_mailboxes(
        tx,
        vec![NewMailbox {
            line: 0,
            addr: addr.clone(),
            password_hash,
            settings: s.clone(),
        }],
        |_| {},
    )
    .await?;
    match (added.rows.pop(), added.refused.pop()) {
        (Some(row), _) => Ok(row),
        (None, Some((_, e))) => Err(e),
        (None, None) => Err(Error::refused(format!("{addr} was not added"))),
    }
}

/// A mailbox to add, with the line of the file it came from (0 when not from a file).
#[derive(Debug, Clone)]
pub struct NewMailbox {
    /// File line.
    pub line: u64,
    /// The address.
    pub addr: Address,
    /// The password, hashed.
    pub password_hash: String,
    /// Name, quota, flags.
    pub settings: MailboxSettings,
}

/// What [`add_mailboxes`] did.
#[derive(Debug, Default)]
pub struct Added {
    /// The rows written, in order.
    pub rows: Vec<MailboxRow>,
    /// Each refused mailbox's line and why.
    pub refused: Vec<(u64, Error)>,
}

/// Mailboxes checked and written per round trip.
pub const BATCH: usize = 500;

/// What the rules need to know of a domain while mailboxes are added to it.
enum Target {
    /// No such domain.
    Missing,
    /// An alias domain of this target.
    AliasOf(String),
    /// A domain taking mailboxes, with what it holds (kept up to date as mailboxes are added).
    Open(Box<(DomainRow, crate::store::DomainUsage)>),
}

/// Adds mailboxes with the rules of one `mailbox add` each (the domain exists and is not an alias domain, the
/// address is neither a mailbox nor an alias, the domain's mailbox count and quotas), in time linear in their
/// number: each domain is locked, read and counted once and its counts kept here, existence is asked per
/// [`BATCH`], and rows are inserted per batch. A refused mailbox is reported with its line and the others go
/// on; a database error ends the whole (the caller rolls back). `progress` hears how many were handled after
/// each batch.
pub async fn add_mailboxes(
    tx: &mut Tx,
    items: Vec<NewMailbox>,
    mut progress: impl FnMut(usize),
) -> Result<Added> {
    let mut out = Added::default();
    let mut domains: std::collections::HashMap<String, Target> = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let now = crate::time::now_db();
    for chunk in items.chunks(BATCH) {
        // Locks first (as one `mailbox add` does), then what exists.
        for m in chunk {
            if !domains.contains_key(m.addr.domain.as_str()) {
                let target = open(tx, &m.addr).await?;
                domains.insert(m.addr.domain.as_str().to_string(), target);
            }
        }
        let names: Vec<String> = chunk.iter().map(|m| m.addr.to_string()).collect();
        let mailboxes = tx.existing_mailboxes(&names).await?;
        let aliases = tx.existing_aliases(&names).await?;
        let (mut rows, mut self_aliases) = (Vec::new(), Vec::new());
        for (m, username) in chunk.iter().zip(names) {
            let Some(target) = domains.get_mut(m.addr.domain.as_str()) else {
                continue;
            };
            let admitted = match target {
                Target::Missing => Err(Error::not_found("domain", &m.addr.domain)),
                Target::AliasOf(t) => Err(super::alias_domain_refusal(
                    m.addr.domain.as_str(),
                    t,
                    "mailbox",
                )),
                Target::Open(open) => {
                    let (domain, usage) = &mut **open;
                    if seen.contains(&username) || mailboxes.contains(&username) {
                        Err(Error::exists("mailbox", &m.addr))
                    } else if aliases.contains(&username) {
                        Err(Error::refused(format!(
                            "{} is already an alias; delete the alias first",
                            m.addr
                        )))
                    } else {
                        admit(domain, usage, m, &username, &now)
                    }
                }
            };
            match admitted {
                Ok((row, alias)) => {
                    seen.insert(username);
                    rows.push(row);
                    self_aliases.push(alias);
                }
                Err(e) => out.refused.push((m.line, e)),
            }
        }
        tx.insert_mailboxes(&rows).await?;
        tx.insert_aliases(&self_aliases).await?;
        out.rows.extend(rows);
        progress(chunk.len());
    }
    Ok(out)
}

/// Locks and reads the domain of `addr`.
async fn open(tx: &mut Tx, addr: &Address) -> Result<Target> {
    if !tx.lock_domain(addr.domain.as_str()).await? {
        return Ok(Target::Missing);
    }
    let domain = require_domain(tx, &addr.domain).await?;
    if let Some(ad) = tx.alias_domain(&domain.domain).await? {
        return Ok(Target::AliasOf(ad.target_domain));
    }
    let usage = tx.domain_usage(&domain.domain).await?;
    Ok(Target::Open(Box::new((domain, usage))))
}

/// The limit checks for one more mailbox in `domain`, and its rows; counts it in `usage` when admitted.
fn admit(
    domain: &DomainRow,
    usage: &mut crate::store::DomainUsage,
    m: &NewMailbox,
    username: &str,
    now: &str,
) -> Result<(MailboxRow, AliasRow)> {
    check_count_limit(
        &domain.domain,
        "mailboxes",
        domain.mailboxes,
        usage.mailboxes,
    )?;
    let s = &m.settings;
    let quota = s
        .quota_bytes
        .unwrap_or(domain.maxquota.max(0).saturating_mul(MB));
    check_quota(domain, quota, usage.quota_bytes)?;
    let row = MailboxRow {
        username: username.to_string(),
        password: m.password_hash.clone(),
        name: free_text("name", s.name.as_deref().unwrap_or(""))?,
        maildir: format!("{}/{}/", m.addr.domain, m.addr.local),
        quota,
        local_part: m.addr.local.to_string(),
        domain: domain.domain.clone(),
        created: now.to_string(),
        modified: now.to_string(),
        active: s.active.unwrap_or(true),
        smtp_active: s.smtp_active.unwrap_or(true),
    };
    let alias = AliasRow {
        address: username.to_string(),
        goto: username.to_string(),
        domain: domain.domain.clone(),
        created: now.to_string(),
        modified: now.to_string(),
        active: true,
    };
    usage.mailboxes += 1;
    usage.quota_bytes = usage.quota_bytes.saturating_add(quota);
    Ok((row, alias))
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
