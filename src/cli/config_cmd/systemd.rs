//! `mailctl config systemd`: a hardened systemd unit that runs `mailctl serve` as a dedicated user.
//!
//! The unit is derived from the configuration of this run: `ExecStart` names the config file that was read,
//! `ReadWritePaths` the Maildir root (for local delivery), the spool, the SQLite database's directory and the ACME
//! directory (`[server.acme] dir`), and the unit
//! orders itself after MariaDB when the database is MySQL/MariaDB. Everything else of the system is read-only
//! to the daemon, and its only privilege is binding ports below 1024.
//!
//! systemd starts the daemon as `User=` (it never holds root), so `server.user`, which makes a root-started
//! `serve` drop to a user, is not needed; when the config sets it, the unit runs as that user and group, since
//! `serve` refuses to start as any other.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::{Config, DEFAULT_CONFIG_PATH, Source};
use crate::error::{Error, Result};
use crate::lookup_config::File;

/// The name of the generated unit file.
pub const UNIT_NAME: &str = "mailctl.service";

/// Options of `config systemd`.
#[derive(Debug, Args)]
pub struct SystemdArgs {
    /// Write mailctl.service into DIR (created if needed) instead of printing it
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The dedicated system user (and group) the daemon runs as [default: server.user, else mailctl]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Absolute path of the mailctl binary the unit starts [default: this binary]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// What the unit needs to know, already validated.
#[derive(Debug)]
pub struct UnitParams {
    /// `User=`.
    pub user: String,
    /// `Group=`: `server.group`, else a group named like the user.
    pub group: String,
    /// The `mailctl` binary.
    pub binary: PathBuf,
    /// The config file `serve` reads.
    pub config: PathBuf,
    /// Directories the daemon writes (Maildir root, SQLite directory), deduplicated.
    pub writable: Vec<PathBuf>,
    /// Whether the database is MySQL/MariaDB (ordering after its server).
    pub mysql: bool,
    /// The SQLite database file, which must belong to the user (mailctl creates it 0600 for whoever runs first).
    pub sqlite: Option<PathBuf>,
    /// Owner uid and gid of the Maildirs (`[mail] vmail_uid/vmail_gid`), which the user should get.
    pub vmail_ids: (u32, u32),
}

/// Validates the arguments against the configuration; returns the unit's parameters and notes for the user
/// (settings the service will not see, paths its sandbox hides).
pub fn params(config: &Config, args: &SystemdArgs) -> Result<(UnitParams, Vec<String>)> {
    let user = match (&args.user, &config.server.user) {
        (Some(flag), Some(set)) if flag != set => {
            return Err(Error::usage(format!(
                "--user {flag} differs from server.user = \"{set}\" in the config: serve started as {flag} \
                 would refuse to run (drop --user, or change server.user)",
                flag = flag.escape_debug(),
                set = set.escape_debug()
            )));
        }
        (Some(u), _) | (None, Some(u)) => u.clone(),
        (None, None) => "mailctl".to_string(),
    };
    check_user("--user", &user)?;
    let group = config.server.group.clone().unwrap_or_else(|| user.clone());
    check_user("server.group", &group)?;
    let binary = match &args.binary {
        Some(b) if !b.is_absolute() => {
            return Err(Error::usage(format!(
                "--binary must be an absolute path, not '{}'",
                b.display()
            )));
        }
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| {
            Error::usage(format!(
                "cannot tell where this binary is ({e}); pass --binary PATH"
            ))
        })?,
    };
    unit_path("--binary", &binary)?;
    let mut notes = Vec::new();
    let config_path = match &config.config_file {
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        None => {
            notes.push(format!(
                "no config file was read; the unit names {DEFAULT_CONFIG_PATH}, which must exist before it starts"
            ));
            PathBuf::from(DEFAULT_CONFIG_PATH)
        }
    };
    unit_path("the config file path", &config_path)?;
    if config.database_source != Source::ConfigFile {
        notes.push(format!(
            "the service reads the database URL from {} only: set [database] url there",
            config_path.display()
        ));
    }

