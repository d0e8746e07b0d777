#!/usr/bin/env bash
# Did a change that should not change speed (a refactor) change it? Counts the instructions
# the CPU-bound benchmarks execute, under valgrind's callgrind, at revisions BASE and HEAD,
# and prints the ratio per benchmark. Instruction counts do not depend on what else
# the machine is doing, so this answers on a busy 2-core machine where timings swing by
# half; a ratio within about 1% is "the same".
#
#   benches/same_instructions.sh [BASE [HEAD]]     (defaults: HEAD~1 and HEAD)
#
# What runs, with the same example source at both revisions (copied from the working tree,
# its iteration count cut so that callgrind finishes in seconds; so the examples as they are
# now must compile against both: a path they name that BASE lacks fails the build):
#   switch_bench   the software switch's pipeline in memory, four cases (examples/switch_bench.rs)
#   tick_bench     the rebalancer's tick on the generated 10,000-IRQ root (examples/tick_bench.rs)
#   scenarios      the rebalance scenario simulator S1-S8 (examples/rebalance_scenarios.rs)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-HEAD~1}
HEAD_REV=${2:-HEAD}
command -v valgrind >/dev/null || { echo "same_instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
WORK=${VPORTD_SAME_DIR:-/tmp/vportd-same}
mkdir -p "$WORK"
rm -rf "$WORK/base" "$WORK/head"
git worktree prune
git worktree add -q --detach "$WORK/base" "$BASE"
git worktree add -q --detach "$WORK/head" "$HEAD_REV"
trap 'git worktree remove --force "$WORK/base"; git worktree remove --force "$WORK/head"' EXIT

EXAMPLES=(switch_bench tick_bench rebalance_scenarios)
for side in base head; do
  dir=$WORK/$side
  # The same benchmark source on both sides: only the library differs.
  cp examples/switch_bench.rs examples/tick_bench.rs examples/rebalance_scenarios.rs "$dir/examples/"
  cp tests/load_fixture/mod.rs "$dir/tests/load_fixture/mod.rs"
  sed -i 's/let iters = 200_000u64;/let iters = 2_000u64;/' "$dir/examples/switch_bench.rs"
  echo "building $side ($(git -C "$dir" rev-parse --short HEAD))" >&2
  CARGO_TARGET_DIR=$WORK/target-$side cargo build -q --release \
    $(printf -- '--example %s ' "${EXAMPLES[@]}") --manifest-path "$dir/Cargo.toml"
done

count() { # side example args...
  local side=$1 ex=$2; shift 2
  local out=$WORK/cg.$side.$ex
  (cd "$WORK/$side" && valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$WORK/target-$side/release/examples/$ex" "$@" >/dev/null 2>"$out.log")
  grep -m1 '^summary:\|^totals:' "$out" | awk '{print $2}'
}

printf '%-22s %16s %16s %8s\n' benchmark base head head/base
for ex in "${EXAMPLES[@]}"; do
  args=()
  [[ $ex == tick_bench ]] && args=(20)
  b=$(count base "$ex" "${args[@]}")
  h=$(count head "$ex" "${args[@]}")
  printf '%-22s %16s %16s %8.4f\n' "$ex" "$b" "$h" "$(echo "$h / $b" | bc -l)"
done
