//! Dropping root: started as root, `serve` binds its ports (below 1024 only root may) and reads its TLS key,
//! then becomes `server.user` / `server.group` for good, before it opens the database, the queue or any
//! Maildir, so that everything it creates belongs to that user and a compromised session holds no privilege.
//!
//! The switch uses the C library's `setgroups`/`setgid`/`setuid`, which glibc applies to every thread of the
//! process (the async runtime's threads exist already), sets the real, effective and saved ids alike, and is
//! then checked: every id must be the target's, no supplementary group may remain, and `setuid(0)` must fail.
//! A started-unprivileged daemon (systemd's `User=`, the unit `mailctl config systemd` writes) that already
//! is `server.user` needs no switch; one that is another user cannot switch and says so before binding.
//!
//! With `crate::sys`, the only module allowed `unsafe` code (the libc calls of the switch and of the user and
//! group database).

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;

use crate::error::{Error, Result};

/// The account `serve` runs as once its ports are bound, resolved from the names in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// `server.user`.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// `server.group`, else the name of the user's primary group (or its number when it has no name).
    pub group: String,
    /// The gid.
    pub gid: u32,
}

impl RunAs {
    /// Looks `user` (and `group`, else the user's primary group) up in the system's user database. Errors name
    /// the config key and the value: an unknown user is a configuration mistake (exit 2).
    pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs> {
        let lookup = |key: &str, name: &str, what: &str, found: io::Result<Option<(u32, u32)>>| {
            match found {
                Ok(Some(ids)) => Ok(ids),
                Ok(None) => Err(Error::usage(format!(
                    "server.{key}: no such {what} '{}'",
                    name.escape_debug()
                ))),
                Err(e) => Err(Error::usage(format!(
                    "server.{key}: cannot look up {what} '{}': {e}",
                    name.escape_debug()
                ))),
            }
        };
        let (uid, primary) = lookup("user", user, "user", passwd_by_name(user))?;
        if uid == 0 {
            return Err(Error::usage(format!(
                "server.user: '{}' is root: name an unprivileged user for serve to run as",
                user.escape_debug()
            )));
        }
        let (group, gid) = match group {
            Some(g) => (
                g.to_string(),
                lookup("group", g, "group", group_by_name(g))?.0,
            ),
            None => (
                group_name(primary).unwrap_or_else(|| primary.to_string()),
                primary,
            ),
        };
        if gid == 0 {
            return Err(Error::usage(format!(
                "server.group: '{}' is root's group: name an unprivileged group for serve to run as",
                group.escape_debug()
            )));
        }
        Ok(RunAs {
            user: user.to_string(),
            uid,
            group,
            gid,
        })
    }
}

/// What start-up does about the process's identity, decided before anything is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Running as root with `server.user` set: switch once the ports are bound.
    Switch(RunAs),
    /// Already running as `server.user` (e.g. systemd's `User=`): nothing to do.
    AlreadyThere,
    /// Running as root without `server.user`: allowed, with a warning in the log.
    StayRoot,
    /// Running as some unprivileged user without `server.user`: nothing to do.
    Unprivileged,
}

impl Plan {
    /// Decides from the current ids. A process that is neither root nor `server.user` cannot become it: that
    /// is a usage error (exit 2) naming both, raised before any port is bound.
    pub fn decide(run_as: Option<&RunAs>) -> Result<Plan> {
        let (euid, egid) = crate::sys::effective_ids();
        match run_as {
            Some(r) if euid == 0 => Ok(Plan::Switch(r.clone())),
            Some(r) if euid == r.uid && egid == r.gid => Ok(Plan::AlreadyThere),
            Some(r) => Err(Error::usage(format!(
                "server.user: serve runs as uid {euid} gid {egid}, which cannot switch to {}:{} ({}:{}); start it \
                 as root or as that user and group",
                r.user, r.group, r.uid, r.gid
            ))),
            None if euid == 0 => Ok(Plan::StayRoot),
            None => Ok(Plan::Unprivileged),
        }
    }
}

/// Becomes `r` for good: no supplementary groups, then the group, then the user; then checks that it took.
pub fn switch(r: &RunAs) -> Result<()> {
    let failed = |step: &str| {
        Error::Refused(format!(
            "cannot switch to user {}:{} ({step}): {}",
            r.user,
            r.group,
            io::Error::last_os_error()
        ))
    };
    // SAFETY: setgroups reads zero entries from the (null) list; setgid and setuid take plain integers.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(failed("setgroups"));
        }
        if libc::setgid(r.gid) != 0 {
            return Err(failed("setgid"));
        }
        if libc::setuid(r.uid) != 0 {
            return Err(failed("setuid"));
        }
    }
    verify(r)
}

