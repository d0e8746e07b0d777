//! `vportd simulate` (hidden): the rebalance scenario table from the simulator.

use super::{Failure, emit, to_json};

pub(super) fn run(json: bool) -> Result<(), Failure> {
    let rows = crate::rebalance::scenario_sim::run_all();
    if json {
        emit(&(to_json(&rows) + "\n"));
    } else {
        emit(&crate::rebalance::scenario_sim::table(&rows));
    }
    Ok(())
}
