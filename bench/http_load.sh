#!/usr/bin/env bash
# Readers on election night: wrk against tallyd's results API, directly and through nginx with
# deploy/nginx/tallyd.conf, while collectors keep pushing votes (bench/README.md, "HTTP
# readers"). Measured, not asserted.
#
#   bench/http_load.sh [--duration S] [--threads T] [--connections C] [--projects N]
#                      [--ingest-rate V] [--json FILE] [--keep] [--no-build] [-h|--help]
#
# 1. Installs what is missing (deploy/install-deps.sh; root or sudo): tallyd's build packages
#    as bench/run.sh lists them, nginx and wrk.
# 2. Builds Release into build-bench/ (BENCH_BUILD_DIR overrides it; JOBS, default nproc);
#    --no-build uses the binaries already there.
# 3. In a scratch directory under /tmp: a PostgreSQL of its own (tests/pg.sh), a registry of
#    --projects projects (36000: /v1/results is then ~4.4 MB) from tally-gen, tallyd, and
#    nginx with the shipped deploy/nginx/tallyd.conf (tallyd's address, the listen address and
#    the cache path substituted), run unprivileged in the foreground.
# 4. Two tally-push collectors feed tallyd --ingest-rate votes/s in all (20000) for the whole
#    run, so checkpoints (every 200 ms) keep changing the documents.
# 5. wrk -t T -c C -d S --latency on /v1/results and /v1/summary, without and with
#    Accept-Encoding: gzip, directly to tallyd and through nginx, in turn (8 runs; about
#    8 x (S + 2) s plus ~30 s of set-up). Prints a table (requests/s, latency p50/p99 as wrk
#    reports them, transfer/s, the requests that reached tallyd, CPU seconds of tallyd and
#    nginx, the votes ingested meanwhile) and writes the figures as JSON to FILE (default
#    build-bench/http-load-<UTC time>.json).
# wrk, nginx, tallyd, tally-push and PostgreSQL all share this one machine: the figures say
# how the pieces compare here, not what a reader farm in front of a dedicated tallyd gets.
# Stops and deletes everything at the end, also on failure or Ctrl-C (--keep keeps the
# scratch directory: logs, nginx.conf, the cache). Exit status: 0 every run completed; 1 a
# step failed; 2 usage.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

duration=10
threads=2
connections=64
projects=36000
rate=20000
json=
keep=0
build=1
usage() {
    sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
}
need() {
    [ $# -ge 2 ] || {
        echo "http_load.sh: $1 needs a value (see --help)" >&2
        exit 2
    }
}
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --duration) need "$@"; duration=$2; shift 2 ;;
    --threads) need "$@"; threads=$2; shift 2 ;;
    --connections) need "$@"; connections=$2; shift 2 ;;
    --projects) need "$@"; projects=$2; shift 2 ;;
    --ingest-rate) need "$@"; rate=$2; shift 2 ;;
    --json) need "$@"; json=$2; shift 2 ;;
    --json=*) json=${1#--json=}; shift ;;
    --keep) keep=1; shift ;;
    --no-build) build=0; shift ;;
    *)
        echo "http_load.sh: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
done
for v in duration threads connections projects rate; do
    case ${!v} in
    '' | *[!0-9]* | 0)
        echo "http_load.sh: --${v/rate/ingest-rate} must be a positive integer" >&2
        exit 2
        ;;
    esac
done

[ "$projects" -ge 200 ] || {
    echo "http_load.sh: --projects must be at least 200" >&2
    exit 2
}
# tally-gen's shape (4,500 circuits for 36,000 projects: 8 a circuit) at any size, 25 states.
circuits=$((projects / 8))
[ $circuits -ge 25 ] || circuits=25

BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
[ -n "$json" ] || json=$BUILD_DIR/http-load-$(date -u +%Y%m%dT%H%M%SZ).json

log() { printf '==== http_load.sh: %s\n' "$*" >&2; }
die() {
    echo "http_load.sh: $*" >&2
    exit 1
}

# ---- dependencies and the build ---------------------------------------------------------
PACKAGES=(build-essential cmake pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
    libpq-dev postgresql libsodium-dev libsystemd-dev libssl-dev libjson-c-dev nginx wrk curl)
log "dependencies"
bash "$ROOT/deploy/install-deps.sh" "${PACKAGES[@]}" >&2
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx not found (apt-get install nginx)"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"

if [ $build -eq 1 ]; then
    log "Release build in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD_DIR" -j"$JOBS" --target tallyd tallyctl tally-push tally-gen >&2
