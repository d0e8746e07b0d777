//! `vportd daemon`: the long-running agent (docs/rebalance.md, docs/hotplug.md).

use super::Failure;

/// `log_level_given`: `--log-level` was on the command line (it wins over the config's
/// `[daemon] log_level`).
pub(super) fn run(args: crate::daemon::DaemonArgs, log_level_given: bool) -> Result<(), Failure> {
    crate::daemon::main(args, log_level_given).map_err(Failure::coded)
}
