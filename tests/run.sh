#!/usr/bin/env bash
# THE test command (README and CI run exactly this).
#
#   tests/run.sh [--quick] [--no-sanitize] [--long] [--help]
#
# 1. Installs the build and test dependencies that are missing (apt-get; root or sudo).
# 2. Builds with -DTALLY_WERROR=ON into build/ and runs ctest (unit + integration tests; the
#    integration tests start a throw-away PostgreSQL in build/pgtest via tests/pg.sh).
# 3. Unless --quick / --no-sanitize: the same with -DTALLY_SANITIZE=ON (ASan + UBSan) in
#    build-asan/, then the integration tests (tallyd's store thread beside its loop) with
#    -DTALLY_TSAN=ON (ThreadSanitizer) in build-tsan/; any race report fails the run.
# 4. Unless --quick: each fuzz harness 10 s under libFuzzer (tests/fuzz/run.sh, build-fuzz/).
# 5. A build with named crash points (-DTALLY_CRASH_POINTS=ON, build-crashpoints/): tallyd
#    SIGKILLed 6 times at each of them under load, nothing lost or counted twice.
# --long also registers the long soak tests (-DTALLY_LONG_TESTS=ON).
# Exits non-zero on any failure; ctest finding no test at all is a failure too. PostgreSQL
# servers it started are stopped on every exit.
# BUILD_DIR / ASAN_BUILD_DIR / TSAN_BUILD_DIR / CRASH_BUILD_DIR override the build directories.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

sanitize=1
long=OFF
for arg in "$@"; do
    case $arg in
    --quick | --no-sanitize) sanitize=0 ;;
    --long) long=ON ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown option '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done

BUILD_DIR=${BUILD_DIR:-$ROOT/build}
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-$ROOT/build-asan}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-$ROOT/build-tsan}
CRASH_BUILD_DIR=${CRASH_BUILD_DIR:-$ROOT/build-crashpoints}
JOBS=$(nproc 2>/dev/null || echo 2)

log() { printf '\n==== run.sh: %s\n' "$*"; }

# ---- stop our PostgreSQL servers whatever happens --------------------------------------
stop_pg() {
    local d
    # The fixture servers, and the primary/replica pair test_pgfailover runs on its own.
    for d in "$BUILD_DIR/pgtest" "$ASAN_BUILD_DIR/pgtest" "$TSAN_BUILD_DIR/pgtest" \
        "$BUILD_DIR"/itest/pgfailover/{primary,replica} \
        "$ASAN_BUILD_DIR"/itest/pgfailover/{primary,replica} \
        "$TSAN_BUILD_DIR"/itest/pgfailover/{primary,replica}; do
        if [ -f "$d/port" ]; then
            bash "$ROOT/tests/pg.sh" stop "$d" >/dev/null 2>&1 || true
        fi
    done
}
trap stop_pg EXIT
trap 'exit 130' INT TERM

# ---- dependencies ------------------------------------------------------------------------
PACKAGES=(build-essential cmake pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
    libpq-dev postgresql libcmocka-dev libsodium-dev libsystemd-dev libssl-dev libjson-c-dev
    openssl valgrind zlib1g-dev
    dpkg-dev clang
    nginx curl)

# The browser test (tests/browser): Debian's Chromium, and Node.js with npm when there is no
# node yet (this machine kind ships Node 20; Debian 12's own nodejs is 18, older than
# playwright-core wants), then playwright-core from npm, pinned by package-lock.json.
BROWSER_PACKAGES=()
[ -x /usr/bin/chromium ] || BROWSER_PACKAGES+=(chromium)
command -v node >/dev/null || BROWSER_PACKAGES+=(nodejs)
command -v npm >/dev/null || BROWSER_PACKAGES+=(npm)

bash "$ROOT/deploy/install-deps.sh" "${PACKAGES[@]}" "${BROWSER_PACKAGES[@]}"

