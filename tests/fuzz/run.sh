#!/usr/bin/env bash
# Builds the fuzz harnesses with clang + libFuzzer + ASan + UBSan in build-fuzz/ (protobuf-c
# compiled instrumented from Debian's source package) and runs each for N seconds, one after
# the other (or --jobs J at a time), printing executions per harness and any crash file. See
# tests/fuzz/README.md.
#   tests/fuzz/run.sh [--seconds N] [--jobs J] [--harness NAME]... [--build-only]
# New inputs go to build-fuzz/fuzz-corpus/NAME (the checked-in corpus is only read); crash,
# leak and timeout inputs to build-fuzz/fuzz-artifacts/NAME/. Exit 1 when any harness found
# something.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=$ROOT/build-fuzz
SECONDS_EACH=30
JOBS=1
HARNESSES=()
BUILD_ONLY=0
ALL=(frame batch registry_csv vote_csv spool http_query)
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --harness) HARNESSES+=("$2"); shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=("${ALL[@]}")
for h in "${HARNESSES[@]}"; do
    [[ " ${ALL[*]} " == *" $h "* ]] || { echo "run.sh: no harness $h (${ALL[*]})" >&2; exit 2; }
done

if ! command -v clang >/dev/null; then
    echo "run.sh: installing clang (libFuzzer comes with Debian's clang)"
    apt-get install -y clang >/dev/null
fi

# protobuf-c from Debian's source package, the version the system library is, unpacked once.
# apt-get source needs a deb-src line: a private sources list and lists directory under
# build-fuzz/apt, so the machine's apt configuration is left alone.
PBC_VERSION=$(dpkg-query -W -f='${source:Version}' libprotobuf-c-dev 2>/dev/null || true)
PBC_SRC=$BUILD/protobuf-c-src
if [ ! -f "$PBC_SRC/protobuf-c/protobuf-c.c" ] && [ -n "$PBC_VERSION" ]; then
    mkdir -p "$BUILD/apt/lists/partial" "$BUILD/apt/dl"
    SUITE=$(. /etc/os-release && echo "$VERSION_CODENAME")
    echo "deb-src http://deb.debian.org/debian $SUITE main" >"$BUILD/apt/sources.list"
    APT=(-o Dir::Etc::SourceList="$BUILD/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o Dir::State::Lists="$BUILD/apt/lists")
    echo "run.sh: apt-get source protobuf-c=$PBC_VERSION"
    if apt-get "${APT[@]}" update >/dev/null 2>&1 &&
        (cd "$BUILD/apt/dl" && apt-get "${APT[@]}" source --download-only \
            "protobuf-c=$PBC_VERSION" >/dev/null 2>&1) &&
        dpkg-source -x "$BUILD/apt/dl"/protobuf-c_*.dsc "$PBC_SRC.tmp" >/dev/null 2>&1; then
        mv "$PBC_SRC.tmp" "$PBC_SRC"
    else
        rm -rf "$PBC_SRC.tmp"
        echo "run.sh: could not get protobuf-c's source; decoding goes through the system" \
             "library, without coverage (see tests/fuzz/README.md)" >&2
    fi
fi
PBC_ARG=()
[ -f "$PBC_SRC/protobuf-c/protobuf-c.c" ] && PBC_ARG=(-DTALLY_FUZZ_PROTOBUF_C_SRC="$PBC_SRC")

mkdir -p "$BUILD"
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DTALLY_SANITIZE=ON -DTALLY_FUZZ=ON "${PBC_ARG[@]}" &&
    cmake --build "$BUILD" -j2 --target $(printf 'fuzz_%s ' "${HARNESSES[@]}"); } \
    >"$BUILD/fuzz-build.log" 2>&1; then
    tail -30 "$BUILD/fuzz-build.log" >&2
    echo "run.sh: build failed (build-fuzz/fuzz-build.log)" >&2
    exit 1
fi
[ "$BUILD_ONLY" = 1 ] && exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/tests/fuzz/ubsan.supp}
# One harness: its run, then one line of figures into its .line file.
fuzz_one() {
    local h=$1 work=$BUILD/fuzz-corpus/$1 art=$BUILD/fuzz-artifacts/$1 log=$BUILD/fuzz-$1.log
    mkdir -p "$work" "$art"
    local rc=0
    "$BUILD/tests/fuzz/fuzz_$h" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -artifact_prefix="$art/" -timeout=10 "$work" "$ROOT/tests/fuzz/corpus/$h" \
        >"$log" 2>&1 || rc=$?
    local execs rate crashes
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    crashes=$(grep -o "Test unit written to [^ ]*" "$log" | sed 's/Test unit written to //' || true)
    if [ "$rc" != 0 ] || [ -n "$crashes" ]; then
        {
            printf '%-14s %12s %10s %s\n' "$h" "${execs:-?}" "${rate:-?}" \
                "FOUND (exit $rc): ${crashes:-see $log}"
            grep -m3 -E "ERROR: |runtime error|invariant broken" "$log" | sed 's/^/    /' || true
        } >"$BUILD/fuzz-$h.line"
        return 1
    fi
    printf '%-14s %12s %10s %s\n' "$h" "${execs:-?}" "${rate:-?}" none >"$BUILD/fuzz-$h.line"
}

found=0
pids=()
for h in "${HARNESSES[@]}"; do
    rm -f "$BUILD/fuzz-$h.line"
    fuzz_one "$h" &
    pids+=($!)
    # At most JOBS at a time: wait for the oldest before starting another.
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        wait "${pids[0]}" || found=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || found=1
done
printf '%-14s %12s %10s %s\n' harness executions exec/s findings
for h in "${HARNESSES[@]}"; do
    cat "$BUILD/fuzz-$h.line" 2>/dev/null || printf '%-14s %12s\n' "$h" "no result"
done
exit $found
