//! Start-up checks: what `serve` needs beyond a configuration that parses, checked before anything is bound,
//! as the user the daemon will run as. `serve --check-config` reports every problem at once; `serve` refuses to
//! start with them, so a broken setup fails loudly at start instead of answering `451` to every message for ever.
//!
//! Errors (exit 2, one line each): the TLS files do not load, or cannot be read again by `server.user` once
//! root is dropped (SIGHUP could not reload a renewed certificate: the error names the file or directory on the
//! way and the `chgrp`/`chmod` that fixes it); the extra CA of outbound delivery is
//! unusable, or the relay's password file or CA; the Maildir root is missing or not writable by the run-as user; the spool directory cannot be
//! created or written by it; the SQLite database (or its directory) is not writable by it. `--check-config`
//! also connects to the database (unreachable: exit 3 when that is the only problem). Warnings: the LMTP target
//! does not answer (delivery defers until it does).
//!
//! Permissions are judged from owner, group and mode bits along the whole path (search permission on every
//! directory), as the kernel does; for a daemon that drops root, without supplementary groups, as it does. A
//! path whose bits refuse but which carries a POSIX ACL is given the benefit of the doubt (the ACL may grant it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::privileges::Plan;
use crate::error::Error;
use crate::smtp::settings::{DeliveryTarget, QueueBackend, Settings};
use crate::tls::Trust;
use crate::tls::server::Tls;

/// How long the LMTP target may take to accept a connection.
const LMTP_TIMEOUT: Duration = Duration::from_secs(3);

/// What the checks found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems that stop the daemon (each names the setting and what to do).
    pub errors: Vec<Error>,
    /// Problems it can start with.
    pub warnings: Vec<String>,
}

impl Findings {
    /// `Ok` when there is no error; one error as itself; several as [`Error::Setup`], listing each.
    pub fn into_result(self) -> crate::error::Result<()> {
        let mut errors = self.errors;
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Setup {
                unreachable_only: errors.iter().all(|e| e.exit_code() == 3),
                problems: errors.iter().map(ToString::to_string).collect(),
            }),
        }
    }
}

/// Who the daemon runs as once started: the identity permissions are checked for.
#[derive(Debug, Clone)]
struct Who {
    /// For messages: `user nobody (group nogroup)`.
    name: String,
    uid: u32,
    /// The primary group and, for a daemon that keeps its identity, its supplementary groups.
    gids: Vec<u32>,
}

impl Who {
    /// The identity of `plan`: `server.user` for a daemon that drops root (no supplementary groups), else this
    /// process.
    fn of(plan: &Plan) -> Who {
        match plan {
            Plan::Switch(r) => Who {
                name: format!("user {} (group {})", r.user, r.group),
                uid: r.uid,
                gids: vec![r.gid],
            },
            _ => {
                let (uid, gid) = crate::sys::effective_ids();
                let mut groups = crate::sys::supplementary_groups();
                groups.insert(0, gid);
                Who {
                    name: format!("uid {uid}"),
                    uid,
                    gids: groups,
                }
            }
        }
    }
}

/// What a path must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Read a file.
    Read,
    /// Write to a socket (connecting to a unix socket needs only that).
    Write,
    /// Read and write a file.
    ReadWrite,
    /// Create, rename and remove files in a directory (write and search).
    Directory,
}

