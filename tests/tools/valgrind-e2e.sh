#!/usr/bin/env bash
# One end-to-end run with tallyd (and one tally-push) under valgrind memcheck: a throw-away
# PostgreSQL, a small consultation over mutual TLS, two collectors, a SIGTERM with the final
# checkpoint, results against the generator's truth, then the record verified. Fails on any
# memcheck error (invalid reads or writes, uses of uninitialised values, definite leaks).
#
#   tests/tools/valgrind-e2e.sh BUILD_DIR [WORK_DIR]
#
# Slow (tallyd runs ~30x slower under memcheck): part of the long suite (tests/run.sh --long).
set -euo pipefail

BUILD=$(cd "${1:?usage: valgrind-e2e.sh BUILD_DIR [WORK_DIR]}" && pwd)
WORK=${2:-$BUILD/valgrind-e2e}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
command -v valgrind >/dev/null || {
    echo "valgrind-e2e: valgrind is not installed (apt-get install valgrind): skipped"
    exit 77
}
TALLYD=$BUILD/tallyd
CTL=$BUILD/src/ctl/tallyctl
PUSH=$BUILD/src/push/tally-push
GEN=$BUILD/src/gen/tally-gen

rm -rf "$WORK"
mkdir -p "$WORK"
PG=$WORK/pg
tallyd_pid=
cleanup() {
    [ -n "$tallyd_pid" ] && kill -KILL "$tallyd_pid" 2>/dev/null || true
    bash "$ROOT/tests/pg.sh" stop "$PG" >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash "$ROOT/tests/pg.sh" start "$PG" >/dev/null
BASE=$(cat "$PG/conninfo")
psql -X -q "$BASE" -c 'CREATE DATABASE vg' >/dev/null
DB="${BASE% dbname=*} dbname=vg"
"$CTL" --db "$DB" migrate >/dev/null
"$GEN" registry --out "$WORK/registry.csv" --projects 600 --circuits 80 --seed 7 2>/dev/null
"$GEN" votes --registry "$WORK/registry.csv" --collectors 2 --votes 20000 --out-dir "$WORK/votes" \
    --seed 7 --quiet
"$CTL" --db "$DB" load-registry "$WORK/registry.csv" >/dev/null
"$CTL" ca init "$WORK/ca" >/dev/null
for i in 0 1; do
    "$CTL" ca issue "$WORK/ca" "c$i" >/dev/null
    "$CTL" --db "$DB" add-collector "c$i" --cert "$WORK/ca/c$i.crt" >/dev/null
done

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
LISTEN=17491
HTTP=17492
while ! port_free $LISTEN || ! port_free $HTTP; do
    LISTEN=$((LISTEN + 2))
    HTTP=$((HTTP + 2))
done
VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --track-origins=yes --trace-children=no)
"${VG[@]}" --log-file="$WORK/tallyd.vg" "$TALLYD" --db "$DB" --listen "127.0.0.1:$LISTEN" \
    --http "127.0.0.1:$HTTP" --tls-cert "$WORK/ca/server.crt" --tls-key "$WORK/ca/server.key" \
    --tls-ca "$WORK/ca/ca.crt" --checkpoint-ms 100 >"$WORK/tallyd.log" 2>&1 &
tallyd_pid=$!
ready=0
for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$HTTP") 2>/dev/null; then
        exec 3<>"/dev/tcp/127.0.0.1/$HTTP"
        printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
        line=$(head -n 1 <&3 || true)
        exec 3<&-
        case $line in *" 200 "*) ready=1 && break ;; esac
    fi
    kill -0 "$tallyd_pid" 2>/dev/null || break
    sleep 0.2
done
[ $ready -eq 1 ] || { tail -20 "$WORK/tallyd.log"; echo "valgrind-e2e: tallyd not ready"; exit 1; }

push() { # i [valgrind...]
    local i=$1
    shift
    "$@" "$PUSH" --server "127.0.0.1:$LISTEN" --collector "c$i" --spool "$WORK/spool-c$i" \
        --tls-cert "$WORK/ca/c$i.crt" --tls-key "$WORK/ca/c$i.key" --tls-ca "$WORK/ca/ca.crt" \
        --batch 1000 --quiet "$WORK/votes/collector-$i.csv" >"$WORK/push-c$i.out" 2>"$WORK/push-c$i.err"
}
rc0=0 rc1=0
push 0 "${VG[@]}" --log-file="$WORK/push-c0.vg" || rc0=$?
push 1 || rc1=$?
kill -TERM "$tallyd_pid"
rc=0
wait "$tallyd_pid" || rc=$?
tallyd_pid=
echo "valgrind-e2e: tally-push (memcheck) exit $rc0, tally-push exit $rc1, tallyd (memcheck) exit $rc"
grep -h "ERROR SUMMARY" "$WORK/tallyd.vg" "$WORK/push-c0.vg" | sed 's/^/  /'
"$CTL" --db "$DB" results --format csv >"$WORK/results.csv"
same=0
cmp -s "$WORK/results.csv" "$WORK/votes/truth.csv" && same=1
"$CTL" --db "$DB" verify >/dev/null && verified=1 || verified=0
echo "valgrind-e2e: results equal the truth: $([ $same -eq 1 ] && echo yes || echo NO); verify: $([ $verified -eq 1 ] && echo passes || echo FAILS)"
[ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] && [ $rc -eq 0 ] && [ $same -eq 1 ] && [ $verified -eq 1 ] || {
    tail -30 "$WORK/tallyd.vg"
    exit 1
}
