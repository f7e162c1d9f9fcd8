//! Aliases, catch-alls and alias domains, with loop detection.

use std::collections::HashSet;

use super::{check_count_limit, refuse_alias_domain, require_domain};
use crate::error::{Error, Result};
use crate::model::{Address, AliasAddress, DomainName};
use crate::store::{AliasDomainRow, AliasRow, DomainRow, Tx};

/// How deep alias chains are followed when looking for loops (deeper chains are refused too).
const MAX_DEPTH: usize = 20;

fn goto_string(goto: &[Address]) -> Result<String> {
    let mut seen = HashSet::new();
    let list: Vec<String> = goto
        .iter()
        .map(ToString::to_string)
        .filter(|a| seen.insert(a.clone()))
        .collect();
    if list.is_empty() {
        return Err(Error::usage("an alias needs at least one destination"));
    }
    Ok(list.join(","))
}

/// Where mail for `address` goes next inside this database, if anywhere: its alias row, its domain's alias
/// domain mapping, or its domain's catch-all. A mailbox's plain self-alias ends the chain.
async fn next_hops(tx: &mut Tx, address: &str, start: &str) -> Result<Vec<String>> {
    if let Some(row) = tx.alias(address).await? {
        return Ok(row.targets().into_iter().filter(|t| t != address).collect());
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Ok(Vec::new());
    };
    if let Some(ad) = tx.alias_domain(domain).await? {
        return Ok(vec![format!("{local}@{}", ad.target_domain)]);
    }
    if tx.mailbox(address).await?.is_none() {
        let catch_all = format!("@{domain}");
        // The alias being written is not stored yet: falling through to it is a hop back to the start.
        if catch_all == start {
            return Ok(vec![catch_all]);
        }
        if let Some(row) = tx.alias(&catch_all).await? {
            return Ok(row.targets());
        }
    }
    Ok(Vec::new())
}

/// Refuses `goto` for `address` when following it would come back to `address` (a -> b -> a).
///
/// A mailbox naming itself in its own list is not a loop: that is how it keeps a copy while forwarding
/// (Postfix delivers an address that expands to itself).
async fn refuse_loop(tx: &mut Tx, address: &str, goto: &str) -> Result<()> {
    let keeps_copy = tx.mailbox(address).await?.is_some();
    let mut stack: Vec<(String, Vec<String>)> = goto
        .split(',')
        .filter(|t| !(keeps_copy && *t == address))
        .map(|t| (t.to_string(), vec![address.to_string(), t.to_string()]))
        .collect();
    let mut seen = HashSet::new();
    while let Some((hop, path)) = stack.pop() {
        if hop == address {
            return Err(Error::refused(format!("alias loop: {}", path.join(" -> "))));
        }
        if path.len() > MAX_DEPTH {
            return Err(Error::refused(format!(
                "alias chain from {address} is deeper than {MAX_DEPTH} hops"
            )));
        }
        if !seen.insert(hop.clone()) {
            continue;
        }
        for next in next_hops(tx, &hop, address).await? {
            let mut p = path.clone();
            p.push(next.clone());
            stack.push((next, p));
        }
    }
    Ok(())
}

async fn alias_domain_row(tx: &mut Tx, addr: &AliasAddress) -> Result<DomainRow> {
    let domain = require_domain(tx, addr.domain()).await?;
    refuse_alias_domain(tx, &domain.domain, "alias").await?;
    Ok(domain)
}

/// Creates an alias (or a catch-all `@domain`) forwarding to `goto`.
pub async fn add_alias(
    tx: &mut Tx,
    addr: &AliasAddress,
    goto: &[Address],
    active: bool,
) -> Result<AliasRow> {
    let address = addr.to_string();
    tx.lock_domain(addr.domain().as_str()).await?;
    let domain = alias_domain_row(tx, addr).await?;
    if tx.mailbox(&address).await?.is_some() {
        return Err(Error::refused(format!(
            "{address} is a mailbox; to forward its mail use: mailctl alias update {address} {address} DEST..."
        )));
    }
    if tx.alias(&address).await?.is_some() {
        return Err(Error::exists("alias", &address));
    }
    let usage = tx.domain_usage(&domain.domain).await?;
    check_count_limit(&domain.domain, "aliases", domain.aliases, usage.aliases)?;
    let goto = goto_string(goto)?;
    refuse_loop(tx, &address, &goto).await?;
    let now = crate::time::now_db();
    let row = AliasRow {
        address,
        goto,
        domain: domain.domain,
        created: now.clone(),
        modified: now,
        active,
    };
    tx.insert_alias(&row).await?;
    Ok(row)
}