/// Why the run-as user cannot do what it needs on a path.
#[derive(Debug)]
struct Denied {
    /// The path that stops it: the target, or a directory on the way to it.
    path: PathBuf,
    /// `path` is a directory on the way (search permission missing), not the target itself.
    on_the_way: bool,
    /// The sentence to show.
    why: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Whether `who` may do `need` on the existing `path` (search permission on every ancestor included). A path
/// whose mode bits refuse but which carries a POSIX ACL is given the benefit of the doubt: the ACL may grant
/// what the bits do not, and only the kernel can tell.
fn allows(who: &Who, path: &Path, need: Need) -> Result<(), Denied> {
    if who.uid == 0 {
        return Ok(());
    }
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|e| Denied {
            path: p.to_path_buf(),
            on_the_way: p != path,
            why: format!("{}: {e}", p.display()),
        })
    };
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors.into_iter().filter(|d| !d.as_os_str().is_empty()) {
        let meta = stat(dir)?;
        if !permits(who, &meta, 0o1) && !crate::sys::has_access_acl(dir) {
            return Err(Denied {
                path: dir.to_path_buf(),
                on_the_way: true,
                why: format!(
                    "{} cannot enter directory {} (owner {}, group {}, mode {:o})",
                    who.name,
                    dir.display(),
                    meta.uid(),
                    meta.gid(),
                    meta.permissions().mode() & 0o7777
                ),
            });
        }
    }
    let meta = stat(path)?;
    let (bits, what) = match need {
        Need::Read => (0o4, "read"),
        Need::Write => (0o2, "write to"),
        Need::ReadWrite => (0o6, "read and write"),
        Need::Directory => (0o3, "create files in"),
    };
    if permits(who, &meta, bits) || crate::sys::has_access_acl(path) {
        return Ok(());
    }
    Err(Denied {
        path: path.to_path_buf(),
        on_the_way: false,
        why: format!(
            "{} cannot {what} {} (owner {}, group {}, mode {:o})",
            who.name,
            path.display(),
            meta.uid(),
            meta.gid(),
            meta.permissions().mode() & 0o7777
        ),
    })
}

/// Whether the owner, group or other triad that applies to `who` has every bit of `bits` (`rwx` = 4, 2, 1).
fn permits(who: &Who, meta: &std::fs::Metadata, bits: u32) -> bool {
    let mode = meta.permissions().mode();
    let triad = if meta.uid() == who.uid {
        mode >> 6
    } else if who.gids.contains(&meta.gid()) {
        mode >> 3
    } else {
        mode
    };
    triad & bits == bits
}

/// The nearest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// Runs every check that needs no database connection (`serve` connects to the database itself, right after).
pub async fn check(settings: &Settings, plan: &Plan) -> Findings {
    let who = Who::of(plan);
    let mut found = Findings::default();
    tls(settings, plan, &who, &mut found);
    if let Err(e) = Trust::load(settings.outbound.extra_ca.as_deref()) {
        found
            .errors
            .push(Error::usage(format!("server.outbound.extra_ca: {e}")));
    }
    if let Some(relay) = &settings.outbound.relay {
        if let Err(e) = relay.load() {
            found.errors.push(e);
        }
        if let Err(e) = Trust::load(relay.ca.as_deref()) {
            found
                .errors
                .push(Error::usage(format!("server.outbound.relay.ca: {e}")));
        }
    }
    match &settings.delivery {
        DeliveryTarget::Maildir(root) => maildir_root(root, &who, &mut found),
        DeliveryTarget::LmtpTcp(addr) => lmtp_tcp(addr, &mut found).await,
        DeliveryTarget::LmtpUnix(path) => lmtp_unix(path, &who, &mut found).await,
    }
    if let QueueBackend::Spool(dir) = &settings.queue.backend {
        spool(dir, &who, &mut found);
    }
    if let Some(path) = crate::store::sqlite_path(&settings.database_url) {
        sqlite(&path, &who, &mut found);
    }
    found
}

/// The TLS files load now (as this process) and, when root will be dropped, can be read again by
/// `server.user` (SIGHUP re-reads them as that user).
fn tls(settings: &Settings, plan: &Plan, who: &Who, found: &mut Findings) {
    let Some((cert, key)) = &settings.tls else {
        return;
    };
    if let Some(acme) = &settings.acme {
        acme_dir(&acme.dir, plan, who, found);
        if !cert.exists() {
            // Made at start (a placeholder until the first certificate is issued).
            return;
        }
    }
    if let Err(e) = Tls::load(cert, key) {
        found.errors.push(e);
        return;
    }
    let Plan::Switch(r) = plan else {
        return;
    };
    for (name, path) in [("cert", cert), ("key", key)] {
        if let Err(denied) = allows(who, path, Need::Read) {
            let fix = match denied.on_the_way {
                true => format!(
                    "chgrp {} {} && chmod g+x {}",
                    r.group,
                    denied.path.display(),
                    denied.path.display()
                ),
                false => format!(
                    "chgrp {} {} && chmod 640 {}",
                    r.group,
                    denied.path.display(),
                    denied.path.display()
                ),
            };
            found.errors.push(Error::usage(format!(
                "server.tls.{name}: {denied}, so SIGHUP could not reload a renewed certificate after root is \
                 dropped ({fix})"
            )));
        }
    }
}

