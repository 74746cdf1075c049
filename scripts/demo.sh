#!/bin/bash
# make demo: the chat example (example/chat) end to end on this machine.
#
# Installs missing Debian packages (scripts/deps.sh demo), builds fooking, and
# starts - as the current user, in a private run directory, without touching
# system services - the chat backend (php-fpm with its own pool, or the Go
# program), the fooking router and a WebSocket gateway that also serves
# example/chat/index.html. No database: the backends keep each user in its
# session data on the gateway. Prints the URL to open. Ctrl-C (or SIGTERM)
# stops every process it started, by pid.
#
# Settings (environment, or make variables: make demo PORT=8080 BACKEND=go):
#   PORT=9005          the page and its WebSocket (must be free)
#   HOST=127.0.0.1     listen address of the gateway (0.0.0.0 to reach it from elsewhere)
#   BACKEND=php        php (php-fpm + gateway.php) or go (gateway.go)
#   BUS=               empty (the default): the gateway is linked to the router.
#                      redis: a redis-server of the demo's own is started too
#                      (scripts/deps.sh demo-bus installs it), and the router and
#                      the gateway get BUS = "redis://127.0.0.1:<REDIS_PORT>": the
#                      Redis bus carries the router's commands to the gateway; the
#                      backends still talk to the router
#                      nats: the same with a nats-server of the demo's own
#                      (scripts/deps.sh demo-nats) and BUS = "nats://127.0.0.1:<NATS_PORT>"
#   ROUTER_PORT=9010   fooking router      } these take the next free port
#   FCGI_PORT=9001     the backend         } when theirs is taken; all
#   REDIS_PORT=6390    Redis (BUS=redis)   } listen on 127.0.0.1 only
#   NATS_PORT=4232     NATS (BUS=nats)     }
#   WORKER_NUM=2       gateway workers
#   KEEP_RUN_DIR=1     keep the run directory (configs and logs) after stopping
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-9005}
HOST=${HOST:-127.0.0.1}
BACKEND=${BACKEND:-php}
BUS=${BUS:-}
WORKER_NUM=${WORKER_NUM:-2}
MAKE=${MAKE:-make}

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

case $BACKEND in php|go) ;; *) die "BACKEND must be php or go, got \"$BACKEND\"" ;; esac
case $BUS in ""|redis|nats) ;; *) die "BUS must be empty, redis or nats, got \"$BUS\"" ;; esac
if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
    die "PORT must be a port number, got \"$PORT\""
fi

# ---------------------------------------------------------------- ports

# True when something listens on TCP port $1 (read from /proc, no connection made).
listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { found = 1 }
                      END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# pick_port VAR BASE: sets VAR to the first free port from BASE on, skipping
# the ports already handed out.
taken=" $PORT "
pick_port() {
    local p=$2
    [[ $p =~ ^[0-9]+$ ]] || die "$1 must be a port number, got \"$p\""
    while listening "$p" || [[ $taken == *" $p "* ]]; do
        p=$((p + 1))
        (( p < 65536 )) || die "no free port from $2 on for $1"
    done
    taken="$taken$p "
    printf -v "$1" '%s' "$p"
}

listening "$PORT" && die "port $PORT is in use; choose another: make demo PORT=..."
pick_port ROUTER_PORT "${ROUTER_PORT:-9010}"
pick_port FCGI_PORT "${FCGI_PORT:-9001}"
if [[ $BUS == redis ]]; then pick_port REDIS_PORT "${REDIS_PORT:-6390}"; fi
if [[ $BUS == nats ]]; then pick_port NATS_PORT "${NATS_PORT:-4232}"; fi

# ---------------------------------------------------------------- packages, build

case $BUS in
redis) "$root/scripts/deps.sh" demo-bus ;;
nats) "$root/scripts/deps.sh" demo-nats ;;
*) "$root/scripts/deps.sh" demo ;;
esac
say "building fooking"
"$MAKE" -s -C "$root" fooking

run=$(mktemp -d "${TMPDIR:-/tmp}/fooking-demo.XXXXXX")
pids=()
names=()
stopping=0

# True while pid $1 runs (a zombie waiting to be reaped does not count).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

