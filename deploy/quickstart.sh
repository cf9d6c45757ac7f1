#!/usr/bin/env bash
# THE run command: a whole sample consultation on this machine, end to end.
#
#   deploy/quickstart.sh [--votes N] [--collectors K] [--keep-running] [--help]
#   deploy/quickstart.sh --stop
#
# Installs what is missing, builds (Release, build-release/), starts a PostgreSQL of its own in
# var/pg (tests/pg.sh: 127.0.0.1 only, run as user postgres when root), recreates the database
# `tally`, generates a consultation shaped like Venezuela's (25 areas: 23 states, Distrito
# Capital, Dependencias Federales; ~4,500 circuits; ~30,000 projects; 1-2 seats per circuit;
# 9,000 voting tables with their electors, 30 % of them reporting by tally sheet), loads it
# (registry and tables), makes a private CA (var/ca) with a certificate per collector pinned to its id,
# starts tallyd (log: var/tallyd.log) with mutual TLS on the collector port, connected as a
# login of role tally_writer rather than the owner, runs K tally-push collectors in parallel
# (default 4 collectors, 3,000,000 votes in all) while it prints the dashboard's URL and the
# progress, then pushes the tally sheets (one corrected by a version 2, one sent twice), and
# prints totals, checkpoints, a check against the generator's exact truth, the tables
# reported, turnout and the correction (/v1/summary, /v1/corrections), the winners of a few
# circuits and the audit of the record (tallyctl verify).
# At the end tallyd is stopped with SIGTERM (final checkpoint) and PostgreSQL is stopped too.
# --keep-running leaves both running (tallyd in a session of its own: it outlives this script
# and the terminal) and prints the dashboard URL, the collector port, the database conninfo,
# tallyd's log and how to stop them; tallyd's pid and ports are kept in var/quickstart.state.
# --stop stops what a --keep-running run left (tallyd with SIGTERM, then the PostgreSQL in
# var/pg); it says so when nothing is running, and running it twice is harmless.
# Safe to run again: each run starts from a fresh `tally` database, and first stops (saying
# so) a tallyd that an earlier --keep-running left running.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

VOTES=3000000
COLLECTORS=4
KEEP=0
STOP=0
nargs=$#
while [ $# -gt 0 ]; do
    case $1 in
    --votes)
        VOTES=${2:?--votes needs a number}
        shift
        ;;
    --collectors)
        COLLECTORS=${2:?--collectors needs a number}
        shift
        ;;
    --keep-running) KEEP=1 ;;
    --stop) STOP=1 ;;
    -h | --help)
        # The comment block at the top, up to its first line that is not a comment.
        awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
        exit 0
        ;;
    *)
        echo "quickstart: unknown option '$1' (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done
if [ $STOP -eq 1 ] && [ "$nargs" -ne 1 ]; then
    echo "quickstart: --stop takes no other option" >&2
    exit 2
fi
case "$VOTES$COLLECTORS" in *[!0-9]*)
    echo "quickstart: --votes and --collectors take whole numbers" >&2
    exit 2
    ;;
esac
[ "$COLLECTORS" -ge 1 ] && [ "$COLLECTORS" -le 64 ] || {
    echo "quickstart: --collectors must be 1..64" >&2
    exit 2
}

BUILD=$ROOT/build-release
VAR=$ROOT/var
PG_DIR=$VAR/pg
DATA=$VAR/data
SPOOLS=$VAR/spool
LOG=$VAR/tallyd.log
# The tallyd this script started, for --stop and the next run: key=value lines.
STATE=$VAR/quickstart.state
T0=$SECONDS

step() { printf '\n[%4ds] == %s\n' $((SECONDS - T0)) "$*"; }
info() { printf '         %s\n' "$*"; }

state_get() { sed -n "s/^$1=//p" "$STATE" 2>/dev/null | head -n 1; }

# True while pid is the tallyd serving HTTP on addr: the pid may have been reused since the
# state file was written (and a zombie's command line is empty).
is_our_tallyd() { # pid addr
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = tallyd ] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--http $2 "
}

