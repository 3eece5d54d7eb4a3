#!/usr/bin/env bash
# One command for the whole benchmark (see BENCHMARKS.md):
#
#   bench/run.sh             full run: release build, Python service in a venv,
#                            bare warp ceiling, criterion; ~15 min on 2 cores
#   bench/run.sh --smoke     CI: a second or two per target, debug build (the one
#                            `cargo test` already made), no venv, no criterion
#   bench/run.sh --only acquire
#                            only the acquire comparison: one token bucket, the
#                            ibkr rules with counts raised, the real ibkr profile
#                            (release build of mdp alone, no venv, no criterion)
#
# Extra arguments go to bench/bench.py (e.g. --rounds 3 --duration 5).
# Environment: CARGO_TARGET_DIR (default ./target), BENCH_PYTHON (python3),
# BENCH_NO_CRITERION=1 to skip the criterion benches in a full run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
python=${BENCH_PYTHON:-python3}

smoke=0
only=all
prev=
for arg in "$@"; do
    [[ $arg == --smoke ]] && smoke=1
    [[ $prev == --only ]] && only=$arg
    [[ $arg == --only=* ]] && only=${arg#--only=}
    prev=$arg
done

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }

targets=(--bin mdp --example bare_warp --example event_latency)
[[ $only == acquire ]] && targets=(--bin mdp)
if ((smoke)); then
    profile=debug
    cargo build --quiet "${targets[@]}"
else
    profile=release
    cargo build --release --quiet "${targets[@]}"
fi
bin=$target_dir/$profile
extra=(--mdp "$bin/mdp" --build "$profile")
if [[ $only != acquire ]]; then
    extra+=(--bare-warp "$bin/examples/bare_warp" --event-latency "$bin/examples/event_latency")
fi

if [[ $only == acquire ]]; then
    :
elif ((smoke)); then
    extra+=(--no-python "smoke mode (run bench/run.sh without --smoke to include it)")
else
    venv=$root/bench/.venv
    python_ok=1
    # uvicorn[standard] (uvloop, httptools): the fastest way to run the Python
    # service, so the ratios are against its best.
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c '
import importlib.metadata as m, sys, uvloop, httptools
sys.exit(m.version("market-data-pipeline") != "0.8.1")' 2>/dev/null; then
        echo "bench: installing market-data-pipeline==0.8.1 + uvicorn[standard] into $venv" >&2
        if ! { "$python" -m venv "$venv" && "$venv/bin/pip" install --quiet \
            --disable-pip-version-check "market-data-pipeline==0.8.1" "uvicorn[standard]"; }; then
            python_ok=0
        fi
    fi
    if ((python_ok)); then
        extra+=(--venv "$venv")
    else
        extra+=(--no-python "pip could not install market-data-pipeline==0.8.1 (see the output above)")
    fi
    if [[ ${BENCH_NO_CRITERION:-0} != 1 ]]; then
        echo "bench: cargo bench --bench hot_paths" >&2
        cargo bench --quiet --bench hot_paths >&2
        extra+=(--criterion-dir "$target_dir/criterion")
    fi
fi

exec "$python" "$root/bench/bench.py" "${extra[@]}" --command "bench/run.sh $*" "$@"
