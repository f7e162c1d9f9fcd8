//! DKIM key rotation rules: exactly one active (signing) key per domain; new keys wait as `pending` until DNS
//! serves them; the replaced key stays published as `retiring` until it is retired. A retired key's private
//! key is erased but its row stays, so its selector is never handed out again (receivers may cache it).

use crate::dkim::KeyPair;
use crate::error::{Error, Result};
use crate::model::{DomainName, Selector};
use crate::store::{DkimKeyRow, Tx};

/// Key states as stored.
pub mod state {
    /// Published (or about to be), not signing yet.
    pub const PENDING: &str = "pending";
    /// The signing key.
    pub const ACTIVE: &str = "active";
    /// Replaced; still published so mail signed with it keeps verifying.
    pub const RETIRING: &str = "retiring";
    /// Gone: private key erased, selector kept so it is never reused.
    pub const RETIRED: &str = "retired";
}

/// The domain row, refused when unknown or inactive (no keys for a domain that takes no mail).
pub async fn require_active_domain(tx: &mut Tx, domain: &DomainName) -> Result<()> {
    let row = super::require_domain(tx, domain).await?;
    if !row.active {
        return Err(Error::refused(format!("domain {domain} is inactive")));
    }
    Ok(())
}

/// A selector the domain never used: `mYYYYMM`, then `mYYYYMMb`, `mYYYYMMc`, ... within one month.
pub async fn fresh_selector(tx: &mut Tx, domain: &DomainName) -> Result<Selector> {
    let base = format!("m{}", chrono::Utc::now().format("%Y%m"));
    let taken = tx.dkim_selectors_ever(domain.as_str()).await?;
    let candidates = std::iter::once(base.clone()).chain(('b'..='z').map(|c| format!("{base}{c}")));
    for candidate in candidates {
        if !taken.contains(&candidate) {
            return candidate.parse().map_err(Error::Usage);
        }
    }
    Err(Error::refused(format!(
        "domain {domain} used every selector of this month; give one with --selector"
    )))
}

/// Refuses a selector the domain has, or had.
pub async fn require_unused(tx: &mut Tx, domain: &DomainName, selector: &Selector) -> Result<()> {
    match tx.dkim_key(domain.as_str(), selector.as_str()).await? {
        Some(k) if k.state == state::RETIRED => Err(Error::refused(format!(
            "DKIM selector {selector} of {domain} was used by a retired key; choose a new one"
        ))),
        Some(_) => Err(Error::exists(
            "DKIM selector",
            format!("{selector} of {domain}"),
        )),
        None => Ok(()),
    }
}

/// The domain's active key, if any.
pub async fn active_key(tx: &mut Tx, domain: &DomainName) -> Result<Option<DkimKeyRow>> {
    Ok(tx
        .dkim_keys(Some(domain.as_str()))
        .await?
        .into_iter()
        .find(|k| k.state == state::ACTIVE))
}

/// Signs `message` for `domain` with the stored key `key` (RSA is slow: call from a blocking task): the signed
/// message and how it was signed (`d=example.org s=m202612 a=ed25519-sha256`, for `queue show`), or why not.
pub fn sign_with(
    key: &DkimKeyRow,
    domain: &DomainName,
    message: &[u8],
) -> std::result::Result<(Vec<u8>, String), String> {
    let selector: Selector = key.selector.parse()?;
    let algorithm =
        crate::dkim::KeyAlgorithm::from_signing_name(&key.algorithm).ok_or_else(|| {
            format!(
                "the stored key has an unknown algorithm '{}'",
                key.algorithm
            )
        })?;
    let signed =
        crate::dkim::sign::sign_pem(message, domain, &selector, &key.private_key, algorithm)?;
    let note = format!("d={domain} s={selector} a={}", algorithm.signing_name());
    Ok((signed, note))
}

/// A live key by selector, or the active key when no selector is given.
pub async fn find_key(
    tx: &mut Tx,
    domain: &DomainName,
    selector: Option<&Selector>,
) -> Result<DkimKeyRow> {
    match selector {
        Some(s) => tx
            .dkim_key(domain.as_str(), s.as_str())
            .await?
            .filter(|k| k.state != state::RETIRED)
            .ok_or_else(|| Error::not_found("DKIM key", format!("{s} of {domain}"))),
        None => active_key(tx, domain).await?.ok_or_else(|| {
            Error::refused(format!(
                "domain {domain} has no active DKIM key; run: mailctl dkim generate {domain}"
            ))
        }),
    }
}

/// Stores a new key under `selector`, or under a fresh one chosen while the domain is locked (so concurrent runs
/// never collide): active when the domain has no active key (its first), else pending. `pending_only` forces
/// pending (rotation).
pub async fn add_key(
    tx: &mut Tx,
    domain: &DomainName,
    selector: Option<&Selector>,
    pair: &KeyPair,
    pending_only: bool,
) -> Result<DkimKeyRow> {
    tx.lock_domain(domain.as_str()).await?;
    require_active_domain(tx, domain).await?;
    let selector = match selector {
        Some(s) => {
            require_unused(tx, domain, s).await?;
            s.clone()
        }
        None => fresh_selector(tx, domain).await?,
    };
    let has_active = active_key(tx, domain).await?.is_some();
    let now = crate::time::now_db();
    let row = DkimKeyRow {
        domain: domain.to_string(),
        selector: selector.to_string(),
        algorithm: pair.algorithm.signing_name().to_string(),
        bits: i64::from(pair.bits),
        private_key: pair.private_pem.clone(),
        public_key: pair.public_b64.clone(),
        state: if pending_only || has_active {
            state::PENDING
        } else {
            state::ACTIVE
        }
        .to_string(),
        created: now.clone(),
        modified: now,
    };
    tx.insert_dkim_key(&row).await?;
    Ok(row)
}

/// Makes `selector` the signing key; the previous active key becomes retiring. Returns the previous selector.
/// Checking that DNS serves the key is the caller's job (it needs the resolver, and `--force` skips it).
pub async fn activate(
    tx: &mut Tx,
    domain: &DomainName,
    selector: &Selector,
) -> Result<Option<String>> {
    tx.lock_domain(domain.as_str()).await?;
    require_active_domain(tx, domain).await?;
    let key = find_key(tx, domain, Some(selector)).await?;
    if key.state == state::ACTIVE {
        return Err(Error::refused(format!(
            "DKIM key {selector} of {domain} is already active"
        )));
    }
    let previous = active_key(tx, domain).await?;
    // Demote first: the database allows one active key per domain at any instant.
    if let Some(prev) = &previous {
        tx.set_dkim_state(domain.as_str(), &prev.selector, state::RETIRING)
            .await?;
    }
    tx.set_dkim_state(domain.as_str(), selector.as_str(), state::ACTIVE)
        .await?;
    Ok(previous.map(|p| p.selector))
}

/// Retires a pending or retiring key (its private key is erased, its selector stays taken); the active key
/// cannot be retired: activate its successor first.
pub async fn retire(tx: &mut Tx, domain: &DomainName, selector: &Selector) -> Result<DkimKeyRow> {
    tx.lock_domain(domain.as_str()).await?;
    let key = find_key(tx, domain, Some(selector)).await?;
    if key.state == state::ACTIVE {
        return Err(Error::refused(format!(
            "DKIM key {selector} of {domain} is the active signing key; activate another key first"
        )));
    }
    tx.retire_dkim_key(domain.as_str(), selector.as_str())
        .await?;
    Ok(key)
}