/// `[server.acme] dir` can be written by the run-as user (renewed certificates are written there after root
/// is dropped): it exists and allows it, or it does not exist yet and a daemon started as root makes it and
/// gives it to that user, or its parent allows making it.
fn acme_dir(dir: &Path, plan: &Plan, who: &Who, found: &mut Findings) {
    let denied = if dir.exists() {
        allows(who, dir, Need::Directory).err()
    } else if matches!(plan, Plan::Switch(_)) {
        None
    } else {
        dir.parent()
            .and_then(|p| allows(who, p, Need::Directory).err())
    };
    if let Some(denied) = denied {
        found.errors.push(Error::usage(format!(
            "server.acme.dir: {denied}, so renewed certificates could not be stored (give {} to the user \
             serve runs as)",
            dir.display()
        )));
    }
}

/// `[mail] vmail_root` exists, is a directory, and the run-as user can create files in it.
fn maildir_root(root: &Path, who: &Who, found: &mut Findings) {
    let problem = match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "{} does not exist: create it and give it to the user serve runs as (mkdir -p {} && chown USER: {})",
            root.display(),
            root.display(),
            root.display()
        )),
        Err(e) => Some(format!("{}: {e}", root.display())),
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", root.display())),
        Ok(_) => allows(who, root, Need::Directory)
            .err()
            .map(|d| d.to_string()),
    };
    if let Some(why) = problem {
        found
            .errors
            .push(Error::usage(format!("mail.vmail_root: {why}")));
    }
}

/// `[server.queue] spool_dir` can be used by the run-as user: every subdirectory the spool works in is
/// writable, and whatever is missing (the spool itself, a subdirectory) can be created.
fn spool(dir: &Path, who: &Who, found: &mut Findings) {
    let problem = match existing_ancestor(dir) {
        None => Some(format!("{}: no part of the path exists", dir.display())),
        Some(existing) if !existing.is_dir() => Some(match existing == dir {
            true => format!("{} is not a directory", dir.display()),
            false => format!(
                "{} cannot be created: {} is not a directory",
                dir.display(),
                existing.display()
            ),
        }),
        Some(existing) if existing != dir => allows(who, existing, Need::Directory)
            .err()
            .map(|d| format!("{} cannot be created: {d}", dir.display())),
        Some(_) => crate::smtp::queue::spool::SUBDIRS
            .iter()
            .map(|sub| dir.join(sub))
            .map(|sub| match sub.is_dir() {
                true => allows(who, &sub, Need::Directory),
                false => allows(who, dir, Need::Directory),
            })
            .find_map(Result::err)
            .map(|d| d.to_string()),
    };
    if let Some(why) = problem {
        found
            .errors
            .push(Error::usage(format!("server.queue.spool_dir: {why}")));
    }
}

/// A SQLite database file (when it exists) and its directory (for `-wal` and `-shm`) are writable by the
/// run-as user.
fn sqlite(path: &Path, who: &Who, found: &mut Findings) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let problem = match (path.exists(), dir.exists()) {
        (true, _) => allows(who, path, Need::ReadWrite)
            .and_then(|()| allows(who, dir, Need::Directory))
            .err()
            .map(|d| d.to_string()),
        (false, true) => allows(who, dir, Need::Directory)
            .err()
            .map(|d| d.to_string()),
        // A database in a directory that does not exist yet: opening it says so (exit 3).
        (false, false) => None,
    };
    if let Some(why) = problem {
        found.errors.push(Error::usage(format!(
            "database.url: the SQLite database needs {why}"
        )));
    }
}

