#!/usr/bin/env bash
# One command for the whole benchmark (see BENCHMARKS.md):
#
#   bench/run.sh             full run: the image's static release build, Python
#                            service in a venv, bare warp ceiling, criterion,
#                            cost curves, shared budget (Redis); writes
#                            BENCHMARKS.md at the repository root
#   bench/run.sh --smoke     CI: about a second per target, debug build (the one
#                            `cargo test` already made), no venv, no criterion;
#                            never writes BENCHMARKS.md
#   bench/run.sh --only acquire
#                            only the acquire comparison: one token bucket, the
#                            ibkr rules with counts raised, the real ibkr profile
#                            (release build of mdp alone, no venv, no criterion)
#   --no-static              benchmark a plain `cargo build --release` instead of
#                            the image's build (RUSTFLAGS="-C target-feature=+crt-static"
#                            cargo build --release --locked --target <host triple>, as in
#                            the Dockerfile), the default outside --smoke
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
static=1
prev=
passed=()  # the arguments bench.py gets: all but the ones for this script
for arg in "$@"; do
    [[ $arg == --smoke ]] && smoke=1
    [[ $prev == --only ]] && only=$arg
    [[ $arg == --only=* ]] && only=${arg#--only=}
    prev=$arg
    if [[ $arg == --no-static ]]; then static=0; else passed+=("$arg"); fi
done

# The SSE cost curve holds 1000 streams open, each a descriptor in mdp and in
# the client script.
if (($(ulimit -n) < 4096)); then
    ulimit -n 4096 2>/dev/null || echo "bench: ulimit -n is $(ulimit -n); the 1000-stream curve may fail" >&2
fi

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }

targets=(--bin mdp --example bare_warp --example event_latency)
[[ $only == acquire ]] && targets=(--bin mdp)
if ((smoke)); then
    bin=$target_dir/debug
    build=debug
    cargo build --quiet "${targets[@]}"
elif ((static)); then
    # The image's build (Dockerfile: the host's triple, x86_64-unknown-linux-gnu
    # here): the figures are about the shipped binary.
    triple=$(rustc -vV | sed -n 's/^host: //p')
    bin=$target_dir/$triple/release
    build="release, static: +crt-static, $triple, as the image builds it"
    # The binary alone, as the Dockerfile builds it: built together with the
    # examples it would get their dev-dependencies' features (HTTP/2 and more).
    export RUSTFLAGS="-C target-feature=+crt-static"
    cargo build --release --locked --quiet --target "$triple" --bin mdp
    if [[ $only != acquire ]]; then
        cargo build --release --locked --quiet --target "$triple" --example bare_warp --example event_latency
    fi
    unset RUSTFLAGS
else
    bin=$target_dir/release
    build=release
    cargo build --release --locked --quiet "${targets[@]}"
fi
extra=(--mdp "$bin/mdp" --build "$build")
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

if ((!smoke)) && [[ $only == all ]]; then
    extra+=(--benchmarks-md "$root/BENCHMARKS.md")
fi

exec "$python" "$root/bench/bench.py" "${extra[@]}" --command "bench/run.sh $*" "${passed[@]}"
