#!/usr/bin/env bash
# A throw-away PostgreSQL 15 for tests and the quickstart.
#
#   tests/pg.sh start  DIR [PORT]   initdb if needed, start, wait until ready (no-op if running)
#   tests/pg.sh stop   DIR          fast shutdown, wait (no-op if stopped)
#   tests/pg.sh status DIR          exit 0 when running, 3 when stopped, 4 when DIR has no cluster
#   tests/pg.sh replica DIR PRIMARY_DIR [PORT]
#                                   a streaming replica of the running cluster in PRIMARY_DIR
#                                   (pg_basebackup -R; cluster_name, and so the application_name
#                                   a synchronous_standby_names entry names, is tally_replica),
#                                   then start it like `start` (no-op if running)
#   tests/pg.sh promote DIR         pg_ctl promote, wait until it accepts writes
#   tests/pg.sh crash DIR           SIGKILL the postmaster and every server process: a machine
#                                   that died, not a shutdown (no checkpoint, no goodbye to
#                                   clients; the next start runs crash recovery)
#
# Layout of DIR: data/ (the cluster), sock/ (unix socket), log/postgresql.log, port, conninfo.
# When run as root and the `postgres` user cannot reach DIR (a parent directory is not
# searchable), data/, sock/ and log/ live in /var/tmp/tally-pg-<hash of DIR> instead, named
# in DIR/root.
# Listens on 127.0.0.1 only, trust authentication, fsync on (durability is what the tests check).
# When run as root the cluster belongs to the `postgres` user (DIR is chown'd to it), as
# PostgreSQL refuses to run as root. The port is remembered in DIR/port, so a stop and a
# start keep the same conninfo; without PORT on the first start a free port is picked.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
START_TIMEOUT=${PG_START_TIMEOUT:-60}
STOP_TIMEOUT=${PG_STOP_TIMEOUT:-60}

