//! The `alias` and `alias_domain` tables (postfixadmin).
//!
//! `alias.goto` is a comma-separated list of destinations; a catch-all has the address `@domain`; every mailbox
//! has a self-alias row (address = goto = the mailbox) so that a catch-all never swallows a real mailbox in
//! Postfix's `virtual_alias_maps`.

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// An `alias` row.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct AliasRow {
    /// `local@domain` or `@domain` (catch-all).
    pub address: String,
    /// Comma-separated destinations.
    pub goto: String,
    /// The alias's domain.
    pub domain: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
    /// Mail is forwarded.
    pub active: bool,
}

impl AliasRow {
    /// The destinations, split and trimmed.
    pub fn targets(&self) -> Vec<String> {
        self.goto
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// An `alias_domain` row: every address `x@alias_domain` means `x@target_domain`.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct AliasDomainRow {
    /// The domain whose mail is redirected.
    pub alias_domain: String,
    /// The domain that holds the mailboxes.
    pub target_domain: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
    /// Mapping in effect.
    pub active: bool,
}

macro_rules! select_alias {
    () => {
        "SELECT address, goto, domain, CAST(created AS CHAR) AS created, \
     CAST(modified AS CHAR) AS modified, active FROM alias"
    };
}
macro_rules! select_alias_domain {
    () => {
        "SELECT alias_domain, target_domain, CAST(created AS CHAR) AS created, \
     CAST(modified AS CHAR) AS modified, active FROM alias_domain"
    };
}

impl Tx {
    /// One alias row by address (including mailboxes' self-alias rows).
    pub async fn alias(&mut self, address: &str) -> Result<Option<AliasRow>> {
        let sql = concat!(select_alias!(), " WHERE address = ?");
        on_conn!(self, |c| sqlx::query_as::<_, AliasRow>(sql)
            .bind(address)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading alias {address}"), e))
    }

    /// Alias rows, all or of one domain, sorted; `include_self` keeps mailboxes' plain self-alias rows
    /// (goto exactly the mailbox itself), which are bookkeeping rather than aliases a person created.
    pub async fn aliases(
        &mut self,
        domain: Option<&str>,
        include_self: bool,
    ) -> Result<Vec<AliasRow>> {
        macro_rules! no_self {
            () => {
                " AND NOT (goto = address AND address IN (SELECT username FROM mailbox))"
            };
        }
        let sql = match (domain.is_some(), include_self) {
            (true, true) => concat!(
                select_alias!(),
                " WHERE domain = ? ORDER BY domain, address"
            ),
            (true, false) => concat!(
                select_alias!(),
                " WHERE domain = ?",
                no_self!(),
                " ORDER BY domain, address"
            ),
            (false, true) => concat!(select_alias!(), " ORDER BY domain, address"),
            (false, false) => concat!(
                select_alias!(),
                " WHERE 1 = 1",
                no_self!(),
                " ORDER BY domain, address"
            ),
        };
        on_conn!(self, |c| {
            let mut q = sqlx::query_as::<_, AliasRow>(sql);
            if let Some(d) = domain {
                q = q.bind(d);
            }
            q.fetch_all(&mut *c).await
        })
        .map_err(|e| Error::db("listing aliases", e))
    }

    /// Inserts an alias row.
    pub async fn insert_alias(&mut self, a: &AliasRow) -> Result<()> {
        self.insert_aliases(std::slice::from_ref(a)).await
    }

    /// Inserts alias rows, up to [`super::MAX_ROWS`] per statement.
    pub async fn insert_aliases(&mut self, rows: &[AliasRow]) -> Result<()> {
        for chunk in rows.chunks(super::MAX_ROWS) {
            let sql = super::insert_values(
                "INSERT INTO alias (address, goto, domain, created, modified, active) VALUES ",
                6,
                chunk.len(),
            );
            on_conn!(self, |c| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for a in chunk {
                    q = q
                        .bind(&a.address)
                        .bind(&a.goto)
                        .bind(&a.domain)
                        .bind(&a.created)
                        .bind(&a.modified)
                        .bind(a.active);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| {
                Error::db(
                    super::adding("alias", "aliases", chunk.iter().map(|a| &a.address)),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Which of `addresses` (lower-case) are alias rows already, lower-cased.
    pub async fn existing_aliases(
        &mut self,
        addresses: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        self.existing(
            "SELECT address FROM alias WHERE address IN ",
            addresses,
            "aliases",
        )
        .await
    }

    /// Writes goto, modified and active of an existing alias row.
    pub async fn update_alias(&mut self, a: &AliasRow) -> Result<()> {
        let sql = "UPDATE alias SET goto = ?, modified = ?, active = ? WHERE address = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&a.goto)
            .bind(&a.modified)
            .bind(a.active)
            .bind(&a.address)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("updating alias {}", a.address), e))?;
        Ok(())
    }

    /// Deletes an alias row.
    pub async fn delete_alias(&mut self, address: &str) -> Result<()> {
        on_conn!(self, |c| sqlx::query("DELETE FROM alias WHERE address = ?")
            .bind(address)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("deleting alias {address}"), e))?;
        Ok(())
    }

    /// The alias-domain mapping of `alias_domain`, if it is one.
    pub async fn alias_domain(&mut self, alias_domain: &str) -> Result<Option<AliasDomainRow>> {
        let sql = concat!(select_alias_domain!(), " WHERE alias_domain = ?");
        on_conn!(self, |c| sqlx::query_as::<_, AliasDomainRow>(sql)
            .bind(alias_domain)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading alias domain {alias_domain}"), e))
    }

    /// All alias-domain mappings, sorted.
    pub async fn alias_domains(&mut self) -> Result<Vec<AliasDomainRow>> {
        let sql = concat!(select_alias_domain!(), " ORDER BY alias_domain");
        on_conn!(self, |c| sqlx::query_as::<_, AliasDomainRow>(sql)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("listing alias domains", e))
    }

    /// Inserts an alias-domain mapping.
    pub async fn insert_alias_domain(&mut self, a: &AliasDomainRow) -> Result<()> {
        let sql = "INSERT INTO alias_domain (alias_domain, target_domain, created, modified, active) \
                   VALUES (?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&a.alias_domain)
            .bind(&a.target_domain)
            .bind(&a.created)
            .bind(&a.modified)
            .bind(a.active)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("adding alias domain {}", a.alias_domain), e))?;
        Ok(())
    }

    /// Deletes an alias-domain mapping.
    pub async fn delete_alias_domain(&mut self, alias_domain: &str) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "DELETE FROM alias_domain WHERE alias_domain = ?"
        )
        .bind(alias_domain)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("deleting alias domain {alias_domain}"), e))?;
        Ok(())
    }
}
