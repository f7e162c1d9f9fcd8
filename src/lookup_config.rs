//! The lookup configuration a stock Postfix and Dovecot need to serve the rows mailctl writes.
//!
//! The queries are postfixadmin's (the same ones its documentation gives), so an existing postfixadmin setup and a
//! mailctl-generated one behave the same: a mailbox's self-alias keeps a catch-all from swallowing it, alias
//! domains are resolved through `alias_domain`, and only active rows count. The SQL is written for the backend
//! in use (`CONCAT` on MySQL, `||` on SQLite).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{Backend, sqlite_path};

/// One generated file.
#[derive(Debug, Clone, Serialize)]
pub struct File {
    /// File name (no directory).
    pub name: String,
    /// Full content.
    pub content: String,
    /// Whether it holds database credentials (written with mode 0640).
    pub secret: bool,
}

/// How Postfix and Dovecot reach the database.
#[derive(Debug, Clone)]
pub enum Connection {
    /// MySQL/MariaDB server.
    Mysql {
        /// Host name or IP.
        host: String,
        /// TCP port.
        port: u16,
        /// User.
        user: String,
        /// Password (may be empty).
        password: String,
        /// Database name.
        dbname: String,
    },
    /// SQLite file (absolute path).
    Sqlite(PathBuf),
}

