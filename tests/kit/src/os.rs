//! The process-level calls tests make (root or not, signals, CPU time), so the test and bench code of
//! mailctl itself needs no `unsafe` (its package denies it).

use std::time::Duration;

/// Whether the tests run as root (the privilege and interop tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to process `pid`; true when it was delivered (signal 0 only checks that the process exists).
pub fn signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) touches no memory; the caller names a process it started.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    signal(pid, 0)
}

/// CPU time (user + system) of `who` (`libc::RUSAGE_SELF` or `libc::RUSAGE_CHILDREN`, the children waited for).
pub fn rusage(who: i32) -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given; `who` is one of the two constants.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
