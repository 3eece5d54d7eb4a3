#!/usr/bin/env bash
# Runs the test suite N times (default 5) while two busy loops keep both cores
# occupied, as on a loaded CI machine; stops at the first failing run.
#   scripts/stress.sh [N]
set -u
runs=${1:-5}
case $runs in
'' | *[!0-9]*)
	echo "usage: scripts/stress.sh [N]  (N a whole number of runs, default 5)" >&2
	exit 2
	;;
esac
cd "$(dirname "$0")/.." || exit 2

busy=()
stop_busy() {
	for pid in "${busy[@]}"; do
		kill "$pid" 2>/dev/null
	done
}
trap stop_busy EXIT
trap 'exit 130' INT TERM
for _ in 1 2; do
	(while :; do :; done) &
	busy+=("$!")
done

# Build once outside the timed runs.
cargo test --no-run --quiet || exit 1
for run in $(seq 1 "$runs"); do
	start=$(date +%s)
	cargo test --quiet >"target/stress-run-$run.log" 2>&1
	status=$?
	seconds=$(($(date +%s) - start))
	if [ "$status" -eq 0 ]; then
		echo "run $run/$runs: ok in ${seconds}s"
	else
		echo "run $run/$runs: FAILED (exit $status) after ${seconds}s; log in target/stress-run-$run.log"
		grep -E "^test .* FAILED|panicked" "target/stress-run-$run.log" | head -20
		exit 1
	fi
done
echo "all $runs runs passed with both cores busy"