# npm ci only when node_modules does not hold the locked version: a rerun works offline.
# If it fails (no registry), the browser test is not registered and the rest still runs.
browser_note=
browser_dir=$ROOT/tests/browser
if [ -f "$browser_dir/package-lock.json" ]; then
    want=$(node -p "require('$browser_dir/package-lock.json').packages['node_modules/playwright-core'].version")
    have=$(node -p "require('$browser_dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        log "npm ci in tests/browser (playwright-core $want)"
        if ! (cd "$browser_dir" && npm ci --no-audit --no-fund); then
            browser_note="browser test NOT run: 'npm ci' in tests/browser failed (is the npm registry reachable?)"
            echo "run.sh: $browser_note" >&2
        fi
    fi
fi

# promtool for test_metrics: only the binary, out of Debian's prometheus package (installing
# the package would enable a Prometheus server). Without it test_metrics is not registered.
promtool_note=
if promtool=$(bash "$ROOT/tests/tools/promtool.sh" "$ROOT/build-tools"); then
    PROMTOOL_ARG=(-DTALLY_PROMTOOL="$promtool")
else
    PROMTOOL_ARG=()
    promtool_note="test_metrics NOT run: no promtool (see tests/tools/promtool.sh)"
    echo "run.sh: $promtool_note" >&2
fi

# ---- build and test ------------------------------------------------------------------------
declare -a summary=()

run_stage() {
    local name=$1 dir=$2 select=$3
    shift 3
    local t0=$SECONDS
    log "$name: configure ($dir)"
    cmake -S "$ROOT" -B "$dir" -DTALLY_WERROR=ON -DTALLY_LONG_TESTS=$long "${PROMTOOL_ARG[@]}" "$@"
    log "$name: build"
    # shellcheck disable=SC2086 # STAGE_TARGETS is a list of --target options (empty: all)
    cmake --build "$dir" -j"$JOBS" ${STAGE_TARGETS:-}
    log "$name: test"
    # Unit tests run two at a time; integration tests are RUN_SERIAL.
    local rc=0
    # shellcheck disable=SC2086 # select is a list of ctest options
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$JOBS" $select || rc=$?
    summary+=("$name: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s")
    return $rc
}

status=0
# The resource limits run over plain TCP in the sanitizer build below and over TLS here.
run_stage "default build" "$BUILD_DIR" "-E ^test_limits$" || status=1
if [ $status -eq 0 ] && [ $sanitize -eq 1 ]; then
    # Not the benchmark smoke, the held COMMIT or the limits again over TLS: each ran clean
    # under ASan and UBSan by hand, their code paths run here in the other tests, and their
    # minute is what keeps the whole command under 15 minutes. Nor the dashboard in the
    # browser or nginx in front (what they test is the page and the proxy's configuration;
    # tallyd's HTTP side runs under ASan in unit_http, test_http_api and test_http_cache),
    # nor the chaos smoke, the PostgreSQL primary/replica switch and the second tallyd
    # (writer and standby): what they add is processes killed, stopped and racing for the
    # writer lock, whose tallyd code paths (recovery, reconnection, the lock at start) run here
    # in test_crash, test_recovery, test_pg_outage and every other test; the default build
    # runs all four.
    run_stage "sanitizer build" "$ASAN_BUILD_DIR" \
        "-E bench_smoke|held_commit|test_limits_tls|browser_dashboard|nginx_proxy|chaos_smoke|test_pgfailover|test_writer|test_failover" \
        -DTALLY_SANITIZE=ON || status=1
fi
if [ $status -eq 0 ] && [ $sanitize -eq 1 ]; then
    # Reports go to files: a race in a child that is killed on purpose still shows.
    tsan_logs=$TSAN_BUILD_DIR/tsan-reports
    rm -rf "$tsan_logs" && mkdir -p "$tsan_logs"
    export TSAN_OPTIONS="log_path=$tsan_logs/report second_deadlock_stack=1"
    # Not the chaos smoke, the limits tests or the held COMMIT: their tallyd threads are
    # those of the other integration tests (each ran clean under TSan by hand), and their two
    # minutes are what keeps the whole command well under 15 minutes. Nor the tests whose
    # programs have one thread (tallyctl's commands, tally-gen, tally-push's receipts and
    # sheets, tallyctl verify) or whose tallyd side the requests and receipts tests run too,
    # nor the malformed frames (one connection's parser on the loop thread), nor the
    # PostgreSQL primary/replica switch or mutual TLS (the store thread's reconnection runs
    # in test_pg_outage here, the TLS handshakes on the loop thread alone), nor the second
    # tallyd, writer or standby (separate processes; each one's threads are those of the
    # other tests).
    run_stage "thread sanitizer build" "$TSAN_BUILD_DIR" \
        "-L integration -LE long -E browser|bench|chaos|test_limits|held_commit|consult_cmds|gen_tables|verify_receipts|sheets_push|test_tables|embargo|test_malformed|test_verify$|test_pgfailover|test_mtls|nginx|test_writer|test_failover" \
        -DTALLY_TSAN=ON || status=1
    unset TSAN_OPTIONS
    if compgen -G "$tsan_logs/report*" >/dev/null; then
        echo "run.sh: ThreadSanitizer reports in $tsan_logs:" >&2
        head -n 40 "$tsan_logs"/report* >&2
        summary+=("thread sanitizer: RACES REPORTED (see $tsan_logs)")
        status=1
    fi
fi

if [ $status -eq 0 ] && [ $sanitize -eq 1 ]; then
    # libFuzzer (clang, ASan, UBSan, protobuf-c instrumented): every harness 10 s, two at a
    # time, a smoke on each run (the corpora are replayed by ctest in every build as well;
    # tests/fuzz/run.sh --seconds N for a real campaign).
    t0=$SECONDS
    log "fuzzing: tests/fuzz/run.sh --seconds 10 --jobs 2"
    rc=0
    bash "$ROOT/tests/fuzz/run.sh" --seconds 10 --jobs 2 || rc=$?
    summary+=("fuzzing: $([ $rc -eq 0 ] && echo "no finding" || echo "FINDINGS (build-fuzz/)") in $((SECONDS - t0)) s")
    [ $rc -eq 0 ] || status=1
fi
if [ $status -eq 0 ]; then
    # Named crash points (tallyd killed at each one, 6 times; 100 with --long) exist only in a
    # build of their own: only what the test runs is built.
    STAGE_TARGETS="--target tallyd tallyctl tally-push tally-gen test_crashpoints" \
        run_stage "crash-points build" "$CRASH_BUILD_DIR" "-R ^(test|soak)_crashpoints$" \
        -DTALLY_CRASH_POINTS=ON || status=1
fi

log "summary"
for line in "${summary[@]}"; do
    echo "  $line"
done
if [ -n "$browser_note" ]; then
    echo "  $browser_note"
fi
if [ -n "$promtool_note" ]; then
    echo "  $promtool_note"
fi
if [ $status -ne 0 ]; then
    echo "run.sh: FAILED" >&2
    exit 1
fi
echo "run.sh: all tests passed"
