//! `mailctl_dkim_keys`: DKIM key pairs per domain and selector, with their rotation state.

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// A stored DKIM key. `state` is `pending` (published, not yet signing), `active` (the signing key; exactly one
/// per domain), `retiring` (no longer signing, still published until retired) or `retired` (private key erased;
/// the row only remembers that the selector was used).
#[derive(Clone, PartialEq, FromRow)]
pub struct DkimKeyRow {
    /// Domain (lower-case ASCII).
    pub domain: String,
    /// Selector.
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// Key size in bits.
    pub bits: i64,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// Base64 public key as published in `p=`.
    pub public_key: String,
    /// `pending`, `active` or `retiring`.
    pub state: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
}

impl std::fmt::Debug for DkimKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key by accident.
        f.debug_struct("DkimKeyRow")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

macro_rules! select {
    () => {
        "SELECT domain, selector, algorithm, bits, private_key, public_key, state, \
         CAST(created AS CHAR) AS created, CAST(modified AS CHAR) AS modified FROM mailctl_dkim_keys"
    };
}

impl Tx {
    /// One key.
    pub async fn dkim_key(&mut self, domain: &str, selector: &str) -> Result<Option<DkimKeyRow>> {
        let sql = concat!(select!(), " WHERE domain = ? AND selector = ?");
        on_conn!(self, |c| sqlx::query_as::<_, DkimKeyRow>(sql)
            .bind(domain)
            .bind(selector)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading DKIM key {selector} of {domain}"), e))
    }

    /// Keys (not retired) of one domain or of all, ordered by domain and creation.
    pub async fn dkim_keys(&mut self, domain: Option<&str>) -> Result<Vec<DkimKeyRow>> {
        let sql = match domain {
            Some(_) => concat!(
                select!(),
                " WHERE domain = ? AND state <> 'retired' ORDER BY domain, created, selector"
            ),
            None => concat!(
                select!(),
                " WHERE state <> 'retired' ORDER BY domain, created, selector"
            ),
        };
        on_conn!(self, |c| {
            let mut q = sqlx::query_as::<_, DkimKeyRow>(sql);
            if let Some(d) = domain {
                q = q.bind(d);
            }
            q.fetch_all(&mut *c).await
        })
        .map_err(|e| Error::db("listing DKIM keys", e))
    }

    /// Inserts a key.
    pub async fn insert_dkim_key(&mut self, k: &DkimKeyRow) -> Result<()> {
        let sql = "INSERT INTO mailctl_dkim_keys (domain, selector, algorithm, bits, private_key, public_key, \
                   state, created, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&k.domain)
            .bind(&k.selector)
            .bind(&k.algorithm)
            .bind(k.bits)
            .bind(&k.private_key)
            .bind(&k.public_key)
            .bind(&k.state)
            .bind(&k.created)
            .bind(&k.modified)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| {
            Error::db(
                format!("storing DKIM key {} of {}", k.selector, k.domain),
                e,
            )
        })?;
        Ok(())
    }

    /// Sets a key's state.
    pub async fn set_dkim_state(
        &mut self,
        domain: &str,
        selector: &str,
        state: &str,
    ) -> Result<()> {
        let sql = "UPDATE mailctl_dkim_keys SET state = ?, modified = ? WHERE domain = ? AND selector = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(state)
            .bind(crate::time::now_db())
            .bind(domain)
            .bind(selector)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("updating DKIM key {selector} of {domain}"), e))?;
        Ok(())
    }

    /// Every selector the domain has ever used, retired ones included.
    pub async fn dkim_selectors_ever(&mut self, domain: &str) -> Result<Vec<String>> {
        let sql = "SELECT selector FROM mailctl_dkim_keys WHERE domain = ?";
        let rows: Vec<(String,)> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(domain)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("listing DKIM selectors of {domain}"), e))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Retires a key: erases its private key and marks it `retired`, keeping the selector taken.
    pub async fn retire_dkim_key(&mut self, domain: &str, selector: &str) -> Result<()> {
        let sql = "UPDATE mailctl_dkim_keys SET state = 'retired', private_key = '', modified = ? \
                   WHERE domain = ? AND selector = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(crate::time::now_db())
            .bind(domain)
            .bind(selector)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("retiring DKIM key {selector} of {domain}"), e))?;
        Ok(())
    }
}
