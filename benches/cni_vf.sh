#!/bin/sh
# CNI ADD+DEL latency for a VF from a [[pool]] in the SR-IOV guest (plugin + daemon +
# host-local, igb/igbvf under TCG): runs the guest scenario of tests/vm/cni_vf.rs, which
# prints p50 and p99 over 20 runs (and checks podman, the stress rounds and the kills).
set -e
cd "$(dirname "$0")/.."
cargo test --test vm cni_vf_pool_podman_stress_and_kills -- --nocapture 2>&1 | grep -E 'ADD\+DEL|test result'
