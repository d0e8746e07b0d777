//! `vportd top`: the live view of the daemon's metrics endpoint.

use super::Failure;

pub(super) fn run(args: crate::daemon::top::TopArgs) -> Result<(), Failure> {
    crate::daemon::top::main(args).map_err(Failure::coded)
}
