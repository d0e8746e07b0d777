//! Scheduling priority of the calling thread, for the hand-off of udev events.
//!
//! udev runs `vportd hotplug` inside its event handling and the target is an answer within
//! 50 ms, but on a loaded machine every wake-up waits for a CPU: the client's own start-up,
//! and the daemon's socket thread that must run to answer. Both are a few microseconds of
//! work, so a higher priority costs the rest of the machine nothing measurable and keeps
//! them from queueing behind CPU-bound tasks (benches/hotplug_latency.sh).

/// Why the priority could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// The kernel refused the nice value (no CAP_SYS_NICE and RLIMIT_NICE too low).
    #[error("cannot set this thread's nice value to {nice}: {source}")]
    Nice { nice: i32, source: std::io::Error },
}

/// Sets the calling thread's nice value (Linux keeps one per thread, so the other threads
/// of the process keep theirs). Needs CAP_SYS_NICE, or RLIMIT_NICE of at least 20 - nice
/// (systemd's `LimitNICE=`).
pub fn set_thread_nice(nice: i32) -> Result<(), SchedError> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    // SAFETY: setpriority reads its three integer arguments only; `tid` is this thread's id.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(SchedError::Nice {
            nice,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The calling thread's nice value.
pub fn thread_nice() -> i32 {
    // SAFETY: as in set_thread_nice.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    // SAFETY: getpriority reads its integer arguments only. -1 is also a valid nice value,
    // which is fine for a value that is only shown.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lowering one's own priority is always allowed, and only this thread changes.
    #[test]
    fn per_thread_nice() {
        let before = thread_nice();
        std::thread::spawn(move || {
            set_thread_nice(before + 1).unwrap();
            assert_eq!(thread_nice(), before + 1);
        })
        .join()
        .unwrap();
        assert_eq!(thread_nice(), before);
    }
}
