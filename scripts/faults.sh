#!/usr/bin/env bash
# Runs the fault-injection suite (tests/tests/faults.rs) with a long or a
# replayed schedule. CI runs the short default (a 105 s fault phase) as part
# of `cargo nextest run --workspace`; this script is for the long runs and
# for replaying a failure. See docs/RELIABILITY.md.
#
#   scripts/faults.sh                      # 105 s fault phase, fresh seed
#   scripts/faults.sh --duration 30m       # a long schedule
#   scripts/faults.sh --seed 42 --duration 120s   # replay a run
#   scripts/faults.sh --strict             # known product bugs fail too
#
# The seed, the schedule and the checkers' verdicts are printed; a failing
# run keeps the processes' logs and the history under
# target/tmp/faults-<seed>/. Run as root: the partitions (of agent 3 and of
# the active coordinator) need network namespaces, the full disk a tmpfs;
# without them those kinds are left out, saying so on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) export BALLAST_FAULTS_DURATION="${2:?--duration needs a value like 30m}"; shift 2 ;;
        --duration=*) export BALLAST_FAULTS_DURATION="${1#*=}"; shift ;;
        --seed) export BALLAST_FAULTS_SEED="${2:?--seed needs a number}"; shift 2 ;;
        --seed=*) export BALLAST_FAULTS_SEED="${1#*=}"; shift ;;
        --strict) export BALLAST_FAULTS_STRICT=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "faults.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

# The test runs the real `ballast` binary.
cargo build --workspace --bins -q
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run -p ballast-tests --test faults --no-capture
else
    exec cargo test -p ballast-tests --test faults -- --nocapture
fi