/// The LMTP server at `addr` greets (a warning otherwise: delivery defers until it does).
async fn lmtp_tcp(addr: &str, found: &mut Findings) {
    let greeted = tokio::time::timeout(LMTP_TIMEOUT, async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        greeting(stream).await
    })
    .await;
    if let Some(why) = unanswered(greeted) {
        found.warnings.push(format!(
            "server.delivery: the LMTP server at {addr} does not answer ({why}); every message is answered \
             451 until it does"
        ));
    }
}

/// The LMTP socket is writable by the run-as user and its server greets.
async fn lmtp_unix(path: &PathBuf, who: &Who, found: &mut Findings) {
    let why = match allows(who, path, Need::Write) {
        Err(denied) => Some(denied.to_string()),
        Ok(()) => unanswered(
            tokio::time::timeout(LMTP_TIMEOUT, async {
                let stream = tokio::net::UnixStream::connect(path).await?;
                greeting(stream).await
            })
            .await,
        ),
    };
    if let Some(why) = why {
        found.warnings.push(format!(
            "server.delivery: the LMTP socket {} does not answer ({why}); every message is answered 451 until \
             it does",
            path.display()
        ));
    }
}

/// Reads the server's greeting and says QUIT: `Ok` when it greeted with `220`.
async fn greeting(stream: impl AsyncRead + AsyncWrite + Unpin) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    if !line.starts_with("220") {
        let shown = crate::model::printable(line.trim_end());
        return Err(std::io::Error::other(format!("it greeted with {shown:?}")));
    }
    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
    Ok(())
}

/// Why a greeting did not come, if it did not.
fn unanswered(greeted: Result<std::io::Result<()>, tokio::time::error::Elapsed>) -> Option<String> {
    match greeted {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no greeting within {} s", LMTP_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> Who {
        Who {
            name: "user nobody (group nogroup)".into(),
            uid: 65534,
            gids: vec![65534],
        }
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn mode_bits_decide_for_owner_group_and_others() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let file = dir.path().join("key.pem");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o600);
        let who = nobody();
        let e = allows(&who, &file, Need::Read).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("mode 600"), "{e}");
        chmod(&file, 0o604);
        assert!(allows(&who, &file, Need::Read).is_ok());
        assert!(allows(&who, &file, Need::ReadWrite).is_err());
        // A directory on the way without search permission stops everything below it.
        chmod(dir.path(), 0o700);
        let e = allows(&who, &file, Need::Read).unwrap_err();
        assert!(e.on_the_way && e.path == dir.path(), "{e}");
        assert!(e.to_string().contains("cannot enter directory"), "{e}");
        chmod(dir.path(), 0o755);
        let root = Who {
            name: "root".into(),
            uid: 0,
            gids: vec![0],
        };
        chmod(&file, 0o000);
        assert!(allows(&root, &file, Need::ReadWrite).is_ok());
    }

    #[test]
    fn a_missing_maildir_root_and_an_uncreatable_spool_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let mut found = Findings::default();
        maildir_root(&dir.path().join("vmail"), &nobody(), &mut found);
        spool(&dir.path().join("spool/mailctl"), &nobody(), &mut found);
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("mail.vmail_root: ") && errors[0].contains("does not exist"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("server.queue.spool_dir: ")
                && errors[1].contains("cannot be created"),
            "{errors:?}"
        );
        let e = found.into_result().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("2 problems"), "{e}");
    }

    #[test]
    fn a_spool_root_of_root_with_writable_subdirectories_is_usable() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        chmod(&spool_dir, 0o755);
        for sub in crate::smtp::queue::spool::SUBDIRS {
            std::fs::create_dir(spool_dir.join(sub)).unwrap();
            chmod(&spool_dir.join(sub), 0o777);
        }
        let mut found = Findings::default();
        spool(&spool_dir, &nobody(), &mut found);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        // A missing subdirectory must be creatable, which this root is not.
        std::fs::remove_dir(spool_dir.join("corrupt")).unwrap();
        spool(&spool_dir, &nobody(), &mut found);
        assert_eq!(found.errors.len(), 1, "{:?}", found.errors);
    }
}
