//! Prints the S1-S8 comparison table: static node-local round-robin against the
//! rebalance policy, in the simulator of `vportd::rebalance::scenario_sim`.
//! `cargo run --release --example rebalance_scenarios [-- --json]`

fn main() {
    let rows = vportd::rebalance::scenario_sim::run_all();
    if std::env::args().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("metrics serialize")
        );
    } else {
        print!("{}", vportd::rebalance::scenario_sim::table(&rows));
    }
}
