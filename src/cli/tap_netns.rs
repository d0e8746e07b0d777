//! `vportd tap-netns TAP NETNS`: a network namespace on a software vPort, as a VM would be on
//! it (host::tap::stand_in). For trying a software vPort without a VM, and for the guest
//! tests, whose hosts are namespaces.

use std::path::PathBuf;

/// Stand in for the VM on a software vPort's TAP: a TAP of the same name (or --name) in
/// network namespace NETNS carries its frames, until the vPort's TAP goes.
#[derive(Debug, Clone, clap::Args)]
pub struct TapNetnsArgs {
    /// The vPort's TAP (vp-NAME), as the daemon made it.
    pub tap: String,
    /// The network namespace, as a file (e.g. /var/run/netns/NAME).
    pub netns: PathBuf,
    /// The interface name in the namespace (default: the TAP's).
    #[arg(long, value_name = "IFNAME")]
    pub name: Option<String>,
}

/// Runs until the TAP goes; the error carries exit code 1.
pub fn tap_netns_main(a: TapNetnsArgs) -> Result<(), (u8, String)> {
    let inner = a.name.as_deref().unwrap_or(&a.tap);
    crate::host::tap::stand_in(&a.tap, &a.netns, inner).map_err(|e| (1, e.to_string()))
}
