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
        let decode = |what: &str, s: &str| -> Result<String> {
            let v = percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| {
                    Error::usage(format!("database URL '{shown}': the {what} is not UTF-8"))
                })?
                .into_owned();
            safe_value(what, &v)?;
            Ok(v)
        };
        Ok(Connection::Mysql {
            host: decode("host", u.host_str().unwrap_or("localhost"))?,
            port: u.port().unwrap_or(3306),
            user: decode("user name", u.username())?,
            password: decode("password", u.password().unwrap_or(""))?,
            dbname: decode("database name", u.path().trim_start_matches('/'))?,
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
    // Postfix reads its maps as the unprivileged postfix user; a 0640 root:root map fails every lookup.
    let permissions = match c {
        Connection::Mysql { .. } => {
            "# The mysql_*.cf maps hold the database password: keep them mode 0640 with group postfix, which\n\
             # Postfix reads them as (`mailctl config postfix --out DIR` sets both when that group exists).\n"
        }
        Connection::Sqlite(_) => "",
    };
    let main_cf = format!(
        "# Add to /etc/postfix/main.cf (generated by mailctl).\n\
         {permissions}\
         virtual_mailbox_domains = {}\n\
         relay_domains = {}\n\
         virtual_mailbox_maps = {}, {}\n\
         virtual_alias_maps = {}, {}, {}\n\
         smtpd_sender_login_maps = {}\n\
         # On the submission service in master.cf (not here: it would replace your restrictions and apply\n\
         # to port 25 too):  -o smtpd_sender_restrictions=reject_sender_login_mismatch,permit_sasl_authenticated,reject\n\
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

/// Refuses values that the line-based Postfix and Dovecot config formats cannot carry: a line break would
/// inject a second setting, and Dovecot splits `connect` on white space and cuts `#` comments without quoting.
fn safe_value(what: &str, v: &str) -> Result<()> {
    if v.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '#' || c == '"' || c == '\\')
    {
        return Err(Error::usage(format!(
            "the database {what} contains white space, control characters, '#', '\"' or '\\', which \
             Postfix and Dovecot config files cannot carry; choose another"
        )));
    }
    Ok(())
}

fn sql_literal(s: &str) -> String {
    s.replace('\'', "''")
}

/// `dovecot-sql.conf.ext` (password, user and iterate queries) and `auth-mailctl.conf.ext` (passdb/userdb).
///
/// Two passdbs: SQL for the main password, with postfixadmin's TOTP rule in the query (a mailbox with a
/// `totp_secret` only from a `totp_exception_address`), then `checkpassword` (`app_passwords`, the command
/// line of `mailctl checkpassword`) for app passwords, which one SQL passdb cannot check: Dovecot refuses a
/// password query that returns several rows.
pub fn dovecot(config: &Config, dir: &Path, app_passwords: &str) -> Result<Vec<File>> {
    let c = Connection::from_url(&config.database_url)?;
    let (driver, connect) = match &c {
        Connection::Mysql {
            host,
            port,
            user,
            password,
            dbname,
        } => {
            // Dovecot sends `password=` with nothing after it literally, so an empty one is left out.
            let mut parts = vec![
                format!("host={host}"),
                format!("port={port}"),
                format!("dbname={dbname}"),
                format!("user={user}"),
            ];
            if !password.is_empty() {
                parts.push(format!("password={password}"));
            }
            ("mysql", parts.join(" "))
        }
        Connection::Sqlite(p) => ("sqlite", p.display().to_string()),
    };
    let root_text = config.vmail_root.display().to_string();
    if root_text.contains(['%', '\'', '\n', '\r', '#']) || root_text.contains(char::is_whitespace) {
        return Err(Error::usage(format!(
            "mail.vmail_root '{}' contains characters Dovecot would expand or cut ('%', quotes, '#', spaces)",
            crate::model::printable(&root_text)
        )));
    }
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
    let totp = "(mailbox.totp_secret IS NULL OR mailbox.totp_secret = '' OR EXISTS (SELECT 1 FROM \
                totp_exception_address t WHERE t.ip = '%r' AND (t.username = '%u' OR t.username = '%d' OR \
                t.username IS NULL)))";
    let sql = format!(
        "# Generated by mailctl (`mailctl config dovecot`) for Dovecot 2.3. Regenerate rather than edit.\n\
         driver = {driver}\n\
         connect = {connect}\n\
         default_pass_scheme = {scheme}\n\
         password_query = SELECT mailbox.username AS user, mailbox.password AS password {from} WHERE {active} AND ('%s' <> 'smtp' OR mailbox.smtp_active = '1') AND {totp}\n\
         user_query = SELECT {home} AS home, {mail} AS mail, {uid} AS uid, {gid} AS gid, {quota} AS quota_rule {from} WHERE {active}\n\
         iterate_query = SELECT mailbox.username AS user {from} WHERE mailbox.active = '1' AND domain.active = '1'\n",
        scheme = config.password_scheme,
        uid = config.vmail_uid,
        gid = config.vmail_gid,
    );
    let auth = format!(
        "# Generated by mailctl. Include from conf.d/10-auth.conf: !include auth-mailctl.conf.ext\n\
         # The main password (with the TOTP rule), then app passwords, which one SQL passdb cannot check.\n\
         passdb {{\n  driver = sql\n  args = {dir}/dovecot-sql.conf.ext\n}}\n\
         passdb {{\n  driver = checkpassword\n  args = {app_passwords}\n}}\n\
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
        } = Connection::from_url("mysql://mail%40x:p%2Fw@db.example:3307/postfix").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (host.as_str(), port, user.as_str()),
            ("db.example", 3307, "mail@x")
        );
        assert_eq!((password.as_str(), dbname.as_str()), ("p/w", "postfix"));
    }

    #[test]
    fn values_that_would_break_config_files_are_refused() {
        assert!(Connection::from_url("mysql://u:a%0Aquery%20%3D%20x@h/db").is_err());
        assert!(Connection::from_url("mysql://u:a%20b@h/db").is_err());
        assert!(Connection::from_url("mysql://u:pa%23ss@h/db").is_err());
        let Connection::Mysql { password, .. } =
            Connection::from_url("mysql://u:a+b@h/db").unwrap()
        else {
            panic!()
        };
        assert_eq!(password, "a+b", "+ is not a space in URL userinfo");
    }
}
