//! The few process-level POSIX calls mailctl makes outside the privilege drop, as safe functions: who this
//! process is (for the start-up checks and the drop) and its open-file limit (every connection is a file
//! descriptor). With `smtp::daemon::privileges`, the only module allowed `unsafe` code.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// This process's effective user and group ids.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// This process's supplementary groups (empty when they cannot be read).
pub fn supplementary_groups() -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most the length it is given into the buffer, which has that length.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(n).unwrap_or(0));
    groups
}

/// Whether `path` carries a POSIX access ACL: then its mode bits alone do not say who may use it (the group
/// bits are the ACL's mask).
pub fn has_access_acl(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; with a null buffer and size 0 getxattr only returns the size of
    // the attribute's value (or -1 when there is none) and writes nothing.
    let size = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    size > 0
}

/// Raises this process's open-file soft limit to its hard limit (systemd units set the hard limit with
/// `LimitNOFILE=`) and returns the resulting soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer, which lives on this stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// The CPU time (user + system, every thread) process `pid` has used so far, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> io::Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: the fields after it start past the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime 14 and stime 15 (proc(5)).
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unreadable /proc stat"))
    };
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf reads a constant and touches no memory.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(100);
    Ok(std::time::Duration::from_micros(
        total * 1_000_000 / per_second,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_limit_is_raised_to_something_usable() {
        assert!(raise_nofile_limit().unwrap() >= 256);
        let (uid, gid) = effective_ids();
        assert_eq!(uid == 0, gid == 0 || uid == 0);
    }
}
