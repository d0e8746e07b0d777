//! `vportd daemon`: the long-running agent (docs/rebalance.md, docs/hotplug.md).

use super::Failure;

pub(super) fn run(args: crate::daemon::DaemonArgs) -> Result<(), Failure> {
    crate::daemon::main(args).map_err(Failure::coded)
}
