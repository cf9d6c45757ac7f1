#!/usr/bin/env bash
# The chaos harness from a fresh clone (tests/chaos/README.md):
#
#   tests/chaos/run.sh [--nemesis LIST] [--cycles N] [--seed S] [--long] [CHAOS OPTIONS...]
#
# Installs the build dependencies that are missing (deploy/install-deps.sh, as tests/run.sh
# does), builds tallyd, tallyctl, tally-push and the harness into build-chaos/ (CHAOS_BUILD_DIR
# overrides; CHAOS_CMAKE_ARGS adds e.g. -DTALLY_SANITIZE=ON), starts a throw-away PostgreSQL in
# build-chaos/chaos-pg (tests/pg.sh, as user postgres when root), runs one harness run and
# stops PostgreSQL again, whatever happens.
# Defaults: --nemesis all --cycles 30, a random seed (printed: the same seed replays the same
# data and nemesis schedule). --long: longer faults (PostgreSQL down 10-60 s, pauses and
# partitions of 5-20 s) and, unless --cycles is given, 1000 cycles.
# Other options go to the harness as they are (--collectors, --rate, --projects, --batch,
# --gap-ms; see `chaos --help`). Exit status: the harness's (0 clean, 1 lost / duplicated /
# unexpected votes or a hang, 2 setup error).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)
BUILD_DIR=${CHAOS_BUILD_DIR:-$ROOT/build-chaos}

nemesis=all
cycles=
seed=
long=0
pass=()
while [ $# -gt 0 ]; do
    case $1 in
    --nemesis) nemesis=$2; shift 2 ;;
    --nemesis=*) nemesis=${1#*=}; shift ;;
    --cycles) cycles=$2; shift 2 ;;
    --cycles=*) cycles=${1#*=}; shift ;;
    --seed) seed=$2; shift 2 ;;
    --seed=*) seed=${1#*=}; shift ;;
    --long) long=1; shift ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) pass+=("$1"); shift ;;
    esac
done
[ -n "$cycles" ] || cycles=$([ $long -eq 1 ] && echo 1000 || echo 30)
[ -n "$seed" ] || seed=$(( (RANDOM << 15 | RANDOM) ))
long_arg=()
[ $long -eq 1 ] && long_arg=(--long)

# The same packages as tests/run.sh's build and test step (no browser, no promtool).
bash "$ROOT/deploy/install-deps.sh" build-essential cmake pkg-config libevent-dev \
    libprotobuf-c-dev protobuf-c-compiler libpq-dev postgresql libcmocka-dev libsodium-dev \
    libsystemd-dev libssl-dev libjson-c-dev openssl

# shellcheck disable=SC2086 # CHAOS_CMAKE_ARGS is a list of options
cmake -S "$ROOT" -B "$BUILD_DIR" -DTALLY_WERROR=ON ${CHAOS_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j2 --target tallyd tallyctl tally-push chaos

PG_DIR=$BUILD_DIR/chaos-pg
trap 'bash "$ROOT/tests/pg.sh" stop "$PG_DIR" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
bash "$ROOT/tests/pg.sh" start "$PG_DIR"

export TALLY_BIN_DIR=$BUILD_DIR TALLY_SRC_DIR=$ROOT TALLY_PG_DIR=$PG_DIR
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
echo "chaos: run.sh --nemesis $nemesis --cycles $cycles --seed $seed${long_arg[*]:+ --long}"
rc=0
"$BUILD_DIR/tests/chaos/chaos" --nemesis "$nemesis" --cycles "$cycles" --seed "$seed" \
    "${long_arg[@]}" "${pass[@]}" || rc=$?
[ $rc -eq 0 ] || echo "chaos: FAILED (exit $rc); scratch files in $BUILD_DIR/itest/chaos" >&2
exit $rc