    let mut writable = Vec::new();
    let lmtp = config
        .server
        .delivery
        .as_deref()
        .is_some_and(|d| d.trim().starts_with("lmtp:"));
    if !lmtp {
        unit_path("mail.vmail_root", &config.vmail_root)?;
        writable.push(config.vmail_root.clone());
    }
    // The outbound spool (unless the queue lives in the database).
    if let Ok(queue) = crate::smtp::settings::queue(&config.server.queue, &config.database_url)
        && let crate::smtp::settings::QueueBackend::Spool(dir) = queue.backend
    {
        unit_path("server.queue.spool_dir", &dir)?;
        if !writable.contains(&dir) {
            writable.push(dir);
        }
    }
    // The ACME state: renewed certificates are written there.
    if config.server.acme.directory.is_some() {
        let dir = config
            .server
            .acme
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::acme::settings::DEFAULT_DIR));
        unit_path("server.acme.dir", &dir)?;
        notes.push(format!(
            "systemd needs {} to exist before the first start (ReadWritePaths): install -d -m 700 -o {user} {}",
            dir.display(),
            dir.display()
        ));
        if !writable.contains(&dir) {
            writable.push(dir);
        }
    }
    let url = config.database_url.trim();
    let mysql = url.starts_with("mysql:") || url.starts_with("mariadb:");
    let mut sqlite = None;
    if url.starts_with("sqlite:") {
        let db = crate::store::sqlite_path(url).ok_or_else(|| {
            Error::usage("the database URL names no SQLite file (in-memory databases cannot serve)")
        })?;
        let dir = db.parent().map(Path::to_path_buf).unwrap_or_default();
        unit_path("the SQLite database directory", &dir)?;
        unit_path("the SQLite database", &db)?;
        if !writable.contains(&dir) {
            writable.push(dir);
        }
        sqlite = Some(db);
    }

    let tls = [&config.server.tls.cert, &config.server.tls.key];
    let read: Vec<&Path> = [binary.as_path(), config_path.as_path()]
        .into_iter()
        .chain(tls.into_iter().flatten().map(PathBuf::as_path))
        .collect();
    for path in read
        .iter()
        .copied()
        .chain(writable.iter().map(PathBuf::as_path))
    {
        if let Some(why) = hidden_by_sandbox(path) {
            notes.push(format!("{} {why}", path.display()));
        }
    }
    let params = UnitParams {
        user,
        group,
        binary,
        config: config_path,
        writable,
        mysql,
        sqlite,
        vmail_ids: (config.vmail_uid, config.vmail_gid),
    };
    Ok((params, notes))
}

/// A name `useradd` accepts on every distribution: lower-case letter or `_` first, then letters, digits, `_`
/// and `-`, at most 32 characters. `root` is refused: the point of the unit is a user without privileges.
/// `what` names where the name came from (`--user`, `server.group`).
fn check_user(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let sane = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !sane {
        return Err(Error::usage(format!(
            "{what} '{}' is not a valid name (lower-case letter or _ first, then a-z 0-9 _ -, at most 32)",
            name.escape_debug()
        )));
    }
    if name == "root" {
        return Err(Error::usage(format!(
            "{what} root would run the daemon with every privilege; name a dedicated one"
        )));
    }
    Ok(())
}

/// Refuses a path the unit cannot carry as written: relative (the service runs in `/`), or holding a character
/// that unit-file syntax would split, unquote or expand (white space, quotes, `\`, `%` specifiers, `$`).
fn unit_path(what: &str, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    if !path.is_absolute() {
        return Err(Error::usage(format!(
            "{what} must be an absolute path for a service (it runs in /), not '{}'",
            shown.escape_debug()
        )));
    }
    let unsafe_char = |c: char| c.is_whitespace() || c.is_control() || "\"'\\%$;".contains(c);
    if path.to_str().is_none_or(|s| s.chars().any(unsafe_char)) {
        return Err(Error::usage(format!(
            "{what} '{}' holds a character a unit file cannot carry (white space, quote, \\, %, $ or ;)",
            shown.escape_debug()
        )));
    }
    Ok(())
}

/// Why the sandbox hides `path` from the service, if it does.
fn hidden_by_sandbox(path: &Path) -> Option<&'static str> {
    let under = |root: &str| path.starts_with(root);
    if under("/home") || under("/root") || under("/run/user") {
        Some("is under a home directory, which ProtectHome=yes hides from the service")
    } else if under("/tmp") || under("/var/tmp") {
        Some("is under /tmp, which PrivateTmp=yes replaces with an empty directory for the service")
    } else {
        None
    }
}

