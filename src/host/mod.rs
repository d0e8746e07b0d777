//! The only module that touches the kernel: sysfs and procfs (through [`fs::KernelFs`],
//! under a configurable root), rtnetlink and ethtool netlink. Everything above it is
//! pure data in, data out, and is tested without root.

pub mod afpacket;
pub mod afxdp;
pub(crate) mod bpf;
pub mod devlink;
pub mod ethtool;
pub mod ethtool_stats;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod fs;
pub mod http;
pub mod ipconf;
pub mod journal;
pub mod netlink;
pub mod netns;
pub(crate) mod nlsock;
pub mod qstats;
pub mod sched;
pub mod sdnotify;
pub mod sriov;
pub mod tap;
pub mod tcflow;
pub mod terminal;
pub mod uevent;
pub mod unix_socket;
pub mod uplink_wait;
pub mod userfiles;
pub mod vfio;
pub mod vlan;
pub mod wait;

/// The current name of the netdev with this ifindex in this network namespace: devices are
/// known by ifindex, and a name is asked for right before a request that needs one, so a
/// rename by udev in between changes nothing.
/// (nix's `if_indextoname` is not used: it answers an empty name for an ifindex that names
/// nothing.)
pub(crate) fn netdev_name(ifindex: u32) -> Result<String, nix::errno::Errno> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: if_indextoname(3) writes at most IFNAMSIZ bytes, NUL included, into `buf`,
    // which outlives the call.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The one runtime of the kernel layer's synchronous callers, built on first use and kept
/// for the process: building one per call was a good part of a short command's time.
///
/// Current-thread, and shared by every thread that calls [`block_on`]: tokio lets one of
/// them drive it at a time while the others poll their own futures and take over when it is
/// free, so two threads reading netlink at once both finish. The rule for callers: a plain
/// thread (the CLI, a switch worker, the daemon's `spawn_blocking` threads), never a task of
/// the daemon's async runtime, whose worker it would stall; tokio asserts it, panicking with
/// "Cannot start a runtime from within a runtime".
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime always builds")
    })
}

/// Runs a netlink future to completion on [`runtime`], so that synchronous callers (the CLI,
/// discovery) need not own one. Same rule: never from inside an async task.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Runs `work` while polling the netlink connection `conn` that serves it, and drops the
/// connection (its socket with it) as soon as `work` is done. A connection spawned onto the
/// shared runtime instead would outlive the call, holding its socket until some later
/// [`block_on`] happened to poll it to its end.
pub(crate) async fn with_connection<C, W>(conn: C, work: W) -> W::Output
where
    C: std::future::Future<Output = ()>,
    W: std::future::Future,
{
    futures::pin_mut!(conn, work);
    match futures::future::select(work, conn).await {
        futures::future::Either::Left((out, _conn)) => out,
        // The socket closed under the requests: they fail on their own.
        futures::future::Either::Right(((), work)) => work.await,
    }
}
