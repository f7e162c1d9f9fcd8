//! `mailctl_srs_secrets`: the secrets of the Sender Rewriting Scheme (`mailctl srs`, [`crate::srs`]).

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// One secret.
#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct SrsSecretRow {
    /// Increasing with every new secret.
    pub id: i64,
    /// The secret (its bytes are the HMAC key): never printed.
    pub secret: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
}

impl std::fmt::Debug for SrsSecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret by accident.
        f.debug_struct("SrsSecretRow")
            .field("id", &self.id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Tx {
    /// Every secret, newest first.
    pub async fn srs_secrets(&mut self) -> Result<Vec<SrsSecretRow>> {
        let sql = "SELECT id, secret, CAST(created AS CHAR) AS created FROM mailctl_srs_secrets \
                   ORDER BY id DESC";
        on_conn!(self, |c| sqlx::query_as::<_, SrsSecretRow>(sql)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the SRS secrets", e))
    }

    /// Adds a secret created at `created`; it signs from now on.
    pub async fn add_srs_secret(&mut self, secret: &str, created: &str) -> Result<()> {
        let sql = "INSERT INTO mailctl_srs_secrets (secret, created) VALUES (?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(secret)
            .bind(created)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db("storing an SRS secret", e))?;
        Ok(())
    }

    /// Removes the secret `id`.
    pub async fn delete_srs_secret(&mut self, id: i64) -> Result<()> {
        let sql = "DELETE FROM mailctl_srs_secrets WHERE id = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db("removing an SRS secret", e))?;
        Ok(())
    }
}
