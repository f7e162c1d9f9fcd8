//! `mailctl_relay_routes`: the relay host each sender domain's outbound mail goes through (`mailctl relay`).

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// One sender domain's relay.
#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct RelayRouteRow {
    /// The sender domain (lower-case ASCII).
    pub domain: String,
    /// `smtp://HOST:PORT` or `smtps://HOST:PORT`.
    pub url: String,
    /// `required` or `none`.
    pub tls: String,
    /// AUTH user, if any.
    pub username: Option<String>,
    /// AUTH password, if any: never printed.
    pub password: Option<String>,
    /// The provider's SPF `include:` domain, if any.
    pub spf_include: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
}

impl std::fmt::Debug for RelayRouteRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password by accident.
        f.debug_struct("RelayRouteRow")
            .field("domain", &self.domain)
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

macro_rules! select {
    () => {
        "SELECT domain, url, tls, username, password, spf_include, CAST(created AS CHAR) AS created, \
         CAST(modified AS CHAR) AS modified FROM mailctl_relay_routes"
    };
}

impl Tx {
    /// The route of one sender domain.
    pub async fn relay_route(&mut self, domain: &str) -> Result<Option<RelayRouteRow>> {
        let sql = concat!(select!(), " WHERE domain = ?");
        on_conn!(self, |c| sqlx::query_as::<_, RelayRouteRow>(sql)
            .bind(domain)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading the relay route of {domain}"), e))
    }

    /// Every route, by domain.
    pub async fn relay_routes(&mut self) -> Result<Vec<RelayRouteRow>> {
        let sql = concat!(select!(), " ORDER BY domain");
        on_conn!(self, |c| sqlx::query_as::<_, RelayRouteRow>(sql)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading relay routes", e))
    }

    /// Sets the route of `r.domain`, replacing one it had (its creation time stays).
    pub async fn set_relay_route(&mut self, r: &RelayRouteRow) -> Result<()> {
        let update = "UPDATE mailctl_relay_routes SET url = ?, tls = ?, username = ?, password = ?, \
                      spf_include = ?, modified = ? WHERE domain = ?";
        let updated = on_conn!(self, |c| sqlx::query(update)
            .bind(&r.url)
            .bind(&r.tls)
            .bind(&r.username)
            .bind(&r.password)
            .bind(&r.spf_include)
            .bind(&r.modified)
            .bind(&r.domain)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("storing the relay route of {}", r.domain), e))?;
        if updated > 0 {
            return Ok(());
        }
        let insert = "INSERT INTO mailctl_relay_routes (domain, url, tls, username, password, spf_include, \
                      created, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(insert)
            .bind(&r.domain)
            .bind(&r.url)
            .bind(&r.tls)
            .bind(&r.username)
            .bind(&r.password)
            .bind(&r.spf_include)
            .bind(&r.created)
            .bind(&r.modified)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("storing the relay route of {}", r.domain), e))?;
        Ok(())
    }

    /// Removes the route of `domain`; false when it had none.
    pub async fn delete_relay_route(&mut self, domain: &str) -> Result<bool> {
        let sql = "DELETE FROM mailctl_relay_routes WHERE domain = ?";
        let deleted = on_conn!(self, |c| sqlx::query(sql)
            .bind(domain)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("removing the relay route of {domain}"), e))?;
        Ok(deleted > 0)
    }
}