/// The unit file.
pub fn unit(p: &UnitParams) -> File {
    let (uid, gid) = p.vmail_ids;
    let (user, group) = (&p.user, &p.group);
    let mut install = format!(
        "# Install (as root):\n\
         #   groupadd --system --gid {gid} {group}\n\
         #   useradd --system --uid {uid} --gid {group} --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {user}\n"
    );
    for dir in &p.writable {
        install.push_str(&format!(
            "#   install -d -o {user} -g {group} -m 0700 {}\n",
            dir.display()
        ));
    }
    if let Some(db) = &p.sqlite {
        install.push_str(&format!(
            "#   chown {user}:{group} {}   # if it exists: created by root, it is root's alone (0600)\n",
            db.display()
        ));
    }
    install.push_str(&format!(
        "#   chgrp {group} {config} && chmod 0640 {config}   # and the TLS key: readable by {group}\n\
         #   cp {UNIT_NAME} /etc/systemd/system/ && systemctl daemon-reload\n\
         #   runuser -u {user} -- {binary} --config {config} serve --check-config   # as the service runs\n\
         #   systemctl enable --now {UNIT_NAME}\n\
         # Logs: journalctl -u mailctl. After renewing the certificate: systemctl reload mailctl (re-reads TLS).\n",
        config = p.config.display(),
        binary = p.binary.display(),
    ));
    let after = if p.mysql {
        "network-online.target mariadb.service mysql.service"
    } else {
        "network-online.target"
    };
    let writable = p
        .writable
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let read_write = if writable.is_empty() {
        String::new()
    } else {
        format!("ReadWritePaths={writable}\n")
    };
    let content = format!(
        "# {UNIT_NAME}: runs `mailctl serve` as the unprivileged user {user} (generated by mailctl config systemd).\n\
         # It starts as {user} and never holds root, so the config needs no server.user (if set, it must be {user}).\n\
         # The uid/gid are [mail] vmail_uid/vmail_gid, so Dovecot (mailctl config dovecot) reads the Maildirs.\n\
         #\n\
         {install}\n\
         [Unit]\n\
         Description=mailctl mail server (inbound SMTP and submission)\n\
         Documentation=man:mailctl-serve(1)\n\
         After={after}\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={user}\n\
         Group={group}\n\
         ExecStart={binary} --config {config} serve\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=5s\n\
         # Exit 2 is a configuration error: restarting cannot fix it.\n\
         RestartPreventExitStatus=2\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=60\n\
         LimitNOFILE=65536\n\
         UMask=0077\n\
         \n\
         # The one privilege: binding ports 25, 465 and 587.\n\
         AmbientCapabilities=CAP_NET_BIND_SERVICE\n\
         CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n\
         NoNewPrivileges=yes\n\
         \n\
         # Everything read-only except the Maildirs and the SQLite database.\n\
         ProtectSystem=strict\n\
         {read_write}\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         ProtectProc=invisible\n\
         ProcSubset=pid\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         RemoveIPC=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged @resources\n\
         SystemCallErrorNumber=EPERM\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        binary = p.binary.display(),
        config = p.config.display(),
    );
    File {
        name: UNIT_NAME.to_string(),
        content,
        secret: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        for good in ["mailctl", "_mail", "mail-ctl2", "a"] {
            check_user("--user", good).unwrap();
        }
        for bad in [
            "",
            "Mailctl",
            "1mail",
            "mail ctl",
            "mail\nctl",
            "root",
            &"a".repeat(33),
        ] {
            assert!(check_user("--user", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unit_paths_are_absolute_and_plain() {
        unit_path("x", Path::new("/usr/local/bin/mailctl")).unwrap();
        for bad in [
            "relative/bin",
            "/a b",
            "/a%n",
            "/a$HOME",
            "/a\"b",
            "/a\\b",
            "/a\nb",
            "/a;b",
        ] {
            let e = unit_path("x", Path::new(bad)).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn sandbox_hidden_paths_are_named() {
        assert!(hidden_by_sandbox(Path::new("/home/alice/bin/mailctl")).is_some());
        assert!(hidden_by_sandbox(Path::new("/tmp/x.db")).is_some());
        assert!(hidden_by_sandbox(Path::new("/var/vmail")).is_none());
        assert!(hidden_by_sandbox(Path::new("/homestead")).is_none());
    }
}
