//! Domains: add, change, delete (with what they hold).

use super::free_text;
use crate::error::{Error, Result};
use crate::model::DomainName;
use crate::store::{DomainRow, DomainUsage, Tx};

/// The settable properties of a domain; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Default)]
pub struct DomainSettings {
    /// Free text.
    pub description: Option<String>,
    /// Max mailboxes (0 unlimited, -1 none).
    pub max_mailboxes: Option<i64>,
    /// Max aliases (0 unlimited, -1 none).
    pub max_aliases: Option<i64>,
    /// Max quota per mailbox in MB (0 unlimited).
    pub max_quota_mb: Option<i64>,
    /// Total quota of all mailboxes in MB (0 unlimited).
    pub quota_mb: Option<i64>,
    /// Only a backup MX for the domain.
    pub backup_mx: Option<bool>,
    /// Accept mail for the domain.
    pub active: Option<bool>,
}

fn apply(row: &mut DomainRow, s: &DomainSettings) -> Result<()> {
    if let Some(d) = &s.description {
        row.description = free_text("description", d)?;
    }
    for (flag, value, target) in [
        ("--max-mailboxes", s.max_mailboxes, &mut row.mailboxes),
        ("--max-aliases", s.max_aliases, &mut row.aliases),
    ] {
        if let Some(v) = value {
            if v < -1 {
                return Err(Error::usage(format!(
                    "{flag} must be -1 (none), 0 (unlimited) or a positive number, not {v}"
                )));
            }
            *target = v;
        }
    }
    for (flag, value, target) in [
        ("--max-quota-mb", s.max_quota_mb, &mut row.maxquota),
        ("--domain-quota-mb", s.quota_mb, &mut row.quota),
    ] {
        if let Some(v) = value {
            if !(0..=super::MAX_MB).contains(&v) {
                return Err(Error::usage(format!(
                    "{flag} must be 0 (unlimited) or a positive number up to {}, not {v}",
                    super::MAX_MB
                )));
            }
            *target = v;
        }
    }
    if let Some(b) = s.backup_mx {
        row.backupmx = b;
    }
    if let Some(a) = s.active {
        row.active = a;
    }
    Ok(())
}

/// The domain row, or a not-found error naming it.
pub async fn require_domain(tx: &mut Tx, name: &DomainName) -> Result<DomainRow> {
    tx.domain(name.as_str())
        .await?
        .ok_or_else(|| Error::not_found("domain", name))
}

/// Creates a domain.
pub async fn add_domain(tx: &mut Tx, name: &DomainName, s: &DomainSettings) -> Result<DomainRow> {
    if tx.domain(name.as_str()).await?.is_some() {
        return Err(Error::exists("domain", name));
    }
    let now = crate::time::now_db();
    let mut row = DomainRow {
        domain: name.to_string(),
        description: String::new(),
        aliases: 0,
        mailboxes: 0,
        maxquota: 0,
        quota: 0,
        transport: "virtual".into(),
        backupmx: false,
        created: now.clone(),
        modified: now,
        active: true,
    };
    apply(&mut row, s)?;
    tx.insert_domain(&row).await?;
    Ok(row)
}

/// Changes a domain's settings.
pub async fn update_domain(
    tx: &mut Tx,
    name: &DomainName,
    s: &DomainSettings,
) -> Result<DomainRow> {
    tx.lock_domain(name.as_str()).await?;
    let mut row = require_domain(tx, name).await?;
    apply(&mut row, s)?;
    refuse_below_usage(tx, &row).await?;
    row.modified = crate::time::now_db();
    tx.update_domain(&row).await?;
    Ok(row)
}

/// A domain never holds more than its limits allow, so new limits may not be below what it holds already
/// (this also keeps `export` followed by `import` working).
async fn refuse_below_usage(tx: &mut Tx, row: &DomainRow) -> Result<()> {
    let usage = tx.domain_usage(&row.domain).await?;
    let name = &row.domain;
    for (what, limit, have) in [
        ("mailboxes", row.mailboxes, usage.mailboxes),
        ("aliases", row.aliases, usage.aliases),
    ] {
        if (limit > 0 && have > limit) || (limit < 0 && have > 0) {
            return Err(Error::refused(format!(
                "domain {name} has {have} {what}; delete some before lowering its limit to {limit}"
            )));
        }
    }
    if row.quota > 0 && usage.quota_bytes > row.quota.saturating_mul(super::MB) {
        return Err(Error::refused(format!(
            "domain {name}'s mailboxes have {} MB of quota allocated, more than {} MB",
            usage.quota_bytes / super::MB,
            row.quota
        )));
    }
    if row.maxquota > 0 {
        let over = tx
            .mailboxes(Some(name))
            .await?
            .into_iter()
            .filter(|m| m.quota == 0 || m.quota > row.maxquota.saturating_mul(super::MB))
            .count();
        if over > 0 {
            return Err(Error::refused(format!(
                "{over} mailboxes of {name} have a quota above {} MB (or unlimited); lower them first",
                row.maxquota
            )));
        }
    }
    Ok(())
}

/// What a domain holds, in words: `1 mailbox, 2 aliases and 0 alias-domain mappings`.
pub fn contents(usage: &DomainUsage) -> String {
    use crate::output::count;
    format!(
        "{}, {} and {}",
        count(usage.mailboxes, "mailbox", "mailboxes"),
        count(usage.aliases, "alias", "aliases"),
        count(
            usage.alias_domains,
            "alias-domain mapping",
            "alias-domain mappings"
        )
    )
}

/// Deletes a domain. One that holds mailboxes, aliases or alias-domain mappings is refused unless `force`;
/// the returned usage says what was removed with it.
pub async fn delete_domain(tx: &mut Tx, name: &DomainName, force: bool) -> Result<DomainUsage> {
    tx.lock_domain(name.as_str()).await?;
    require_domain(tx, name).await?;
    let usage = tx.domain_usage(name.as_str()).await?;
    let holds = usage.mailboxes + usage.aliases + usage.alias_domains > 0;
    if holds && !force {
        return Err(Error::refused(format!(
            "domain {name} still has {}; delete them first or use --force",
            contents(&usage)
        )));
    }
    // Alias domains of this domain would be left accepting mail for nothing: remove the empty ones too.
    let orphans: Vec<String> = tx
        .alias_domains()
        .await?
        .into_iter()
        .filter(|a| a.target_domain == name.as_str())
        .map(|a| a.alias_domain)
        .collect();
    tx.delete_domain_cascade(name.as_str()).await?;
    for orphan in orphans {
        let u = tx.domain_usage(&orphan).await?;
        if u.mailboxes + u.aliases + u.alias_domains == 0 {
            tx.delete_domain_cascade(&orphan).await?;
        }
    }
    Ok(usage)
}