# Stops the tallyd the state file names (SIGTERM: it writes its final checkpoint; SIGKILL
# after 30 s) and removes the file. Returns 1 when there is no state file.
stop_kept_tallyd() {
    [ -f "$STATE" ] || return 1
    local pid addr log
    pid=$(state_get tallyd_pid)
    addr=$(state_get http)
    log=$(state_get log)
    if is_our_tallyd "$pid" "$addr"; then
        info "stopping tallyd (pid $pid, dashboard http://$addr/): SIGTERM, final checkpoint"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            is_our_tallyd "$pid" "$addr" || break
            sleep 0.1
        done
        if is_our_tallyd "$pid" "$addr"; then
            kill -KILL "$pid" 2>/dev/null || true
            info "tallyd did not stop within 30 s: killed (log: $log)"
        else
            info "tallyd stopped; its log ends: $(tail -n 1 "$log" 2>/dev/null | cut -c26-)"
        fi
    else
        info "tallyd (pid ${pid:-?}) was not running any more"
    fi
    rm -f "$STATE"
}

pg_is_running() {
    [ -f "$PG_DIR/port" ] && bash "$ROOT/tests/pg.sh" status "$PG_DIR" >/dev/null 2>&1
}

# ---- --stop: what a --keep-running run left ------------------------------------------------
if [ $STOP -eq 1 ]; then
    stopped=0
    if [ -f "$STATE" ]; then
        stop_kept_tallyd
        stopped=1
    fi
    if pg_is_running; then
        bash "$ROOT/tests/pg.sh" stop "$PG_DIR" | sed 's/^/         /'
        stopped=1
    fi
    if [ $stopped -eq 0 ]; then
        echo "quickstart: nothing to stop: no tallyd left running (no $STATE)" \
            "and no PostgreSQL running in $PG_DIR"
    else
        echo "quickstart: stopped; nothing of the quickstart runs now (its data stays in $VAR)"
    fi
    exit 0
fi

tallyd_pid=
push_pids=()
cleanup() {
    local rc=$?
    local p
    for p in "${push_pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    if [ $KEEP -eq 0 ] || [ $rc -ne 0 ]; then
        if [ -n "$tallyd_pid" ]; then
            if kill -0 "$tallyd_pid" 2>/dev/null; then
                kill -TERM "$tallyd_pid" 2>/dev/null || true
                for _ in $(seq 1 100); do
                    kill -0 "$tallyd_pid" 2>/dev/null || break
                    sleep 0.1
                done
                kill -KILL "$tallyd_pid" 2>/dev/null || true
            fi
            rm -f "$STATE"
        fi
        if [ -f "$PG_DIR/port" ]; then
            bash "$ROOT/tests/pg.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
        fi
    fi
    if [ $rc -ne 0 ]; then
        echo "quickstart: FAILED (exit $rc); logs in $VAR" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. dependencies and build -----------------------------------------------------------
step "dependencies"
bash "$ROOT/deploy/install-deps.sh" build-essential cmake pkg-config libevent-dev \
    libprotobuf-c-dev protobuf-c-compiler libpq-dev postgresql libsodium-dev libsystemd-dev \
    libssl-dev libjson-c-dev curl jq
info "all present"

step "build (Release) in build-release/"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$BUILD/quickstart-configure.log" 2>&1 || {
    cat "$BUILD/quickstart-configure.log" >&2
    exit 1
}
cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" --target tallyd tallyctl tally-push \
    tally-gen >"$BUILD/quickstart-build.log" 2>&1 || {
    tail -n 40 "$BUILD/quickstart-build.log" >&2
    exit 1
}
find_bin() {
    local f
    for f in "$BUILD/$1" "$BUILD/src/$2/$1"; do
        if [ -x "$f" ]; then
            echo "$f"
            return 0
        fi
    done
    echo "quickstart: $1 not found in $BUILD" >&2
    exit 1
}
TALLYD=$(find_bin tallyd .)
TALLYCTL=$(find_bin tallyctl ctl)
PUSH=$(find_bin tally-push push)
GEN=$(find_bin tally-gen gen)
info "tallyd, tallyctl, tally-push, tally-gen built"