/// Changes an alias's destinations and/or active flag. A mailbox's self-alias may be updated too: that is how
/// postfixadmin forwards a mailbox's mail (keep the mailbox itself in the list to keep a copy).
pub async fn update_alias(
    tx: &mut Tx,
    addr: &AliasAddress,
    goto: Option<&[Address]>,
    active: Option<bool>,
) -> Result<AliasRow> {
    let address = addr.to_string();
    tx.lock_domain(addr.domain().as_str()).await?;
    let mut row = tx
        .alias(&address)
        .await?
        .ok_or_else(|| Error::not_found("alias", &address))?;
    if let Some(goto) = goto {
        let goto = goto_string(goto)?;
        refuse_loop(tx, &address, &goto).await?;
        row.goto = goto;
    }
    if let Some(a) = active {
        row.active = a;
    }
    row.modified = crate::time::now_db();
    tx.update_alias(&row).await?;
    Ok(row)
}

/// Creates the alias, or, when `addr` is a mailbox, sets its self-alias destinations (used by import).
pub async fn set_alias(
    tx: &mut Tx,
    addr: &AliasAddress,
    goto: &[Address],
    active: bool,
) -> Result<AliasRow> {
    if tx.mailbox(&addr.to_string()).await?.is_some() {
        update_alias(tx, addr, Some(goto), Some(active)).await
    } else {
        add_alias(tx, addr, goto, active).await
    }
}

/// Deletes an alias; a mailbox's own alias row goes only with the mailbox.
pub async fn delete_alias(tx: &mut Tx, addr: &AliasAddress) -> Result<()> {
    let address = addr.to_string();
    if tx.alias(&address).await?.is_none() {
        return Err(Error::not_found("alias", &address));
    }
    if tx.mailbox(&address).await?.is_some() {
        return Err(Error::refused(format!(
            "{address} is a mailbox's own alias row; delete the mailbox instead"
        )));
    }
    tx.delete_alias(&address).await
}

/// Makes every address of `alias` mean the same address in `target`.
///
/// As in postfixadmin, the alias domain is also a row in `domain` (Postfix must accept mail for it): an
/// existing empty domain is reused, otherwise one is created. Returns the mapping and whether a domain row was
/// created.
pub async fn add_alias_domain(
    tx: &mut Tx,
    alias: &DomainName,
    target: &DomainName,
    active: bool,
) -> Result<(AliasDomainRow, bool)> {
    if alias == target {
        return Err(Error::usage(format!(
            "{alias} cannot be an alias domain of itself"
        )));
    }
    let target_row = require_domain(tx, target).await?;
    if let Some(ad) = tx.alias_domain(target.as_str()).await? {
        return Err(Error::refused(format!(
            "{target} is itself an alias domain of {}; point {alias} at {} directly",
            ad.target_domain, ad.target_domain
        )));
    }
    if tx.alias_domain(alias.as_str()).await?.is_some() {
        return Err(Error::exists("alias domain", alias));
    }
    let created_domain = match tx.domain(alias.as_str()).await? {
        Some(_) => {
            let usage = tx.domain_usage(alias.as_str()).await?;
            if usage.mailboxes + usage.aliases > 0 || usage.alias_domains > 0 {
                return Err(Error::refused(format!(
                    "domain {alias} has mailboxes, aliases or alias domains of its own; it cannot become an alias domain"
                )));
            }
            false
        }
        None => {
            let settings = super::DomainSettings {
                description: Some(format!("alias domain of {target}")),
                active: Some(active && target_row.active),
                ..Default::default()
            };
            super::add_domain(tx, alias, &settings).await?;
            true
        }
    };
    let now = crate::time::now_db();
    let row = AliasDomainRow {
        alias_domain: alias.to_string(),
        target_domain: target.to_string(),
        created: now.clone(),
        modified: now,
        active,
    };
    tx.insert_alias_domain(&row).await?;
    // The mapping adds hops (x@alias -> x@target): any alias that forwards into the alias domain may now loop.
    let alias_suffix = format!("@{alias}");
    for a in tx.aliases(None, true).await? {
        if a.targets().iter().any(|t| t.ends_with(&alias_suffix)) {
            refuse_loop(tx, &a.address, &a.goto).await?;
        }
    }
    Ok((row, created_domain))
}

/// Removes an alias-domain mapping, and the alias domain's own `domain` row when it holds nothing else.
/// Returns whether the domain row was removed too.
pub async fn delete_alias_domain(tx: &mut Tx, alias: &DomainName) -> Result<bool> {
    if tx.alias_domain(alias.as_str()).await?.is_none() {
        return Err(Error::not_found("alias domain", alias));
    }
    tx.delete_alias_domain(alias.as_str()).await?;
    let usage = tx.domain_usage(alias.as_str()).await?;
    let empty = usage.mailboxes + usage.aliases + usage.alias_domains == 0;
    if empty && tx.domain(alias.as_str()).await?.is_some() {
        tx.delete_domain_cascade(alias.as_str()).await?;
        return Ok(true);
    }
    Ok(false)
}
