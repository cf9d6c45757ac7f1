#!/usr/bin/env bash
# What a checkpoint with few votes costs: a trickle of one-vote batches, each made durable in
# its own checkpoint, against a registry of many projects (default 30,000).
#
#   bench/small-checkpoint.sh [--projects N] [--votes N] [--build DIR] [--keep]
#
# Starts a scratch PostgreSQL (tests/pg.sh) and tallyd with --log-level debug, runs tally-push
# once per vote (each run exits only when its vote is durable), then reads tallyd's per-
# checkpoint debug lines and prints p50/p90/p99/max of the checkpoint transaction (epoch check
# to COMMIT), of the preparation before it (sort, pages, hash chain), and of both together,
# plus the mean of tally_checkpoint_duration_seconds (hand-off to COMMIT, from /metrics).
# Everything runs on 127.0.0.1 and is stopped at the end. Needs a build (default build-rel,
# made with cmake -DCMAKE_BUILD_TYPE=Release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

projects=30000
votes=200
build=$ROOT/build-rel
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --projects) projects=$2; shift 2 ;;
    --votes) votes=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "small-checkpoint.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for p in tallyd src/ctl/tallyctl src/push/tally-push src/gen/tally-gen; do
    [ -x "$build/$p" ] || { echo "small-checkpoint.sh: $build/$p missing: build first" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tally-smallcp.XXXXXX)
chmod 755 "$work"
tallyd_pid=
cleanup() {
    [ -n "$tallyd_pid" ] && kill "$tallyd_pid" 2>/dev/null && wait "$tallyd_pid" 2>/dev/null
    bash "$ROOT/tests/pg.sh" stop "$work/pg" >/dev/null 2>&1 || true
    if [ $keep -eq 0 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

echo "small-checkpoint: scratch PostgreSQL in $work/pg" >&2
bash "$ROOT/tests/pg.sh" start "$work/pg" >/dev/null
db=$(cat "$work/pg/conninfo")
"$build/src/gen/tally-gen" registry --out "$work/registry.csv" --projects "$projects" \
    --circuits $((projects / 7 + 1)) >/dev/null
"$build/src/ctl/tallyctl" --db "$db" migrate >/dev/null
"$build/src/ctl/tallyctl" --db "$db" load-registry "$work/registry.csv" >/dev/null
"$build/src/ctl/tallyctl" --db "$db" add-collector c0 >/dev/null
project=$(sed -n 2p "$work/registry.csv" | cut -d, -f1)

port=$((20000 + RANDOM % 20000))
http=$((port + 1))
"$build/tallyd" --db "$db" --listen 127.0.0.1:$port --http 127.0.0.1:$http \
    --checkpoint-ms 10 --log-level debug 2>"$work/tallyd.log" &
tallyd_pid=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "small-checkpoint: $votes one-vote checkpoints over $projects projects" >&2
: >"$work/votes.csv"
for i in $(seq 1 "$votes"); do
    echo "voter-$i,$project" >>"$work/votes.csv"
    "$build/src/push/tally-push" --server 127.0.0.1:$port --collector c0 --spool "$work/spool" \
        --batch 1 "$work/votes.csv" >/dev/null 2>>"$work/push.log"
done
metrics=$(curl -fs "http://127.0.0.1:$http/metrics")
kill "$tallyd_pid"
wait "$tallyd_pid" || true
tallyd_pid=

# "prepared in X ms" and "ms: check A row B batches C pages D commit E" per checkpoint, as
# "transaction preparation" pairs (mawk has no sort: sort(1) does it).
awk '
    / prepared in / { for (i = 1; i <= NF; i++) if ($i == "in") { prep[$5 + 0] = $(i + 1); break } }
    / ms: check / {
        id = $5; sub(":", "", id)
        for (i = 1; i <= NF; i++) if ($i == "check") { tx[id + 0] = $(i+1) + $(i+3) + $(i+5) + $(i+7) + $(i+9) }
    }
    END { for (id in tx) if (id in prep) print tx[id], prep[id], tx[id] + prep[id] }' \
    "$work/tallyd.log" >"$work/cp.txt"
n=$(wc -l <"$work/cp.txt")
[ "$n" -gt 0 ] || { echo "small-checkpoint.sh: no checkpoint lines in the log" >&2; exit 1; }
echo "checkpoints $n"
for col in 1:transaction 2:preparation 3:both; do
    sort -g -k"${col%%:*}","${col%%:*}" "$work/cp.txt" | awk -v c="${col%%:*}" -v name="${col#*:}" '
        { v[NR] = $c }
        END { printf "%-12s ms  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", name,
              v[int((NR - 1) * .5) + 1], v[int((NR - 1) * .9) + 1], v[int((NR - 1) * .99) + 1], v[NR] }'
done
echo "$metrics" | awk '
    /^tally_checkpoint_duration_seconds_sum/ { sum = $2 }
    /^tally_checkpoint_duration_seconds_count/ { cnt = $2 }
    END { if (cnt > 0) printf "hand-off to COMMIT, mean ms %.2f over %d checkpoints\n", 1000 * sum / cnt, cnt }'