# ---- 2. PostgreSQL and the database ----------------------------------------------------------
step "PostgreSQL in var/pg"
mkdir -p "$VAR"
# A tallyd left by an earlier --keep-running holds the database and the ports.
if [ -f "$STATE" ]; then
    info "an earlier --keep-running left tallyd running: stopping it first (a fresh start)"
    stop_kept_tallyd
fi
bash "$ROOT/tests/pg.sh" start "$PG_DIR" | sed 's/^/         /'
BASE=$(cat "$PG_DIR/conninfo")
DB="${BASE% dbname=*} dbname=tally"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$BASE" -v ON_ERROR_STOP=1 \
    -c 'DROP DATABASE IF EXISTS tally WITH (FORCE)' \
    -c 'CREATE DATABASE tally' >/dev/null
info "fresh database: $DB"
"$TALLYCTL" --db "$DB" migrate | sed 's/^/         /'

# ---- 3. a sample consultation --------------------------------------------------------------------
step "generating the consultation (registry, tables, $VOTES votes for $COLLECTORS collectors, tally sheets)"
rm -rf "$DATA" "$SPOOLS"
mkdir -p "$DATA" "$SPOOLS"
"$GEN" registry --out "$DATA/registry.csv" --seed 2024
# Two tables per circuit (9,000), 30 % reporting by tally sheet, the rest ballot by ballot at
# a turnout of 40-80 %: electors per table sized so that those tables hold the --votes.
ELECTORS_PER_TABLE=$((VOTES / 3400 + 20))
"$GEN" tables --registry "$DATA/registry.csv" --out "$DATA/tables.csv" --tables-per-circuit 2 \
    --electors-per-table "$ELECTORS_PER_TABLE" --seed 2024
"$GEN" votes --registry "$DATA/registry.csv" --collectors "$COLLECTORS" --votes "$VOTES" \
    --out-dir "$DATA/votes" --tables "$DATA/tables.csv" --sheet-share 0.3 --corrections 1 \
    --seed 2024
"$TALLYCTL" --db "$DB" load-registry "$DATA/registry.csv" | sed 's/^/         /'
# Tables are read by tallyd at start, like the registry: load them before it starts.
"$TALLYCTL" --db "$DB" load-tables "$DATA/tables.csv" | sed 's/^/         /'
# Mutual TLS on the collector port: a private CA (var/ca: ca.crt, tallyd's server.crt/key),
# one certificate per collector, each pinned to its collector id.
CA=$VAR/ca
rm -rf "$CA"
"$TALLYCTL" ca init "$CA" >/dev/null
ids=()
for i in $(seq 1 "$COLLECTORS"); do
    id=$(printf 'region-%02d' "$i")
    ids+=("$id")
    "$TALLYCTL" ca issue "$CA" "$id" >/dev/null
    "$TALLYCTL" --db "$DB" add-collector "$id" --cert "$CA/$id.crt" >/dev/null
done
info "collectors registered, each with its own certificate (var/ca/<id>.crt): ${ids[*]}"
# tallyd writes as a login of role tally_writer (made by migrate), not as the owner.
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$BASE" -v ON_ERROR_STOP=1 \
    -c "DO \$\$ BEGIN CREATE ROLE tallyd_quickstart LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" \
    -c 'GRANT tally_writer TO tallyd_quickstart' >/dev/null
DB_WRITER="${DB% user=*} user=tallyd_quickstart dbname=tally"
info "tallyd connects as tallyd_quickstart (member of tally_writer: no DDL, no other tables)"
# One secret for all collectors, so a voter is the same token whichever collector sends it.
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$VAR/ballot.key"
chmod 600 "$VAR/ballot.key"

