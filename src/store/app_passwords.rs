//! postfixadmin's app passwords (`mailbox_app_password`) and its TOTP rule (`mailbox.totp_secret`,
//! `totp_exception_address`): a mailbox with a TOTP secret logs in to mail with app passwords only, except
//! from the exception addresses (rows for the mailbox, for its domain, or for everyone).

use sqlx::FromRow;

use super::{Tx, TxInner, on_conn};
use crate::error::{Error, Result};

/// A `mailbox_app_password` row, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct AppPasswordRow {
    /// postfixadmin's id (what `revoke` takes).
    pub id: i64,
    /// The mailbox.
    pub username: String,
    /// What it is for ("phone").
    pub description: String,
}

/// A `totp_exception_address` row.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct TotpExceptionRow {
    /// postfixadmin's id.
    pub id: i64,
    /// The client IP address that may still use the main password.
    pub ip: String,
    /// For whom: a mailbox, a domain, or everyone (`None`).
    pub username: Option<String>,
    /// Why.
    pub description: String,
}

impl Tx {
    /// Stores an app password hash; one with the same description replaces the old one (as postfixadmin
    /// does). Returns the new id and whether it replaced one.
    pub async fn add_app_password(
        &mut self,
        username: &str,
        description: &str,
        hash: &str,
    ) -> Result<(i64, bool)> {
        let err = |e| Error::db(format!("storing an app password of {username}"), e);
        let replaced = on_conn!(self, |c| sqlx::query(
            "DELETE FROM mailbox_app_password WHERE username = ? AND description = ?"
        )
        .bind(username)
        .bind(description)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err)?;
        let sql = "INSERT INTO mailbox_app_password (username, description, password_hash) VALUES (?, ?, ?)";
        let id = self
            .insert_id(sql, Some(username), Some(description), hash)
            .await
            .map_err(err)?;
        Ok((id, replaced > 0))
    }

    /// A mailbox's app passwords, oldest first.
    pub async fn app_passwords(&mut self, username: &str) -> Result<Vec<AppPasswordRow>> {
        let sql = "SELECT id, COALESCE(username, '') AS username, COALESCE(description, '') AS description \
                   FROM mailbox_app_password WHERE username = ? ORDER BY id";
        on_conn!(self, |c| sqlx::query_as::<_, AppPasswordRow>(sql)
            .bind(username)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading the app passwords of {username}"), e))
    }

    /// The hashes of a mailbox's app passwords (for AUTH).
    pub async fn app_password_hashes(&mut self, username: &str) -> Result<Vec<String>> {
        let sql = "SELECT password_hash FROM mailbox_app_password WHERE username = ? \
                   AND password_hash IS NOT NULL ORDER BY id";
        let rows: Vec<(String,)> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(username)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading the app passwords of {username}"), e))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Deletes app password `id`, returning what it was.
    pub async fn delete_app_password(&mut self, id: i64) -> Result<Option<AppPasswordRow>> {
        let err = |e| Error::db(format!("revoking app password {id}"), e);
        let sql = "SELECT id, COALESCE(username, '') AS username, COALESCE(description, '') AS description \
                   FROM mailbox_app_password WHERE id = ?";
        let row = on_conn!(self, |c| sqlx::query_as::<_, AppPasswordRow>(sql)
            .bind(id)
            .fetch_optional(&mut *c)
            .await)
        .map_err(err)?;
        if row.is_some() {
            on_conn!(self, |c| sqlx::query(
                "DELETE FROM mailbox_app_password WHERE id = ?"
            )
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(err)?;
        }
        Ok(row)
    }

    /// The mailbox's TOTP secret, when it has one (postfixadmin stores it base32, empty meaning none).
    pub async fn totp_secret(&mut self, username: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT totp_secret FROM mailbox WHERE username = ?"
        )
        .bind(username)
        .fetch_optional(&mut *c)
        .await)
        .map_err(|e| Error::db(format!("reading the TOTP secret of {username}"), e))?;
        Ok(row.and_then(|r| r.0).filter(|s| !s.trim().is_empty()))
    }

    /// Sets or clears (`None`) a mailbox's TOTP secret; false when there is no such mailbox.
    pub async fn set_totp_secret(&mut self, username: &str, secret: Option<&str>) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE mailbox SET totp_secret = ?, modified = ? WHERE username = ?"
        )
        .bind(secret)
        .bind(crate::time::now_db())
        .bind(username)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("setting the TOTP secret of {username}"), e))?;
        Ok(n > 0)
    }

    /// A TOTP exception lets `ip` use the main password of `username` (a row for the mailbox, its domain,
    /// or everyone), as postfixadmin matches them.
    pub async fn totp_exempt(&mut self, username: &str, ip: &str) -> Result<bool> {
        let domain = username.rsplit_once('@').map_or("", |(_, d)| d);
        let (n,): (i64,) = on_conn!(self, |c| sqlx::query_as(
            "SELECT COUNT(*) FROM totp_exception_address WHERE ip = ? \
             AND (username = ? OR username = ? OR username IS NULL)"
        )
        .bind(ip)
        .bind(username)
        .bind(domain)
        .fetch_one(&mut *c)
        .await)
        .map_err(|e| Error::db("reading the TOTP exception addresses", e))?;
        Ok(n > 0)
    }

    /// Adds a TOTP exception; returns its id, or `None` when the same (ip, for whom) exists already.
    pub async fn add_totp_exception(
        &mut self,
        ip: &str,
        username: Option<&str>,
        description: &str,
    ) -> Result<Option<i64>> {
        let err = |e| Error::db("storing a TOTP exception address", e);
        let existing = self.totp_exceptions().await?;
        if existing
            .iter()
            .any(|e| e.ip == ip && e.username.as_deref() == username)
        {
            return Ok(None);
        }
        let sql = "INSERT INTO totp_exception_address (ip, username, description) VALUES (?, ?, ?)";
        let id = self
            .insert_id(sql, Some(ip), username, description)
            .await
            .map_err(err)?;
        Ok(Some(id))
    }

    /// Runs an INSERT of three values into a table with an auto-increment id; returns the new id.
    async fn insert_id(
        &mut self,
        sql: &'static str,
        a: Option<&str>,
        b: Option<&str>,
        c: &str,
    ) -> std::result::Result<i64, sqlx::Error> {
        match &mut self.inner {
            TxInner::Sqlite(t) => sqlx::query(sql)
                .bind(a)
                .bind(b)
                .bind(c)
                .execute(&mut **t)
                .await
                .map(|r| r.last_insert_rowid()),
            TxInner::Mysql(t) => sqlx::query(sql)
                .bind(a)
                .bind(b)
                .bind(c)
                .execute(&mut **t)
                .await
                .map(|r| i64::try_from(r.last_insert_id()).unwrap_or(i64::MAX)),
        }
    }

    /// Every TOTP exception, by id.
    pub async fn totp_exceptions(&mut self) -> Result<Vec<TotpExceptionRow>> {
        let sql = "SELECT id, ip, username, COALESCE(description, '') AS description \
                   FROM totp_exception_address ORDER BY id";
        on_conn!(self, |c| sqlx::query_as::<_, TotpExceptionRow>(sql)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the TOTP exception addresses", e))
    }

    /// Deletes TOTP exception `id`; false when there is none.
    pub async fn delete_totp_exception(&mut self, id: i64) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "DELETE FROM totp_exception_address WHERE id = ?"
        )
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("deleting TOTP exception {id}"), e))?;
        Ok(n > 0)
    }
}