impl Connection {
    /// Derives connection parameters from the database URL.
    pub fn from_url(url: &str) -> Result<Connection> {
        let shown = crate::store::redact_url(url);
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url).ok_or_else(|| {
                Error::usage(format!("database URL '{shown}' names no SQLite file"))
            })?;
            let abs = std::path::absolute(&path).unwrap_or(path);
            return Ok(Connection::Sqlite(abs));
        }
        let u = url::Url::parse(&url.replacen("mariadb:", "mysql:", 1))
            .map_err(|e| Error::usage(format!("invalid database URL '{shown}': {e}")))?;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok(Connection::Mysql {
            host: u.host_str().unwrap_or("localhost").to_string(),
            port: u.port().unwrap_or(3306),
            user: decode(u.username()),
            password: decode(u.password().unwrap_or("")),
            dbname: u.path().trim_start_matches('/').to_string(),
        })
    }

    fn backend(&self) -> Backend {
        match self {
            Connection::Mysql { .. } => Backend::Mysql,
            Connection::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// `a || b` or `CONCAT(a, b)` for the backend.
    fn concat(&self, parts: &[&str]) -> String {
        match self.backend() {
            Backend::Mysql => format!("CONCAT({})", parts.join(", ")),
            Backend::Sqlite => parts.join(" || "),
        }
    }
}

/// The Postfix lookup tables (name, query) mailctl's schema needs.
fn postfix_queries(c: &Connection) -> Vec<(&'static str, String)> {
    let via_alias_domain = c.concat(&["'%u'", "'@'", "alias_domain.target_domain"]);
    let catchall_of_target = c.concat(&["'@'", "alias_domain.target_domain"]);
    vec![
        (
            "virtual_mailbox_domains",
            "SELECT domain FROM domain WHERE domain = '%s' AND active = '1' AND backupmx = '0'".into(),
        ),
        (
            "relay_domains",
            "SELECT domain FROM domain WHERE domain = '%s' AND active = '1' AND backupmx = '1'".into(),
        ),
        (
            "virtual_mailbox_maps",
            "SELECT maildir FROM mailbox WHERE username = '%s' AND active = '1'".into(),
        ),
        (
            "virtual_alias_domain_mailbox_maps",
            format!(
                "SELECT maildir FROM mailbox, alias_domain WHERE alias_domain.alias_domain = '%d' \
                 AND mailbox.username = {via_alias_domain} AND mailbox.active = '1' AND alias_domain.active = '1'"
            ),
        ),
        (
            "virtual_alias_maps",
            "SELECT goto FROM alias WHERE address = '%s' AND active = '1'".into(),
        ),
        (
            "virtual_alias_domain_maps",
            format!(
                "SELECT goto FROM alias, alias_domain WHERE alias_domain.alias_domain = '%d' \
                 AND alias.address = {via_alias_domain} AND alias.active = '1' AND alias_domain.active = '1'"
            ),
        ),
        (
            "virtual_alias_domain_catchall_maps",
            format!(
                "SELECT goto FROM alias, alias_domain WHERE alias_domain.alias_domain = '%d' \
                 AND alias.address = {catchall_of_target} AND alias.active = '1' AND alias_domain.active = '1'"
            ),
        ),
        (
            "sender_login_maps",
            "SELECT username FROM mailbox WHERE username = '%s' AND active = '1' AND smtp_active = '1' \
             UNION SELECT goto FROM alias WHERE address = '%s' AND active = '1'"
                .into(),
        ),
    ]
}

fn table_file(c: &Connection, query: &str) -> String {
    let head = "# Generated by mailctl (`mailctl config postfix`). Regenerate rather than edit.\n";
    match c {
        Connection::Mysql {
            host,
            port,
            user,
            password,
            dbname,
        } => format!(
            "{head}hosts = inet:{host}:{port}\nuser = {user}\npassword = {password}\ndbname = {dbname}\nquery = {query}\n"
        ),
        Connection::Sqlite(path) => format!("{head}dbpath = {}\nquery = {query}\n", path.display()),
    }
}

/// The Postfix map files plus `main.cf.mailctl`, the lines to add to main.cf; `dir` is where the maps will live.
pub fn postfix(config: &Config, dir: &Path) -> Result<Vec<File>> {
    let c = Connection::from_url(&config.database_url)?;
    let kind = match c.backend() {
        Backend::Mysql => "mysql",
        Backend::Sqlite => "sqlite",
    };
    let mut files: Vec<File> = postfix_queries(&c)
        .into_iter()
        .map(|(name, q)| File {
            name: format!("{kind}_{name}.cf"),
            content: table_file(&c, &q),
            secret: matches!(c, Connection::Mysql { .. }),
        })
        .collect();
    let map = |name: &str| format!("proxy:{kind}:{}/{kind}_{name}.cf", dir.display());
    let main_cf = format!(
        "# Add to /etc/postfix/main.cf (generated by mailctl).\n\
         virtual_mailbox_domains = {}\n\
         relay_domains = {}\n\
         virtual_mailbox_maps = {}, {}\n\
         virtual_alias_maps = {}, {}, {}\n\
         smtpd_sender_login_maps = {}\n\
         smtpd_sender_restrictions = reject_sender_login_mismatch\n\
         virtual_mailbox_base = {}\n\
         virtual_uid_maps = static:{}\n\
         virtual_gid_maps = static:{}\n\
         # Deliver through Dovecot LMTP instead of Postfix's virtual(8) to get Sieve and quotas:\n\
         # virtual_transport = lmtp:unix:private/dovecot-lmtp\n",
        map("virtual_mailbox_domains"),
        map("relay_domains"),
        map("virtual_mailbox_maps"),
        map("virtual_alias_domain_mailbox_maps"),
        map("virtual_alias_maps"),
        map("virtual_alias_domain_maps"),
        map("virtual_alias_domain_catchall_maps"),
        map("sender_login_maps"),
        config.vmail_root.display(),
        config.vmail_uid,
        config.vmail_gid,
    );
    files.push(File {
        name: "main.cf.mailctl".into(),
        content: main_cf,
        secret: false,
    });
    Ok(files)
}

fn sql_literal(s: &str) -> String {
    s.replace('\'', "''")
}

fn dovecot_value(s: &str) -> String {
    if s.is_empty() || s.contains([' ', '"', '\\']) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// `dovecot-sql.conf.ext` (password, user and iterate queries) and `auth-mailctl.conf.ext` (passdb/userdb).
pub fn dovecot(config: &Config, dir: &Path) -> Result<Vec<File>> {
    let c = Connection::from_url(&config.database_url)?;
    let (driver, connect) = match &c {
        Connection::Mysql {
            host,
            port,
            user,
            password,
            dbname,
        } => (
            "mysql",
            format!(
                "host={} port={port} dbname={} user={} password={}",
                dovecot_value(host),
                dovecot_value(dbname),
                dovecot_value(user),
                dovecot_value(password)
            ),
        ),
        Connection::Sqlite(p) => ("sqlite", p.display().to_string()),
    };
    let root = sql_literal(&format!(
        "{}/",
        config
            .vmail_root
            .display()
            .to_string()
            .trim_end_matches('/')
    ));
    let home = c.concat(&[&format!("'{root}'"), "mailbox.maildir"]);
    let mail = c.concat(&[&format!("'maildir:{root}'"), "mailbox.maildir"]);
    let quota = c.concat(&["'*:bytes='", "mailbox.quota"]);
    let active = "mailbox.username = '%u' AND mailbox.active = '1' AND domain.active = '1'";
    let from = "FROM mailbox JOIN domain ON domain.domain = mailbox.domain";
    let sql = format!(
        "# Generated by mailctl (`mailctl config dovecot`) for Dovecot 2.3. Regenerate rather than edit.\n\
         driver = {driver}\n\
         connect = {connect}\n\
         default_pass_scheme = {scheme}\n\
         password_query = SELECT mailbox.username AS user, mailbox.password AS password {from} WHERE {active}\n\
         user_query = SELECT {home} AS home, {mail} AS mail, {uid} AS uid, {gid} AS gid, {quota} AS quota_rule {from} WHERE {active}\n\
         iterate_query = SELECT mailbox.username AS user {from} WHERE mailbox.active = '1' AND domain.active = '1'\n",
        scheme = config.password_scheme,
        uid = config.vmail_uid,
        gid = config.vmail_gid,
    );
    let auth = format!(
        "# Generated by mailctl. Include from conf.d/10-auth.conf: !include auth-mailctl.conf.ext\n\
         passdb {{\n  driver = sql\n  args = {dir}/dovecot-sql.conf.ext\n}}\n\
         userdb {{\n  driver = sql\n  args = {dir}/dovecot-sql.conf.ext\n}}\n",
        dir = dir.display()
    );
    Ok(vec![
        File {
            name: "dovecot-sql.conf.ext".into(),
            content: sql,
            secret: matches!(c, Connection::Mysql { .. }),
        },
        File {
            name: "auth-mailctl.conf.ext".into(),
            content: auth,
            secret: false,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_urls_become_connection_parameters() {
        let Connection::Mysql {
            host,
            port,
            user,
            password,
            dbname,
        } = Connection::from_url("mysql://mail%40x:p%20w@db.example:3307/postfix").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (host.as_str(), port, user.as_str()),
            ("db.example", 3307, "mail@x")
        );
        assert_eq!((password.as_str(), dbname.as_str()), ("p w", "postfix"));
    }

    #[test]
    fn dovecot_values_with_spaces_are_quoted() {
        assert_eq!(dovecot_value("a b"), "\"a b\"");
        assert_eq!(dovecot_value(""), "\"\"");
        assert_eq!(dovecot_value("plain"), "plain");
    }
}