# ---- 4. tallyd ---------------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
LISTEN_PORT=$(pick_port "${TALLYD_PORT:-7400}")
HTTP_PORT=$(pick_port "${TALLYD_HTTP_PORT:-7480}")
[ "$HTTP_PORT" != "$LISTEN_PORT" ] || HTTP_PORT=$(pick_port $((LISTEN_PORT + 1)))
step "starting tallyd on 127.0.0.1:$LISTEN_PORT (mutual TLS; HTTP 127.0.0.1:$HTTP_PORT), log var/tallyd.log"
# In a session of its own, without a terminal or this script's pipes: with --keep-running it
# outlives the script and the terminal. The subshell is no process group leader, so setsid
# execs tallyd in place and $! is tallyd's pid.
(exec setsid "$TALLYD" --db "$DB_WRITER" --listen "127.0.0.1:$LISTEN_PORT" \
    --tls-cert "$CA/server.crt" --tls-key "$CA/server.key" --tls-ca "$CA/ca.crt" \
    --http "127.0.0.1:$HTTP_PORT" --checkpoint-ms 200 --expected-ballots "$VOTES" \
    </dev/null >"$LOG" 2>&1) &
tallyd_pid=$!
{
    echo "# deploy/quickstart.sh: the tallyd it started (read by deploy/quickstart.sh --stop)"
    echo "tallyd_pid=$tallyd_pid"
    echo "http=127.0.0.1:$HTTP_PORT"
    echo "listen=127.0.0.1:$LISTEN_PORT"
    echo "db=$DB"
    echo "log=$LOG"
    echo "pg_dir=$PG_DIR"
} >"$STATE"

http_status() {
    local line
    exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
    IFS= read -r -t 5 line <&3 || true
    exec 3<&-
    echo "$line" | awk '{print $2}'
}
ready=0
for _ in $(seq 1 300); do
    kill -0 "$tallyd_pid" 2>/dev/null || break
    if [ "$(http_status /readyz 2>/dev/null)" = 200 ]; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ $ready -ne 1 ]; then
    tail -n 20 "$VAR/tallyd.log" >&2
    echo "quickstart: tallyd did not become ready" >&2
    exit 1
fi
info "ready (GET /readyz = 200)"

# ---- 5. the collectors ------------------------------------------------------------------------------
step "pushing: $COLLECTORS tally-push collectors in parallel"
info "watch it live: http://127.0.0.1:$HTTP_PORT/ (the dashboard; /v1/summary, /metrics)"
for i in $(seq 1 "$COLLECTORS"); do
    id=${ids[$((i - 1))]}
    "$PUSH" --server "127.0.0.1:$LISTEN_PORT" --collector "$id" --spool "$SPOOLS/$id" \
        --tls-cert "$CA/$id.crt" --tls-key "$CA/$id.key" --tls-ca "$CA/ca.crt" \
        --ballot-key "$VAR/ballot.key" --batch 10000 --quiet "$DATA/votes/collector-$((i - 1)).csv" \
        >"$VAR/push-$id.out" 2>"$VAR/push-$id.log" &
    push_pids+=($!)
done
t_push=$SECONDS
while :; do
    alive=0
    for p in "${push_pids[@]}"; do
        kill -0 "$p" 2>/dev/null && alive=$((alive + 1))
    done
    durable=$(psql -X -At "$DB" -c 'SELECT coalesce(sum(votes), 0) FROM collectors' 2>/dev/null || echo '?')
    el=$((SECONDS - t_push))
    rate=
    if [ "$el" -gt 0 ] && [ "$durable" != '?' ]; then
        rate=", $((durable / el)) votes/s"
    fi
    info "$(printf '%8ss: %s of %s votes durable in PostgreSQL, %d collectors running%s' \
        "$el" "$durable" "$VOTES" "$alive" "$rate")"
    [ $alive -eq 0 ] && break
    if ! kill -0 "$tallyd_pid" 2>/dev/null; then
        echo "quickstart: tallyd died; see var/tallyd.log" >&2
        exit 1
    fi
    # The next line in 2 s, or as soon as the last collector is done.
    for _ in $(seq 1 20); do
        sleep 0.1
        any=0
        for p in "${push_pids[@]}"; do
            if kill -0 "$p" 2>/dev/null; then
                any=1
                break
            fi
        done
        [ $any -eq 1 ] || break
    done
done
failed=0
for i in "${!push_pids[@]}"; do
    rc=0
    wait "${push_pids[$i]}" || rc=$?
    id=${ids[$i]}
    if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
        echo "quickstart: tally-push $id exited $rc:" >&2
        tail -n 5 "$VAR/push-$id.log" >&2
        failed=1
    fi
    info "$id: $(cat "$VAR/push-$id.out") (exit $rc)"
