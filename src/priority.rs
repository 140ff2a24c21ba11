//! Thread priorities: the one place the crate sets them.
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
}