cleanup() {
    local rc=$?
    trap - EXIT
    trap "" INT TERM # a second Ctrl-C (or TERM to the group) must not cut the cleanup short
    stopping=1
    if ((${#pids[@]})); then
        say "stopping"
        local i pid
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
            pid=${pids[i]}
            alive "$pid" || continue
            kill -TERM "$pid" 2>/dev/null || continue
            # Wait up to 5 s for it, then SIGKILL.
            for _ in $(seq 100); do
                alive "$pid" || break
                sleep 0.05
            done
            if alive "$pid"; then
                say "${names[i]} (pid $pid) did not stop, killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [[ ${KEEP_RUN_DIR:-0} == 1 || $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ]]; then
        say "logs and configs kept in $run"
    else
        rm -rf "$run"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: runs CMD in the background, output to LOG, in a session
# of its own: a Ctrl-C at the terminal reaches make and this script only, which
# then stops everything in order (gateway first), by pid.
start() {
    local name=$1 log=$2
    shift 2
    setsid "$@" </dev/null >>"$log" 2>&1 &
    pids+=("$!")
    names+=("$name")
}

# wait_port NAME PORT LOG: until PORT listens (10 s), or fail showing LOG.
wait_port() {
    local name=$1 port=$2 log=$3 pid=${pids[-1]}
    local deadline=$((SECONDS + 10))
    until listening "$port"; do
        if ! alive "$pid"; then
            tail -n 30 "$log" >&2 || true
            die "$name exited before listening on port $port (log: $log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$log" >&2 || true
            die "$name is not listening on port $port after 10 s (log: $log)"
        fi
        sleep 0.05
    done
}

# ---------------------------------------------------------------- redis (BUS=redis)

say "run directory $run"
bus_conf=""
if [[ $BUS == redis ]]; then
    start redis "$run/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$run" --daemonize no
    wait_port redis "$REDIS_PORT" "$run/redis.log"
    bus_conf="BUS = \"redis://127.0.0.1:$REDIS_PORT\""
elif [[ $BUS == nats ]]; then
    start nats "$run/nats.log" nats-server -a 127.0.0.1 -p "$NATS_PORT"
    wait_port nats "$NATS_PORT" "$run/nats.log"
    bus_conf="BUS = \"nats://127.0.0.1:$NATS_PORT\""
fi

# ---------------------------------------------------------------- backend

if [[ $BACKEND == php ]]; then
    fpm=$(ls /usr/sbin/php-fpm* 2>/dev/null | sort -r | head -n 1)
    [[ -x $fpm ]] || die "php-fpm not found (scripts/deps.sh demo installs php-fpm)"
    fpm_args=(-F -y "$run/php-fpm.conf")
    user=""
    if (($(id -u) == 0)); then
        fpm_args+=(-R)       # php-fpm refuses to run as root without it
        user=$'user = root\ngroup = root'
    fi
    cat >"$run/php-fpm.conf" <<EOF
[global]
pid = $run/php-fpm.pid
error_log = $run/php-fpm.log
daemonize = no
[chat]
$user
listen = 127.0.0.1:$FCGI_PORT
pm = static
pm.max_children = 4
catch_workers_output = yes
decorate_workers_output = no
clear_env = no
php_admin_value[error_log] = $run/php-fpm.log
php_admin_flag[log_errors] = on
EOF
    start php-fpm "$run/php-fpm.out" "$fpm" "${fpm_args[@]}"
    wait_port php-fpm "$FCGI_PORT" "$run/php-fpm.log"
    prefix=""
    params="SCRIPT_FILENAME = \"$root/example/chat/gateway.php\","
else
    say "building example/chat/gateway.go"
    gocache=${GOCACHE:-}
    if [[ -z $gocache ]]; then
        if [[ -n ${HOME:-} && -w ${HOME:-/nonexistent} ]]; then gocache=$HOME/.cache/go-build
        else gocache=$run/gocache; fi
    fi
    (cd "$root" && GO111MODULE=off CGO_ENABLED=0 GOCACHE=$gocache \
        GOPATH=/usr/share/gocode:$root/example/clients/go \
        go build -o "$run/chat-gateway" example/chat/gateway.go)
    start chat-gateway "$run/chat-gateway.log" "$run/chat-gateway" -listen "127.0.0.1:$FCGI_PORT" \
        -router "127.0.0.1:$ROUTER_PORT"
    wait_port chat-gateway "$FCGI_PORT" "$run/chat-gateway.log"
    prefix="HTTP_"
    params=""
fi

# ---------------------------------------------------------------- router, gateway

cat >"$run/router.lua" <<EOF
-- written by scripts/demo.sh
ROUTER = 1
HOST = "127.0.0.1"
PORT = $ROUTER_PORT
LOG_FILE = "$run/router.log"
LOG_LEVEL = 2
$bus_conf
EOF
start router "$run/router.out" "$root/fooking" "$run/router.lua"
wait_port router "$ROUTER_PORT" "$run/router.out"

# The gateway is linked to the router, or (BUS=redis) to the Redis bus the
# router publishes on.
if [[ -n $BUS ]]; then
    link_conf=$bus_conf
else
    link_conf=$'ROUTER_HOST = "127.0.0.1"\n'"ROUTER_PORT = $ROUTER_PORT"
fi
cat >"$run/gateway.lua" <<EOF
-- written by scripts/demo.sh
HOST = "$HOST"
PORT = $PORT
WORKER_NUM = $WORKER_NUM
LOG_FILE = "$run/gateway.log"
LOG_LEVEL = 2
PROTOCOL = "websocket"
STATIC_DIR = "$root/example/chat"
$link_conf
BACKEND_SERVER = "127.0.0.1:$FCGI_PORT"
EVENT_CONNECT = 1
EVENT_CLOSE = 1
FASTCGI_PREFIX = "$prefix"
FASTCGI_PARAMS = {
    $params
    REQUEST_METHOD = "POST",
    SERVER_PROTOCOL = "HTTP/1.1",
    ROUTER_HOST = "127.0.0.1",
    ROUTER_PORT = "$ROUTER_PORT",
}
EOF
start gateway "$run/gateway.out" "$root/fooking" "$run/gateway.lua"
wait_port gateway "$PORT" "$run/gateway.out"

url_host=$HOST
bus_note=""
if [[ $BUS == redis ]]; then bus_note=", bus redis://127.0.0.1:$REDIS_PORT"; fi
if [[ $BUS == nats ]]; then bus_note=", bus nats://127.0.0.1:$NATS_PORT"; fi
[[ $url_host == 0.0.0.0 ]] && url_host=127.0.0.1
cat <<EOF

  fooking chat demo ($BACKEND backend) is running:

      http://$url_host:$PORT/

  Open it in two browser windows, pick two nicknames and chat.
  backend 127.0.0.1:$FCGI_PORT, router 127.0.0.1:$ROUTER_PORT$bus_note
  logs: $run
  Press Ctrl-C to stop.

EOF

# Supervise: if any process dies, say which and stop the rest.
while true; do
    wait -n "${pids[@]}" 2>/dev/null || true
    ((stopping)) && break
    for i in "${!pids[@]}"; do
        if ! alive "${pids[i]}"; then
            say "${names[i]} (pid ${pids[i]}) exited; see $run"
            exit 1
        fi
    done
done
