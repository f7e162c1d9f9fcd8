//! The `domain` table (postfixadmin): one row per hosted domain, with its limits.

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// A `domain` row. Limits follow postfixadmin: `0` unlimited, `-1` none allowed; `maxquota` and `quota` in MB.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct DomainRow {
    /// Lower-case ASCII name.
    pub domain: String,
    /// Free text.
    pub description: String,
    /// Max aliases.
    pub aliases: i64,
    /// Max mailboxes.
    pub mailboxes: i64,
    /// Max quota per mailbox, MB.
    pub maxquota: i64,
    /// Total quota of all mailboxes, MB.
    pub quota: i64,
    /// Postfix transport.
    pub transport: String,
    /// We are only a backup MX for this domain.
    pub backupmx: bool,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
    /// Mail is accepted for the domain.
    pub active: bool,
}

/// What a domain holds, for limits and for `delete`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DomainUsage {
    /// Mailboxes in the domain.
    pub mailboxes: i64,
    /// Aliases in the domain, not counting mailboxes' own alias rows.
    pub aliases: i64,
    /// Sum of mailbox quotas, bytes.
    pub quota_bytes: i64,
    /// Alias domains that point at this domain, or this domain's own alias-domain mapping.
    pub alias_domains: i64,
}

macro_rules! select {
    () => {
        "SELECT domain, description, aliases, mailboxes, maxquota, quota, \
     COALESCE(transport, '') AS transport, backupmx, CAST(created AS CHAR) AS created, \
     CAST(modified AS CHAR) AS modified, active FROM domain"
    };
}

