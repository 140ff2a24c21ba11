//! Thread priorities and the process's memory policy: the one place the
//! crate sets them.
//!
//! Two threads do work that everything else waits on, and each runs among
//! threads that can wait: the node's sequencer (every submission waits on
//! it) among the request handlers, and the auditor's replay (the one serial
//! step of an audit) among its signature checkers. On Linux the nice value
//! is per thread: the sequencer asks for a lower one (which needs
//! privileges); the checkers take a higher one (which never does), and so
//! do the handlers when the sequencer could not have its own (`serve
//! --handler-nice`).

/// Sets the calling thread's nice value (`setpriority(2)` on its thread id).
///
/// # Errors
/// The OS error, e.g. permission denied to go below the current value.
#[cfg(all(target_os = "linux", feature = "node"))]
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions; setpriority only reads its
    // arguments, and a bad one is an error return, not undefined behaviour.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Thread priorities are set on Linux only, and only with the `node`
/// feature (which brings `libc`).
#[cfg(not(all(target_os = "linux", feature = "node")))]
pub fn set_thread_nice(_nice: i32) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "thread priorities are set on Linux with the node feature only",
    ))
}

/// Stops the kernel from backing this process's memory with transparent
/// huge pages (`prctl(PR_SET_THP_DISABLE)`; it applies to every mapping,
/// present and future, and is inherited by children), unless
/// `MIMALLOC_ALLOW_THP` is set, which then decides as mimalloc documents.
///
/// With huge pages a fault zeroes 2 MiB, and a page the allocator has
/// only partly used counts in full: on a kernel that gives them to every
/// process (`transparent_hugepage/enabled` = `always`) the node held about
/// 50 MiB more anonymous memory after 250,000 events, and took 5–9 %
/// fewer events per second (BENCHMARKS.md, fourteenth session).
///
/// # Errors
/// The OS error, when the kernel refuses (before Linux 3.15).
#[cfg(all(target_os = "linux", feature = "node"))]
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Ok(());
    }
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag
    // of the calling process; a bad argument is an error return.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Huge pages are refused on Linux only, with the `node` feature.
#[cfg(not(all(target_os = "linux", feature = "node")))]
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux", feature = "node"))]
mod tests {
    /// The nice value in `/proc/thread-self/stat` (field 19; the command
    /// name, field 2, is in parentheses and may hold spaces).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        // Fields from the state (3) on: the nice value is the 17th of them.
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// Raising one thread's nice value needs no privilege and leaves the
    /// other threads' as they were.
    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = own_nice();
        let inside = std::thread::spawn(move || {
            super::set_thread_nice(before.max(10)).unwrap();
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(inside, before.max(10));
        assert_eq!(own_nice(), before);
    }

    /// The process's THP flag reads as off afterwards (the line
    /// `THP_enabled` of `/proc/self/status`, Linux 5.0 and later).
    #[test]
    fn huge_pages_are_off_after_the_call() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        super::disable_transparent_huge_pages().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
