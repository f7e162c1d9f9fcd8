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