done
push_pids=()
[ $failed -eq 0 ] || exit 1
push_secs=$((SECONDS - t_push))

# ---- 5b. the tally sheets -------------------------------------------------------------------------
# Tables that count their ballots by hand send a tally sheet (acta) instead of votes:
# sheets.csv holds every sheet and, after them, a version 2 correcting one; sheets-dup.csv
# is one of those sheets again, as a second copy of an acta arriving from another collector.
step "pushing the tally sheets: $(grep -c ',1,blank,' "$DATA/votes/sheets.csv") sheets and 1 correction from ${ids[0]}, a copy of one from ${ids[$((COLLECTORS - 1))]}"
push_sheets() { # collector file tag
    local id=$1 rc=0
    "$PUSH" --server "127.0.0.1:$LISTEN_PORT" --collector "$id" --spool "$SPOOLS/$id" \
        --tls-cert "$CA/$id.crt" --tls-key "$CA/$id.key" --tls-ca "$CA/ca.crt" \
        --sheets "$2" >"$VAR/push-$id-$3.out" 2>"$VAR/push-$id-$3.log" || rc=$?
    if [ $rc -ne 0 ]; then
        echo "quickstart: tally-push --sheets $2 ($id) exited $rc:" >&2
        tail -n 5 "$VAR/push-$id-$3.log" >&2
        exit 1
    fi
    info "$id $(basename "$2"): $(sed 's/.* sheets /sheets /' "$VAR/push-$id-$3.out")"
}
push_sheets "${ids[0]}" "$DATA/votes/sheets.csv" sheets
info "  $(grep -o 'sheet [^ ]* version 2 replaces version 1' "$VAR/push-${ids[0]}-sheets.log" | head -n 3 | tr '\n' ' ')"
push_sheets "${ids[$((COLLECTORS - 1))]}" "$DATA/votes/sheets-dup.csv" dup

# ---- 6. results ---------------------------------------------------------------------------------------
step "results"
PSQL=(psql -X -P pager=off "$DB")
"${PSQL[@]}" -c "SELECT count(*) AS checkpoints, max(id) AS last_checkpoint,
                        to_char(max(committed_at), 'HH24:MI:SS.MS') AS last_at
                 FROM checkpoints"
"${PSQL[@]}" -c "SELECT collector_id, durable_seq AS batches, votes, accepted, duplicate, rejected
                 FROM collector_progress ORDER BY collector_id"
"${PSQL[@]}" -c "SELECT sum(votes) AS votes, sum(accepted) AS accepted,
                        sum(duplicate) AS duplicate, sum(rejected) AS rejected
                 FROM collectors"
info "expected (tally-gen truth-summary.txt): $(grep -E '^(votes|accepted|duplicate|rejected) ' \
    "$DATA/votes/truth-summary.txt" | tr '\n' ' ')"
"${PSQL[@]}" -c "SELECT sum(sheets) AS sheets, sum(sheets_accepted) AS accepted,
                        sum(sheets_duplicate) AS duplicate, sum(sheets_rejected) AS rejected
                 FROM collectors"
info "expected: sheets $(($(sed -n 's/^sheets //p' "$DATA/votes/truth-summary.txt") + 1)) accepted $(sed -n 's/^sheets //p' "$DATA/votes/truth-summary.txt") duplicate 1 rejected 0"
if "$TALLYCTL" --db "$DB" results --format csv | cmp -s - "$DATA/votes/truth.csv"; then
    info "per-project results equal tally-gen's truth exactly: YES"
else
    info "per-project results equal tally-gen's truth exactly: NO (see var/data/votes/truth.csv)"
    exit 1
fi

step "tables reported, turnout and the correction (GET /v1/summary, /v1/corrections)"
API=http://127.0.0.1:$HTTP_PORT
curl -fsS "$API/v1/summary" | jq -r '.progress | "tables reported \(.tables_reported) of \(.tables); electors \(.electors_reported) of \(.electors); ballots \(.ballots), turnout \(.turnout * 10000 | round / 100) %; blank \(.blank), null \(.null)"' |
    sed 's/^/         /'