die() { echo "pg.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 start|stop|status|promote|crash DIR [PORT] | replica DIR PRIMARY_DIR [PORT]" >&2; exit 2; }

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
primary_dir=
if [ "$cmd" = replica ]; then
    [ $# -ge 3 ] || usage
    primary_dir=$(cd "$3" && pwd)
    port_arg=${4:-}
else
    port_arg=${3:-}
fi

[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 not found in $PGBIN (apt-get install postgresql-15)"

# Run a PostgreSQL program as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    # bash's /dev/tcp connects; success means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    # Below the kernel's ephemeral range (32768+ by default), so that no outgoing connection
    # or port-0 bind takes it while the server is stopped for a test.
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# Where data/, sock/ and log/ live: DIR itself, or the place DIR/root names.
root=
set_root() {
    if [ -f "$dir/root" ]; then
        root=$(cat "$dir/root")
    else
        root=$dir
    fi
}

is_running() {
    [ -f "$root/data/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" -D "$root/data" status >/dev/null 2>&1
}

write_conninfo() {
    local port=$1
    echo "host=127.0.0.1 port=$port user=postgres dbname=postgres" >"$dir/conninfo.tmp"
    mv "$dir/conninfo.tmp" "$dir/conninfo"
}

do_start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (apt-get install postgresql)"
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -x "$dir" && [ ! -f "$dir/root" ]; then
            # A parent of DIR is closed to postgres: keep the cluster where it can live.
            local alt
            alt=/var/tmp/tally-pg-$(printf '%s' "$dir" | md5sum | cut -c1-12)
            # A leftover of an earlier DIR of the same name: stop it and start afresh.
            if [ -f "$alt/data/PG_VERSION" ]; then
                runuser -u postgres -- "$PGBIN/pg_ctl" -D "$alt/data" -m immediate stop \
                    >/dev/null 2>&1 || true
            fi
            rm -rf "$alt"
            mkdir -p "$alt"
            chown postgres: "$alt"
            chmod 700 "$alt"
            echo "$alt" >"$dir/root"
            echo "pg.sh: postgres cannot reach $dir; cluster kept in $alt" >&2
        fi
    fi
    set_root

    if is_running; then
        port=$(cat "$dir/port")
        write_conninfo "$port"
        echo "pg.sh: already running in $dir on port $port"
        return 0
    fi

    local port
    if [ -n "$port_arg" ]; then
        port=$port_arg
    elif [ -f "$dir/port" ]; then
        port=$(cat "$dir/port")
    else
        port=$(pick_port)
    fi
    case $port in '' | *[!0-9]*) die "bad port '$port'" ;; esac

    if [ ! -f "$root/data/PG_VERSION" ] && [ -n "$primary_dir" ]; then
        make_replica
    elif [ ! -f "$root/data/PG_VERSION" ]; then
        rm -rf "$root/data"
        as_owner mkdir -p "$root/data" "$root/sock" "$root/log"
        as_owner chmod 700 "$root/data"
        if ! as_owner "$PGBIN/initdb" -D "$root/data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
            cat "$dir/initdb.log" >&2
            die "initdb failed (log: $dir/initdb.log)"
        fi
        as_owner tee -a "$root/data/postgresql.conf" >/dev/null <<EOF

# --- tests/pg.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$root/sock'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 128MB
max_connections = 100
max_wal_size = 1GB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
EOF
    fi
    as_owner mkdir -p "$root/sock" "$root/log"
    local logfile=$root/log/postgresql.log

    local attempt
    for attempt in 1 2 3; do
        if port_in_use "$port"; then
            if [ -n "$port_arg" ] || [ "$attempt" -eq 3 ]; then
                die "port $port on 127.0.0.1 is already in use"
            fi
            if [ -f "$dir/port" ]; then
                echo "pg.sh: remembered port $port is taken, picking another" >&2
            fi
            port=$(pick_port)
            continue
        fi
        echo "$port" >"$dir/port"
        if as_owner "$PGBIN/pg_ctl" -D "$root/data" -l "$logfile" \
            -o "-p $port" -w -t "$START_TIMEOUT" start >/dev/null; then
            break
        fi
        # Lost a race for the port? Try another one unless it was imposed.
        if [ -z "$port_arg" ] && [ "$attempt" -lt 3 ] &&
            tail -n 20 "$logfile" 2>/dev/null | grep -q "could not bind"; then
            port=$(pick_port)
            continue
        fi
        tail -n 30 "$logfile" >&2 || true
        die "PostgreSQL did not start (log: $logfile)"
    done

    local deadline=$((SECONDS + START_TIMEOUT))
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
        if [ $SECONDS -ge $deadline ]; then
            die "PostgreSQL on port $port not ready after ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    write_conninfo "$port"
    echo "pg.sh: running in $dir on 127.0.0.1:$port"
}

# A copy of the running primary in PRIMARY_DIR that streams from it: initdb's pg_hba.conf
# already lets 127.0.0.1 replicate with trust. Its own socket directory and cluster_name
# come last in postgresql.conf, so they win over the primary's copied lines.
make_replica() {
    [ -f "$primary_dir/port" ] || die "no cluster in $primary_dir (start it first)"
    local pport
    pport=$(cat "$primary_dir/port")
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pport" -U postgres ||
        die "the primary in $primary_dir (port $pport) is not running"
    rm -rf "$root/data"
    as_owner mkdir -p "$root/sock" "$root/log"
    if ! as_owner "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -D "$root/data" \
        -R -X stream -c fast >"$dir/basebackup.log" 2>&1; then
        cat "$dir/basebackup.log" >&2
        die "pg_basebackup from port $pport failed (log: $dir/basebackup.log)"
    fi
    as_owner chmod 700 "$root/data"
    as_owner tee -a "$root/data/postgresql.conf" >/dev/null <<EOF

# --- tests/pg.sh: replica of $primary_dir ---
unix_socket_directories = '$root/sock'
cluster_name = 'tally_replica'
hot_standby = on
EOF
}

do_promote() {
    set_root
    is_running || die "not running in $dir"
    as_owner "$PGBIN/pg_ctl" -D "$root/data" -w -t "$START_TIMEOUT" promote >/dev/null ||
        die "pg_ctl promote failed in $dir"
    local port deadline=$((SECONDS + START_TIMEOUT))
    port=$(cat "$dir/port")
    until [ "$("$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
        'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
        [ $SECONDS -lt $deadline ] || die "promoted server on port $port still in recovery"
        sleep 0.1
    done
    echo "pg.sh: promoted in $dir on 127.0.0.1:$port"
}

do_crash() {
    set_root
    local pidfile=$root/data/postmaster.pid pid
    if [ ! -f "$pidfile" ] || ! pid=$(head -n 1 "$pidfile") || ! kill -0 "$pid" 2>/dev/null; then
        echo "pg.sh: not running in $dir"
        return 0
    fi
    # Stop the postmaster, then kill its children and it: none of them gets to notice
    # another's death and shut down tidily.
    kill -STOP "$pid" 2>/dev/null || true
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null || pgrep -P "$pid" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "server processes of $dir still alive"
        sleep 0.05
    done
    echo "pg.sh: crashed (SIGKILL) in $dir"
}

do_stop() {
    set_root
    if [ ! -f "$root/data/PG_VERSION" ]; then
        echo "pg.sh: no cluster in $dir"
        return 0
    fi
    if ! is_running; then
        echo "pg.sh: not running in $dir"
        return 0
    fi
    if ! as_owner "$PGBIN/pg_ctl" -D "$root/data" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null; then
        echo "pg.sh: fast shutdown timed out, using immediate" >&2
        as_owner "$PGBIN/pg_ctl" -D "$root/data" -m immediate -w -t "$STOP_TIMEOUT" stop >/dev/null ||
            die "could not stop PostgreSQL in $dir"
    fi
    echo "pg.sh: stopped in $dir"
}

do_status() {
    set_root
    if [ ! -f "$root/data/PG_VERSION" ]; then
        echo "pg.sh: no cluster in $dir"
        exit 4
    fi
    if is_running; then
        echo "pg.sh: running in $dir on 127.0.0.1:$(cat "$dir/port")"
        exit 0
    fi
    echo "pg.sh: stopped in $dir"
    exit 3
}

case $cmd in
start | replica) do_start ;;
promote) do_promote ;;
crash) do_crash ;;
stop) do_stop ;;
status) do_status ;;
*) usage ;;
esac