fi
TALLYD=$BUILD_DIR/tallyd
TALLYCTL=$BUILD_DIR/src/ctl/tallyctl
PUSH=$BUILD_DIR/src/push/tally-push
GEN=$BUILD_DIR/src/gen/tally-gen
for b in "$TALLYD" "$TALLYCTL" "$PUSH" "$GEN"; do [ -x "$b" ] || die "$b not built"; done

# ---- scratch, and cleanup whatever happens ------------------------------------------------
SCRATCH=$(mktemp -d /tmp/tally-http-bench.XXXXXX)
# Open to the users PostgreSQL and nginx run as when this runs as root (postgres, nobody).
chmod 755 "$SCRATCH"
tallyd_pid=
nginx_pid=
wrk_pid=
feed_pids=()
push_pids=()
stop_pid() { # pid signal seconds
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$2" "$pid" 2>/dev/null || true
    for i in $(seq 1 $(($3 * 10))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    stop_pid "$wrk_pid" TERM 5
    for p in "${feed_pids[@]}" "${push_pids[@]}"; do stop_pid "$p" TERM 5; done
    stop_pid "$nginx_pid" TERM 10
    stop_pid "$tallyd_pid" TERM 15
    [ -d "$SCRATCH/pg" ] && bash "$ROOT/tests/pg.sh" stop "$SCRATCH/pg" >/dev/null 2>&1 || true
    if [ $keep -eq 1 ]; then
        echo "http_load.sh: kept $SCRATCH (tests/pg.sh start $SCRATCH/pg: the database)" >&2
    else
        # tests/pg.sh may have kept the cluster elsewhere (it says where in pg/root).
        [ -f "$SCRATCH/pg/root" ] && rm -rf "$(cat "$SCRATCH/pg/root")"
        rm -rf "$SCRATCH"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'echo "http_load.sh: interrupted" >&2; exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
picked=" "
pick_port() { # VAR: a free port below the ephemeral range (as tests/pg.sh), not picked before
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if [ "${picked#* $p }" = "$picked" ] && port_free "$p"; then
            picked+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port"
}
http_get() { # port path -> status, or 000
    curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1$2" || true
}
wait_http() { # port path what seconds pid
    local i
    for i in $(seq 1 $(($4 * 10))); do
        [ "$(http_get "$1" "$2")" = 200 ] && return 0
        kill -0 "$5" 2>/dev/null || die "$3 exited (log in $SCRATCH)"
        sleep 0.1
    done
    die "$3 did not answer $2 within $4 s"
}

# ---- PostgreSQL, the consultation, tallyd -------------------------------------------------
plan_s=$((8 * (duration + 3) + 40))
votes=$((rate * plan_s))
log "scratch $SCRATCH: PostgreSQL, $projects projects in $circuits circuits, $votes votes to push"
bash "$ROOT/tests/pg.sh" start "$SCRATCH/pg" >/dev/null
BASE=$(cat "$SCRATCH/pg/conninfo")
DB="${BASE% dbname=*} dbname=tally"
psql -X -q "$BASE" -v ON_ERROR_STOP=1 -c 'CREATE DATABASE tally' >/dev/null
"$TALLYCTL" --db "$DB" migrate >/dev/null
"$GEN" registry --out "$SCRATCH/registry.csv" --projects "$projects" --circuits "$circuits" \
    --states 25 --seed 2024
"$GEN" votes --registry "$SCRATCH/registry.csv" --collectors 2 --votes "$votes" \
    --out-dir "$SCRATCH/votes" --seed 2024 --quiet
"$TALLYCTL" --db "$DB" load-registry "$SCRATCH/registry.csv" >/dev/null
for c in c0 c1; do "$TALLYCTL" --db "$DB" add-collector "$c" >/dev/null; done
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SCRATCH/ballot.key"

pick_port COL_PORT
pick_port HTTP_PORT
pick_port NGX_PORT
"$TALLYD" --db "$DB" --listen "127.0.0.1:$COL_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --checkpoint-ms 200 --expected-ballots $((votes * 13 / 10)) --log-level warn \
    </dev/null >"$SCRATCH/tallyd.log" 2>&1 &
tallyd_pid=$!
wait_http "$HTTP_PORT" /readyz tallyd 60 "$tallyd_pid"

# ---- nginx with the shipped file ------------------------------------------------------------
NGX=$SCRATCH/nginx
mkdir -p "$NGX/tmp"
subst() { # file ERE replacement what: exactly one line must match
    local n
    n=$(grep -cE "$2" "$1" || true)
    [ "$n" = 1 ] || die "deploy/nginx/tallyd.conf: \"$4\" found $n times, want 1"
    sed -E -i "s|$2|$3|" "$1"
}
cp "$ROOT/deploy/nginx/tallyd.conf" "$NGX/tallyd.conf"
subst "$NGX/tallyd.conf" '^(\s*server\s+)127\.0\.0\.1:7480;' "\1127.0.0.1:$HTTP_PORT;" \
    'server 127.0.0.1:7480'
subst "$NGX/tallyd.conf" '^(\s*listen\s+)80;' "\1127.0.0.1:$NGX_PORT;" 'listen 80'
subst "$NGX/tallyd.conf" '^(proxy_cache_path\s+)/var/cache/nginx/tallyd(\s)' "\1$NGX/cache\2" \
    'proxy_cache_path /var/cache/nginx/tallyd'
cat >"$NGX/nginx.conf" <<EOF
# bench/http_load.sh: deploy/nginx/tallyd.conf, included; no access log (the readers' log
# lines would be disk writes on the machine that is measured)
daemon off;
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    include $NGX/tallyd.conf;
}
EOF
as_nginx=()
if [ "$(id -u)" -eq 0 ]; then
    # Unprivileged: nobody owns its directory (the scratch directory is under /tmp, open to it).
    chown -R nobody: "$NGX"
    chmod 755 "$SCRATCH"
    as_nginx=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi
# NGINX in the environment would be taken by nginx for inherited listening sockets.
env -u NGINX "${as_nginx[@]}" "$NGINX" -t -q -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" ||
    die "nginx -t refuses the configuration"
env -u NGINX "${as_nginx[@]}" "$NGINX" -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" \
    </dev/null >"$NGX/nginx.out" 2>&1 &
nginx_pid=$!
wait_http "$NGX_PORT" /healthz nginx 15 "$nginx_pid"

# ---- the collectors, at a steady rate for the whole run -------------------------------------
per=$((rate / 2))
chunk=$(((per + 4) / 5)) # five chunks a second per collector
[ "$chunk" -ge 1 ] || chunk=1
for i in 0 1; do
    mkdir -p "$SCRATCH/chunks/c$i"
    split -l "$chunk" -a 6 "$SCRATCH/votes/collector-$i.csv" "$SCRATCH/chunks/c$i/"
    mkfifo "$SCRATCH/feed-c$i"
    "$PUSH" --server "127.0.0.1:$COL_PORT" --collector "c$i" --spool "$SCRATCH/spool-c$i" \
        --ballot-key "$SCRATCH/ballot.key" --batch "$chunk" --quiet - \
        <"$SCRATCH/feed-c$i" >"$SCRATCH/push-c$i.out" 2>"$SCRATCH/push-c$i.log" &
    push_pids+=($!)
    (
        exec >"$SCRATCH/feed-c$i"
        for f in "$SCRATCH/chunks/c$i"/*; do
            cat "$f"
            sleep 0.2
        done
    ) &
    feed_pids+=($!)
done

# ---- measuring ------------------------------------------------------------------------------
metrics() { # -> "REQUESTS SLOW MAX": tallyd's tally_http_requests_total, its event-loop
    # callbacks over 10 ms so far, and the longest one (s), from one read of its /metrics
    curl -s -m 5 "http://127.0.0.1:$HTTP_PORT/metrics" | awk '
        $1 == "tally_http_requests_total" { r = $2 }
        $1 == "tally_loop_iteration_seconds_count" { c = $2 }
        $1 == "tally_loop_iteration_seconds_bucket{le=\"0.01\"}" { f = $2 }
        $1 == "tally_loop_iteration_max_seconds" { m = $2 }
        END { printf "%d %d %s\n", r, c - f, (m == "" ? "null" : m) }'
}
cpu_ticks() { # pid... -> utime+stime of each and its children threads (ticks)
    local t=0 p f
    for p in "$@"; do
        if f=$(cat "/proc/$p/stat" 2>/dev/null); then
            f=${f##*) }
            # fields after the comm: state(1) ... utime(12) stime(13)
            set -- $f
            t=$((t + ${12} + ${13}))
        fi
    done
    echo $t
}
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid" 2>/dev/null || true); }
summary_field() { # jq-free: the first "name":number of /v1/summary
    curl -s -m 5 "http://127.0.0.1:$HTTP_PORT/v1/summary" | grep -o "\"$1\":[0-9]*" | head -n 1 |
        cut -d: -f2
}
hz=$(getconf CLK_TCK)
ratio() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf("%." d "f", a / b) }'; } # A B DIGITS
ROW='%-12s %-8s %-6s %10s %9s %9s %11s %9s %7s %7s %8s %6s %5s'
to_ms() { # wrk's "1.23ms" / "456.78us" / "2.01s" / "1.00m" -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f["us"] = 0.001; f["ms"] = 1; f["s"] = 1000; f["m"] = 60000; f["h"] = 3600000
        if (!(u in f)) print "null"; else printf "%.3f", n * f[u] }'
}
to_bytes() { # "20.00MB" -> bytes
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f["B"] = 1; f["KB"] = 1024; f["MB"] = 1024 ^ 2; f["GB"] = 1024 ^ 3; f["TB"] = 1024 ^ 4
        if (!(u in f)) print "null"; else printf "%.0f", n * f[u] }'
}
jstr() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
jobj() { # KEY VALUE... (values already JSON) -> {"KEY":VALUE,...}
    local out='' sep=''
    while [ $# -ge 2 ]; do
        out+="$sep\"$1\":$2"
        sep=,
        shift 2
    done
    printf '{%s}' "$out"
}

# What each document weighs and whether tallyd compresses it (the gzip rows mean nothing
# otherwise), once, before the runs.
doc_json=()
for path in /v1/results /v1/summary; do
    plain=$(curl -s -m 10 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$HTTP_PORT$path")
    read -r gz enc < <(curl -s -m 10 -o /dev/null -H 'Accept-Encoding: gzip' \
        -w '%{size_download} %header{content-encoding}\n' "http://127.0.0.1:$HTTP_PORT$path")
    cc=$(curl -s -m 10 -o /dev/null -w '%header{cache-control}' "http://127.0.0.1:$HTTP_PORT$path")
    gzips=false
    [ "$enc" = gzip ] && gzips=true
    doc_json+=("$(jstr "$path"):$(jobj plain_bytes "$plain" gzip_bytes "$gz" tallyd_gzips $gzips \
        cache_control "$(jstr "$cc")")")
    log "$path: $plain B plain, $gz B with Accept-Encoding: gzip (Content-Encoding:" \
        "${enc:-none}), Cache-Control: $cc"
done

runs_json=()
table=()
sleep 2 # the collectors under way, a few checkpoints behind us
for path in /v1/results /v1/summary; do
    for enc in identity gzip; do
        for target in tallyd nginx; do
            port=$HTTP_PORT
            [ $target = nginx ] && port=$NGX_PORT
            hdr=()
            [ $enc = gzip ] && hdr=(-H 'Accept-Encoding: gzip')
            out=$SCRATCH/wrk-$target-${path//\//_}-$enc.txt
            # One request first, so that nginx's cache holds the document (a crowd finds it
            # there) and tallyd's gzip of this snapshot is under way.
            curl -s -m 30 -o /dev/null "${hdr[@]}" "http://127.0.0.1:$port$path" || true
            v0=$(summary_field votes)
            c0=$(summary_field checkpoint)
            read -r r0 slow0 _ < <(metrics)
            tc0=$(cpu_ticks "$tallyd_pid")
            nc0=$(cpu_ticks $(nginx_pids))
            t0=$(date +%s.%N)
            url=http://127.0.0.1:$port$path
            log "wrk -t$threads -c$connections -d${duration}s ${hdr[*]} $url ($target)"
            # In the background and waited for, so that a signal stops the bench at once.
            timeout $((duration + 60)) wrk -t"$threads" -c"$connections" -d"${duration}s" \
                --timeout 10s --latency "${hdr[@]}" "$url" >"$out" 2>&1 &
            wrk_pid=$!
            wait "$wrk_pid" || die "wrk failed: $(tail -n 3 "$out")"
            wrk_pid=
            t1=$(date +%s.%N)
            tc1=$(cpu_ticks "$tallyd_pid")
            nc1=$(cpu_ticks $(nginx_pids))
            read -r r1 slow1 loopmax < <(metrics)
            c1=$(summary_field checkpoint)
            v1=$(summary_field votes)
            kill -0 "$tallyd_pid" 2>/dev/null || die "tallyd died (see $SCRATCH/tallyd.log)"
            # The second /metrics read counts itself.
            upstream=$((r1 - r0 - 1))
            [ $target = nginx ] || upstream=null
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            tps=$(awk '/^Transfer\/sec:/ { print $2 }' "$out")
            p50=$(awk '$1 == "50%" { print $2 }' "$out")
            p99=$(awk '$1 == "99%" { print $2 }' "$out")
            total=$(awk '/requests in/ { print $1 }' "$out")
            non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
            sockerr=$(sed -n 's/^ *Socket errors: //p' "$out")
            wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
            tcpu=$(ratio $((tc1 - tc0)) "$hz" 2)
            ncpu=$(ratio $((nc1 - nc0)) "$hz" 2)
            ingest=$(ratio $((${v1:-0} - ${v0:-0})) "$wall" 0)
            ups=null
            [ "$upstream" = null ] || ups=$(ratio "$upstream" "$wall" 1)
            runs_json+=("$(jobj target "$(jstr $target)" path "$(jstr "$path")" \
                accept_encoding "$(jstr $enc)" requests "${total:-null}" \
                requests_per_s "${rps:-null}" \
                latency_p50 "$(jstr "$p50")" latency_p50_ms "$(to_ms "$p50")" \
                latency_p99 "$(jstr "$p99")" latency_p99_ms "$(to_ms "$p99")" \
                transfer_per_s "$(jstr "$tps")" transfer_bytes_per_s "$(to_bytes "$tps")" \
                non_2xx "${non2xx:-0}" socket_errors "$(jstr "${sockerr:-none}")" \
                upstream_requests "$upstream" upstream_requests_per_s "$ups" \
                tallyd_cpu_s "$tcpu" nginx_cpu_s "$ncpu" wall_s "$wall" \
                ingest_votes_per_s "$ingest" checkpoints $((${c1:-0} - ${c0:-0})) \
                loop_callbacks_over_10ms $((slow1 - slow0)) loop_max_s_so_far "$loopmax")")
            shown=$ups
            [ "$ups" = null ] && shown=-
            table+=("$(printf "$ROW" "$path" "$enc" "$target" "$rps" "$p50" "$p99" "$tps" "$shown" \
                "$tcpu" "$ncpu" "$ingest" "$((slow1 - slow0))" "${non2xx:-0}")")
            sleep 1
        done
    done
done

# ---- the report -----------------------------------------------------------------------------
ingested=$(summary_field votes)
machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
{
    echo
    echo "HTTP readers, wrk -t$threads -c$connections -d${duration}s --latency, $projects projects,"
    echo "tally-push feeding ~$rate votes/s throughout. wrk, nginx, tallyd, tally-push and"
    echo "PostgreSQL all share this one machine: $machine, load average at the end" \
        "$(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    printf "$ROW\n" path encoding via req/s p50 p99 transfer/s tallyd/s tdCPUs ngCPUs votes/s \
        ">10ms" non2xx
    printf '%s\n' "${table[@]}"
    echo
    echo "tallyd/s: requests that reached tallyd per second (through nginx); tdCPUs, ngCPUs: CPU"
    echo "seconds tallyd and nginx used during the run; votes/s: what tallyd ingested meanwhile;"
    echo ">10ms: tallyd event-loop callbacks longer than 10 ms during the run (longest of the"
    echo "whole bench: ${loopmax:-?} s)."
} | tee "$SCRATCH/table.txt"

mkdir -p "$(dirname "$json")"
{
    printf '{"bench":"http_load","time":"%s",' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '"machine":{"nproc":%s,"cpu":%s,"loadavg_end":%s},' "$(nproc)" \
        "$(jstr "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')")" \
        "$(jstr "$(cut -d' ' -f1-3 /proc/loadavg)")"
    shared="wrk, nginx, tallyd, tally-push and PostgreSQL share this one $(nproc)-core machine"
    printf '"shared_machine":%s,' "$(jstr "$shared")"
    printf '"config":%s,' "$(jobj projects "$projects" circuits "$circuits" duration_s "$duration" \
        threads "$threads" connections "$connections" ingest_votes_per_s_target "$rate" \
        checkpoint_ms 200 nginx "$(jstr "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')")" \
        wrk "$(jstr "$(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)")")"
    printf '"documents":{%s},' "$(IFS=,; echo "${doc_json[*]}")"
    printf '"votes_ingested":%s,"tallyd_loop_max_s":%s,' "${ingested:-null}" "${loopmax:-null}"
    printf '"runs":[%s]}\n' "$(IFS=,; echo "${runs_json[*]}")"
} >"$json"
echo "http_load.sh: figures in $json" >&2