impl Tx {
    /// One domain by name (never the pseudo-domain `ALL`).
    pub async fn domain(&mut self, name: &str) -> Result<Option<DomainRow>> {
        let sql = concat!(select!(), " WHERE domain = ? AND domain <> 'ALL'");
        on_conn!(self, |c| sqlx::query_as::<_, DomainRow>(sql)
            .bind(name)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading domain {name}"), e))
    }

    /// All domains, sorted by name, without the pseudo-domain `ALL`.
    pub async fn domains(&mut self) -> Result<Vec<DomainRow>> {
        let sql = concat!(select!(), " WHERE domain <> 'ALL' ORDER BY domain");
        on_conn!(self, |c| sqlx::query_as::<_, DomainRow>(sql)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("listing domains", e))
    }

    /// Takes the row's write lock until the transaction ends, so limit checks and inserts cannot interleave
    /// with another process. Returns false when the domain does not exist.
    pub async fn lock_domain(&mut self, name: &str) -> Result<bool> {
        let sql = "UPDATE domain SET modified = modified WHERE domain = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(name)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("locking domain {name}"), e))?;
        // MySQL counts a no-op update as 0 changed rows, so existence is read back rather than inferred.
        Ok(self.domain(name).await?.is_some())
    }

    /// Inserts a new domain row.
    pub async fn insert_domain(&mut self, d: &DomainRow) -> Result<()> {
        let sql = "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota, transport, \
                   backupmx, created, modified, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&d.domain)
            .bind(&d.description)
            .bind(d.aliases)
            .bind(d.mailboxes)
            .bind(d.maxquota)
            .bind(d.quota)
            .bind(&d.transport)
            .bind(d.backupmx)
            .bind(&d.created)
            .bind(&d.modified)
            .bind(d.active)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("adding domain {}", d.domain), e))?;
        Ok(())
    }

    /// Writes every mutable column of an existing domain row.
    pub async fn update_domain(&mut self, d: &DomainRow) -> Result<()> {
        let sql = "UPDATE domain SET description = ?, aliases = ?, mailboxes = ?, maxquota = ?, quota = ?, \
                   transport = ?, backupmx = ?, modified = ?, active = ? WHERE domain = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&d.description)
            .bind(d.aliases)
            .bind(d.mailboxes)
            .bind(d.maxquota)
            .bind(d.quota)
            .bind(&d.transport)
            .bind(d.backupmx)
            .bind(&d.modified)
            .bind(d.active)
            .bind(&d.domain)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("updating domain {}", d.domain), e))?;
        Ok(())
    }

    /// Counts what the domain holds.
    pub async fn domain_usage(&mut self, name: &str) -> Result<DomainUsage> {
        let mailboxes_sql = "SELECT COUNT(*), CAST(COALESCE(SUM(quota), 0) AS SIGNED) FROM mailbox WHERE domain = ?";
        let aliases_sql = "SELECT COUNT(*) FROM alias WHERE domain = ? \
                           AND address NOT IN (SELECT username FROM mailbox WHERE domain = ?)";
        let alias_domains_sql =
            "SELECT COUNT(*) FROM alias_domain WHERE target_domain = ? OR alias_domain = ?";
        let err = |e| Error::db(format!("counting the contents of domain {name}"), e);
        let (mailboxes, quota_bytes): (i64, i64) =
            on_conn!(self, |c| sqlx::query_as(mailboxes_sql)
                .bind(name)
                .fetch_one(&mut *c)
                .await)
            .map_err(err)?;
        let (aliases,): (i64,) = on_conn!(self, |c| sqlx::query_as(aliases_sql)
            .bind(name)
            .bind(name)
            .fetch_one(&mut *c)
            .await)
        .map_err(err)?;
        let (alias_domains,): (i64,) = on_conn!(self, |c| sqlx::query_as(alias_domains_sql)
            .bind(name)
            .bind(name)
            .fetch_one(&mut *c)
            .await)
        .map_err(err)?;
        Ok(DomainUsage {
            mailboxes,
            aliases,
            quota_bytes,
            alias_domains,
        })
    }

    /// Deletes a domain and everything in it: mailboxes, aliases, alias-domain mappings from and to it, its DKIM
    /// keys, its relay route, the reports received about it, the sending limits and usage, app passwords and
    /// TOTP exceptions and vacations of it and its mailboxes.
    pub async fn delete_domain_cascade(&mut self, name: &str) -> Result<()> {
        // Reports about the domain and its subdomains (a subdomain with a DMARC record of its own is reported
        // under its own name); `!` escapes LIKE's wildcards, which a domain name cannot hold anyway.
        let statements = [
            "DELETE FROM alias WHERE domain = ?",
            "DELETE FROM mailbox WHERE domain = ?",
            "DELETE FROM alias_domain WHERE alias_domain = ? OR target_domain = ?",
            "DELETE FROM mailctl_dkim_keys WHERE domain = ?",
            "DELETE FROM mailctl_relay_routes WHERE domain = ?",
            "DELETE FROM mailctl_report_dmarc WHERE report IN \
             (SELECT id FROM mailctl_reports WHERE domain = ? OR domain LIKE ? ESCAPE '!')",
            "DELETE FROM mailctl_report_tls WHERE report IN \
             (SELECT id FROM mailctl_reports WHERE domain = ? OR domain LIKE ? ESCAPE '!')",
            "DELETE FROM mailctl_reports WHERE domain = ? OR domain LIKE ? ESCAPE '!'",
            "DELETE FROM domain WHERE domain = ?",
        ];
        let below = format!(
            "%.{}",
            name.replace('!', "!!")
                .replace('%', "!%")
                .replace('_', "!_")
        );
        for sql in statements {
            let binds = sql.matches('?').count();
            let subdomains = sql.contains("LIKE");
            on_conn!(self, |c| {
                let mut q = sqlx::query(sql);
                for i in 0..binds {
                    // In the report statements every second value is the subdomain pattern.
                    q = if subdomains && i % 2 == 1 {
                        q.bind(below.as_str())
                    } else {
                        q.bind(name)
                    };
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| Error::db(format!("deleting domain {name}"), e))?;
        }
        let mailboxes = format!(
            "%@{}",
            name.replace('!', "!!")
                .replace('%', "!%")
                .replace('_', "!_")
        );
        for sql in [
            "DELETE FROM mailctl_send_limits WHERE scope = ? OR scope LIKE ? ESCAPE '!'",
            "DELETE FROM mailctl_send_usage WHERE address = ? OR address LIKE ? ESCAPE '!'",
            "DELETE FROM mailctl_send_recipients WHERE address = ? OR address LIKE ? ESCAPE '!'",
            // postfixadmin's app passwords and TOTP exceptions of the domain and its mailboxes: a mailbox made
            // again later must not inherit them.
            "DELETE FROM mailbox_app_password WHERE username = ? OR username LIKE ? ESCAPE '!'",
            "DELETE FROM totp_exception_address WHERE username = ? OR username LIKE ? ESCAPE '!'",
            "DELETE FROM vacation_notification WHERE on_vacation = ? OR on_vacation LIKE ? ESCAPE '!'",
            "DELETE FROM vacation WHERE email = ? OR email LIKE ? ESCAPE '!'",
        ] {
            on_conn!(self, |c| sqlx::query(sql)
                .bind(name)
                .bind(mailboxes.as_str())
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| Error::db(format!("deleting domain {name}"), e))?;
        }
        Ok(())
    }
}