/// Checks that every id is `r`'s, that no supplementary group is left, and that root cannot be regained.
fn verify(r: &RunAs) -> Result<()> {
    let (mut ruid, mut euid, mut suid) = (0, 0, 0);
    let (mut rgid, mut egid, mut sgid) = (0, 0, 0);
    // SAFETY: the getres*id calls write three integers through valid pointers; getgroups with size 0 only
    // counts; setuid(0) takes an integer (and must fail here).
    let (ids_ok, groups, regained) = unsafe {
        let ok = libc::getresuid(&mut ruid, &mut euid, &mut suid) == 0
            && libc::getresgid(&mut rgid, &mut egid, &mut sgid) == 0;
        (
            ok,
            libc::getgroups(0, std::ptr::null_mut()),
            libc::setuid(0) == 0,
        )
    };
    let uids = [ruid, euid, suid];
    let gids = [rgid, egid, sgid];
    if regained || !ids_ok || uids != [r.uid; 3] || gids != [r.gid; 3] || groups != 0 {
        return Err(Error::Refused(format!(
            "dropping root did not take: uids {uids:?}, gids {gids:?}, {groups} supplementary groups, \
             setuid(0) {}; refusing to run",
            if regained { "succeeded" } else { "failed" }
        )));
    }
    Ok(())
}

/// `(uid, primary gid)` of the user called `name`, `None` when there is none.
fn passwd_by_name(name: &str) -> io::Result<Option<(u32, u32)>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    with_buffer(|buf| {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids); getpwnam_r fills it and points its
        // strings into `buf`, which outlives the call; we read only the integer fields.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        (
            rc,
            (!found.is_null()).then_some((entry.pw_uid, entry.pw_gid)),
        )
    })
}

/// The gid of the group called `name` (twice, to share [`passwd_by_name`]'s shape), `None` when there is none.
fn group_by_name(name: &str) -> io::Result<Option<(u32, u32)>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    with_buffer(|buf| {
        // SAFETY: as in passwd_by_name, for `group` and getgrnam_r.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        (
            rc,
            (!found.is_null()).then_some((entry.gr_gid, entry.gr_gid)),
        )
    })
}

/// The gid of the group called `name`, `None` when there is none.
pub fn gid_by_name(name: &str) -> io::Result<Option<u32>> {
    Ok(group_by_name(name)?.map(|(gid, _)| gid))
}

/// The name of group `gid`, for messages.
fn group_name(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: as in passwd_by_name, for getgrgid_r; the name is copied out while `buf` is alive.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc =
            unsafe { libc::getgrgid_r(gid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        let name = (!found.is_null() && !entry.gr_name.is_null()).then(|| {
            // SAFETY: a non-null gr_name is a NUL-terminated string inside `buf`.
            unsafe { CStr::from_ptr(entry.gr_name) }
                .to_string_lossy()
                .into_owned()
        });
        (rc, name)
    })
    .ok()
    .flatten()
}

/// Runs a `get*_r` call with a buffer that grows while the call answers `ERANGE`.
fn with_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (rc, _) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_users_are_refused_with_the_key_named() {
        let e = RunAs::resolve("root", None).unwrap_err().to_string();
        assert!(e.starts_with("server.user:") && e.contains("root"), "{e}");
        let e = RunAs::resolve("no-such-user-mailctl", None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "server.user: no such user 'no-such-user-mailctl'");
        let e = RunAs::resolve("nobody", Some("no-such-group-mailctl"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "server.group: no such group 'no-such-group-mailctl'");
        let e = RunAs::resolve("a\0b", None).unwrap_err().to_string();
        assert!(e.contains("no such user"), "{e}");
    }

    #[test]
    fn the_group_defaults_to_the_users_primary_group() {
        // `nobody` exists on every Debian/Ubuntu system (65534, primary group nogroup 65534).
        let r = RunAs::resolve("nobody", None).expect("user nobody (every Debian system has it)");
        assert_eq!(r.user, "nobody");
        assert_ne!(r.uid, 0);
        let primary = passwd_by_name("nobody").unwrap().unwrap().1;
        assert_eq!(r.gid, primary);
        assert_eq!(group_by_name(&r.group).unwrap().map(|g| g.0), Some(primary));
        let e = RunAs::resolve("nobody", Some("root"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("server.group:") && e.contains("root"), "{e}");
    }

    #[test]
    fn a_process_that_is_neither_root_nor_the_user_cannot_switch() {
        let (euid, _) = crate::sys::effective_ids();
        let stranger = RunAs {
            user: "stranger".into(),
            uid: euid.wrapping_add(1).max(1),
            group: "strangers".into(),
            gid: 4242,
        };
        match Plan::decide(Some(&stranger)) {
            Ok(Plan::Switch(r)) => assert_eq!(euid, 0, "{r:?}"),
            Err(e) => {
                assert_ne!(euid, 0);
                assert!(e.to_string().starts_with("server.user:"), "{e}");
                assert_eq!(e.exit_code(), crate::error::exit::USAGE);
            }
            other => panic!("{other:?}"),
        }
        let expected = if euid == 0 {
            Plan::StayRoot
        } else {
            Plan::Unprivileged
        };
        assert_eq!(Plan::decide(None).unwrap(), expected);
    }
}
