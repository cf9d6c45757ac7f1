#!/usr/bin/env bash
# The benchmark comparison in one command (bench/README.md says how to read it).
#
#   bench/run.sh [--json FILE] [TALLY-BENCH-OPTION]... [-h|--help]
#
# 1. Installs what is missing (deploy/install-deps.sh; root or sudo): the packages tests/run.sh
#    lists to build tallyd, and Debian's redis-server, so that no peer is left out.
# 2. Builds Release into build-bench/ (BENCH_BUILD_DIR overrides it; JOBS, default nproc).
# 3. Runs build-bench/bench/tally-bench --peers all with the default comparison (80 M votes,
#    3 tallyd rounds, every other system >= 10 s; about 3.5 GB of memory and 3 minutes): the
#    table on stdout, progress on stderr, the figures as JSON in FILE (default:
#    build-bench/tally-bench-<UTC time>.json, named at the end).
# Other options go to tally-bench unchanged and after '--peers all', so that they win: e.g.
# --votes 4000000 for a quick look (build-bench/bench/tally-bench --help lists them all).
# Run it on a quiet machine: the ratios of one run are what counts. Exits with tally-bench's
# status (0: every system counted exactly).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

json=
args=()
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    --json)
        [ $# -ge 2 ] || {
            echo "run.sh: --json needs a FILE (see --help)" >&2
            exit 2
        }
        json=$2
        shift 2
        ;;
    --json=*)
        json=${1#--json=}
        shift
        ;;
    *)
        args+=("$1")
        shift
        ;;
    esac
done

BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
[ -n "$json" ] || json=$BUILD_DIR/tally-bench-$(date -u +%Y%m%dT%H%M%SZ).json

log() { printf '\n==== bench/run.sh: %s\n' "$*" >&2; }

# ---- dependencies: tallyd's build packages (as tests/run.sh lists them; the test-only ones,
# cmocka, dpkg-dev and prometheus, are not needed here) and the Redis peer's server --------
PACKAGES=(build-essential cmake pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
    libpq-dev postgresql libsodium-dev libsystemd-dev libssl-dev libjson-c-dev redis-server)
log "dependencies"
bash "$ROOT/deploy/install-deps.sh" "${PACKAGES[@]}" >&2

# ---- build ---------------------------------------------------------------------------------
log "Release build in $BUILD_DIR"
# stdout is the table's: the build talks on stderr.
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$JOBS" --target tally-bench tallyd tallyctl >&2

# ---- the comparison --------------------------------------------------------------------------
mkdir -p "$(dirname "$json")"
log "tally-bench --peers all ${args[*]} (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
rc=0
"$BUILD_DIR/bench/tally-bench" --peers all "${args[@]}" --json "$json" || rc=$?
if [ -s "$json" ]; then
    echo "bench/run.sh: figures in $json" >&2
fi
exit $rc