info "expected (truth-summary.txt): $(grep -E '^(tables|tables_reported|electors|electors_reported|ballots|blank|null) ' \
    "$DATA/votes/truth-summary.txt" | tr '\n' ' ')"
curl -fsS "$API/v1/corrections" | jq -r '.corrections[] | "correction \(.id): table \(.table) version \(.from_version) -> \(.to_version) by \(.actor) (\(.reason)): " + ([.deltas[] | "project \(.project) \(if .delta > 0 then "+" else "" end)\(.delta)"] | join(", ")) + ", blank \(.blank_delta), null \(.null_delta)"' |
    sed 's/^/         /'
if "${PSQL[@]}" -At -c "SELECT table_id || ',' || mode || ',' || ballots FROM table_progress
                        ORDER BY table_id COLLATE \"C\"" | cmp -s - <(tail -n +2 "$DATA/votes/truth-tables.csv"); then
    info "every table's mode and ballots (view table_progress) equal tally-gen's truth: YES"
else
    info "every table's mode and ballots (view table_progress) equal tally-gen's truth: NO"
    exit 1
fi

step "winners of a few circuits (view circuit_winners)"
"${PSQL[@]}" -c "WITH pick AS (SELECT circuit_id FROM circuits ORDER BY md5(circuit_id::text) LIMIT 5)
                 SELECT w.state, w.circuit_name AS circuit, w.seats, w.rank, w.project_name AS project,
                        w.votes, w.tie
                 FROM circuit_winners w JOIN pick USING (circuit_id)
                 ORDER BY w.state, w.circuit_name, w.rank"
"${PSQL[@]}" -c "SELECT state, count(DISTINCT circuit_id) AS circuits, count(*) AS projects,
                        sum(votes) AS votes
                 FROM results GROUP BY state ORDER BY sum(votes) DESC LIMIT 5"

# ---- 7. stop -------------------------------------------------------------------------------------------
if [ $KEEP -eq 0 ]; then
    step "stopping tallyd (SIGTERM: final checkpoint)"
    kill -TERM "$tallyd_pid"
    rc=0
    wait "$tallyd_pid" || rc=$?
    tallyd_pid=
    rm -f "$STATE"
    info "tallyd exited $rc"
    [ $rc -eq 0 ] || exit 1
fi

step "auditing the record (tallyctl verify: every total, batch, token page and the hash chain)"
"$TALLYCTL" --db "$DB" verify | sed 's/^/         /' || { info "the record does not verify"; exit 1; }

info "pushed $VOTES votes in ${push_secs}s; whole run $((SECONDS - T0))s"
if [ $KEEP -eq 1 ]; then
    if ! kill -0 "$tallyd_pid" 2>/dev/null; then
        echo "quickstart: tallyd died; see $LOG" >&2
        exit 1
    fi
    step "left running (--keep-running): tallyd and PostgreSQL"
    info "dashboard:  http://127.0.0.1:$HTTP_PORT/   (API: /v1/summary, /v1/results, /metrics)"
    info "collectors: 127.0.0.1:$LISTEN_PORT   mutual TLS: tally-push --server 127.0.0.1:$LISTEN_PORT"
    info "            --tls-cert var/ca/ID.crt --tls-key var/ca/ID.key --tls-ca var/ca/ca.crt;"
    info "            a new collector: tallyctl ca issue var/ca ID, then add-collector ID --cert var/ca/ID.crt"
    info "database:   psql \"$DB\""
    info "            $TALLYCTL --db \"$DB\" status"
    info "tallyd:     pid $tallyd_pid, log $LOG"
    info "stop both:  $ROOT/deploy/quickstart.sh --stop"
    info "            (by hand: kill -TERM $tallyd_pid; tests/pg.sh stop var/pg)"
else
    bash "$ROOT/tests/pg.sh" stop "$PG_DIR" | sed 's/^/         /'
    info "PostgreSQL stopped (--keep-running keeps tallyd, its dashboard and the database up;"
    info "tests/pg.sh start var/pg brings it back, data intact: psql \"$DB\")"
fi
