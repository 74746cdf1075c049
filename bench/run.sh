#!/bin/bash
# bench/run.sh - runs every benchmark scenario against fooking, its peers
# (Pushpin, nginx + nchan) and the epoll baselines, on free loopback ports, and
# writes BENCHMARKS.md with tables and charts. `make bench` calls it.
#
#   bench/run.sh            the full run (about 10 minutes)
#   QUICK=1 bench/run.sh    fewer and shorter runs (about 2 minutes)
#
# Every server is started here with its own config in a temporary directory
# and stopped by its pid (trap on exit); every load run is bounded by the load
# generator's own duration and setup deadlines.
#
# Besides rates, it counts system calls per message (perf stat on the syscall
# tracepoints of the server's processes, or strace -c when perf cannot) and
# allocations per message (bench/build/malloc_count.so preloaded into a gateway
# of its own), each over a window that is exactly the load generator's measured
# window (loadgen -X).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
[ "${1:-}" = "--quick" ] && QUICK=1
[ "$QUICK" = "" ] && QUICK=0
RES=$ROOT/bench/results
RAW=$RES/results.txt
LG=$ROOT/bench/build/loadgen
TMP=$(mktemp -d /tmp/fooking-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()

log() { echo "[bench $(date +%T)] $*" >&2; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    mkdir -p "$RES/logs" && cp "$TMP"/*.log "$TMP"/*.out "$RES/logs/" 2>/dev/null # (not committed)
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench/deps.sh || log "deps.sh failed: peers that are missing are skipped"
make -s fooking || exit 1
# What was measured: the commit, and whether src/ had changes not committed yet.
FK_VERSION="$(git log -1 --format='%h %cs' -- src)"
[ -n "$(git status --porcelain src 2>/dev/null)" ] && FK_VERSION="$FK_VERSION + uncommitted src changes"
make -s -C bench || exit 1
mkdir -p "$RES"
rm -f "$RES"/*.png "$RES"/*.dat "$RES"/perf-*.txt "$RES"/syscount-commands.txt
: > "$RAW"

# Many connections: descriptors for us and for every server we start.
ulimit -Hn 1048576 2>/dev/null
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---- free loopback ports ----
NEXT_PORT=$((10000 + RANDOM % 20000)) # below the ephemeral range (32768-)
port() { # port VAR: sets VAR to a port nobody listens on (and that we did not hand out)
    while ss -Htan "sport = :$NEXT_PORT" | grep -q .; do NEXT_PORT=$((NEXT_PORT + 1)); done
    printf -v "$1" %d $NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}
wait_port() { # wait (up to 10 s) until something listens on $1
    for _ in $(seq 100); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done
    log "nothing listens on port $1"; return 1
}
stop() { # stop a server by pid and wait for it
    kill "$1" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null
}
children() { pgrep -P "$1" | paste -sd, ; }

# ---- servers ----
start_echo() {
    port ECHO_PORT
    "$ROOT/bench/build/fcgi_echo" -s -w 2 -l 127.0.0.1:$ECHO_PORT & ECHO_PID=$!
    PIDS+=($ECHO_PID)
    wait_port $ECHO_PORT
}
start_router() { # sets ROUTER_PORT, ROUTER_PID and ROUTER_HTTP (its HTTP API)
    port ROUTER_PORT
    port ROUTER_HTTP
    cat > "$TMP/router.lua" <<EOF
ROUTER = 1
HOST = "127.0.0.1"
PORT = $ROUTER_PORT
HTTP_PORT = $ROUTER_HTTP
LOG_FILE = "$TMP/router.log"
LOG_LEVEL = 1
EOF
    ./fooking "$TMP/router.lua" > "$TMP/router.out" 2>&1 & ROUTER_PID=$!
    PIDS+=($ROUTER_PID)
    wait_port $ROUTER_PORT
}
# start_bus: a redis-server and a stateless router on it (BUS); sets REDIS_PORT, BUS_ROUTER_PORT
start_bus() {
    command -v redis-server >/dev/null || return 1
    port REDIS_PORT
    redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no > "$TMP/redis.out" 2>&1 & REDIS_PID=$!
    PIDS+=($REDIS_PID)
    wait_port $REDIS_PORT
    port BUS_ROUTER_PORT
    cat > "$TMP/bus_router.lua" <<EOF
ROUTER = 1
HOST = "127.0.0.1"
PORT = $BUS_ROUTER_PORT
BUS = "redis://127.0.0.1:$REDIS_PORT"
LOG_FILE = "$TMP/bus_router.log"
LOG_LEVEL = 1
EOF
    ./fooking "$TMP/bus_router.lua" > "$TMP/bus_router.out" 2>&1 & BUS_ROUTER_PID=$!
    PIDS+=($BUS_ROUTER_PID)
    wait_port $BUS_ROUTER_PORT
}
# start_nats: a three-server nats-server cluster (each routes to the others) and
# a stateless router on server 0; sets NATS_PORTS (array), NATS_ROUTER_PORT
start_nats() {
    command -v nats-server >/dev/null || return 1
    local i j p c=() routes
    NATS_PORTS=(); NATS_PIDS=()
    for i in 0 1 2; do port p; NATS_PORTS+=($p); port p; c+=($p); done
    for i in 0 1 2; do
        routes=""
        for j in 0 1 2; do [ $j != $i ] && routes="$routes${routes:+,}nats://127.0.0.1:${c[$j]}"; done
        nats-server -a 127.0.0.1 -p ${NATS_PORTS[$i]} -n bench$i --cluster_name bench \
            --cluster nats://127.0.0.1:${c[$i]} --routes "$routes" > "$TMP/nats$i.out" 2>&1 &
        PIDS+=($!); NATS_PIDS+=($!)
    done
    for i in 0 1 2; do wait_port ${NATS_PORTS[$i]} || return 1; done
    # The routes are up once the servers logged their six ends.
    for _ in $(seq 100); do
        [ "$(cat "$TMP"/nats?.out | grep -c 'Route connection created')" -ge 6 ] && break
        sleep 0.1
    done
    port NATS_ROUTER_PORT
    cat > "$TMP/nats_router.lua" <<EOF
ROUTER = 1
HOST = "127.0.0.1"
PORT = $NATS_ROUTER_PORT
BUS = "$(nats_url 0)"
LOG_FILE = "$TMP/nats_router.log"
LOG_LEVEL = 1
EOF
    ./fooking "$TMP/nats_router.lua" > "$TMP/nats_router.out" 2>&1 & NATS_ROUTER_PID=$!
    PIDS+=($NATS_ROUTER_PID)
    wait_port $NATS_ROUTER_PORT
}
nats_url() { # nats_url I: BUS listing server I first, then the others
    local i=$1
    echo "nats://127.0.0.1:${NATS_PORTS[$i]},127.0.0.1:${NATS_PORTS[$(((i + 1) % 3))]},127.0.0.1:${NATS_PORTS[$(((i + 2) % 3))]}"
}
# start_gateway NAME PROTOCOL EVENT_CONNECT ROUTER(0/1/bus/natsI) [WORKERS] [MULTIPLEX]: sets GW_PORT, GW_PID
start_gateway() {
    port GW_PORT
    local router=""
    [ "$4" = 1 ] && router="ROUTER_HOST = \"127.0.0.1\"
ROUTER_PORT = $ROUTER_PORT"
    [ "$4" = bus ] && router="BUS = \"redis://127.0.0.1:$REDIS_PORT\""
    case $4 in nats*) router="BUS = \"$(nats_url ${4#nats})\"" ;; esac
    GW_SEQ=$((${GW_SEQ:-0} + 1)) # gateways on one router need distinct SERVER_IDs
    cat > "$TMP/$1.lua" <<EOF
HOST = "127.0.0.1"
PORT = $GW_PORT
SERVER_ID = $GW_SEQ
WORKER_NUM = ${5:-2}
LOG_FILE = "$TMP/$1.log"
LOG_LEVEL = 1
PROTOCOL = "$2"
BACKEND_SERVER = "127.0.0.1:$ECHO_PORT"
BACKEND_KEEPALIVE = 64
BACKEND_MAX_CONNS = 64
BACKEND_QUEUE_SIZE = 1000000
BACKEND_MULTIPLEX = ${6:-0}
EVENT_CONNECT = $3
EVENT_CLOSE = ${GW_EVENT_CLOSE:-1}
-- what a PHP backend gets from nginx; bench/baseline -m fcgi sends the same
FASTCGI_PARAMS = { SCRIPT_FILENAME = "/var/www/fooking/app/public/index.php",
                   REQUEST_METHOD = "POST", SERVER_PROTOCOL = "HTTP/1.1" }
$router
EOF
    env ${GW_ENV:-} ./fooking "$TMP/$1.lua" > "$TMP/$1.out" 2>&1 & GW_PID=$!
    PIDS+=($GW_PID)
    wait_port $GW_PORT
    sleep 0.3 # the workers, and their router links
}
start_baseline() { # MODE [PROCESSES]: sets BL_PORT, BL_PUB, BL_PID (fcgi: to the echo backend)
    port BL_PORT
    port BL_PUB
    NEXT_PORT=$((NEXT_PORT + 1)) # BL_PUB + 1 is the second process's
    env ${GW_ENV:-} "$ROOT/bench/build/baseline" -m "$1" -l 127.0.0.1:$BL_PORT -b 127.0.0.1:$ECHO_PORT \
        -P $BL_PUB -w ${2:-2} & BL_PID=$!
    PIDS+=($BL_PID)
    wait_port $BL_PORT
    sleep 0.2
}
HAVE_NGINX=0; command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] && HAVE_NGINX=1
HAVE_PUSHPIN=0; command -v pushpin >/dev/null && HAVE_PUSHPIN=1
# nginx: the nchan server (WebSocket subscribers, HTTP publish) and the
# Pushpin origin (WebSocket-over-HTTP events to the echo backend over FastCGI).
start_nginx() { # [WORKERS]
    NG=$TMP/nginx; mkdir -p "$NG"; chmod 777 "$NG"
    port NCHAN_PORT; port ORIGIN_PORT
    cat > "$NG/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes ${1:-2};
pid $NG/nginx.pid;
error_log $NG/error.log error;
events { worker_connections 20000; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $NG/body;
    fastcgi_temp_path $NG/fcgi;
    proxy_temp_path $NG/proxy;
    uwsgi_temp_path $NG/uwsgi;
    scgi_temp_path $NG/scgi;
    nchan_shared_memory_size 512m;
    server {
        listen 127.0.0.1:$NCHAN_PORT;
        keepalive_requests 100000000;
        location = /sub { nchan_subscriber websocket; nchan_channel_id \$arg_id; }
        location = /pub { nchan_publisher http; nchan_channel_id \$arg_id; nchan_store_messages off; }
    }
    upstream echo { server 127.0.0.1:$ECHO_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        keepalive_requests 100000000;
        location / {
            fastcgi_pass echo;
            fastcgi_keep_conn on;
            fastcgi_param CONTENT_TYPE \$content_type;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param SCRIPT_FILENAME /echo;
        }
    }
}
EOF
    nginx -c "$NG/nginx.conf" -e "$NG/error.log" || return 1
    wait_port $NCHAN_PORT
    NGINX_PID=$(cat "$NG/nginx.pid")
    PIDS+=($NGINX_PID)
}
stop_nginx() { stop "$NGINX_PID"; }
start_pushpin() {
    PP=$TMP/pushpin; mkdir -p "$PP/run" "$PP/log"
    port PUSHPIN_PORT
    local base; port base; NEXT_PORT=$((NEXT_PORT + 10))
    local offset=$((base - 5560)) # Pushpin's handler ports: 5560-5563 + offset
    sed -e "s|^rundir=.*|rundir=$PP/run|; s|^logdir=.*|logdir=$PP/log|; s|^http_port=.*|http_port=$PUSHPIN_PORT|" \
        -e "s|^port_offset=.*|port_offset=$offset|; s|^services=.*|services=condure,zurl,pushpin-proxy,pushpin-handler|" \
        -e "s|^routesfile=.*|routesfile=$PP/routes|; s|^ipc_prefix=.*|ipc_prefix=bench-|; s|^client_maxconn=.*|client_maxconn=120000|" \
        -e "s|^log_level=.*|log_level=0|" /etc/pushpin/pushpin.conf > "$PP/pushpin.conf"
    # zurl (Pushpin's HTTP client) runs under this runner, not as a system service.
    sed -i "/^\[proxy\]/a zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out" "$PP/pushpin.conf"
    echo "* 127.0.0.1:$ORIGIN_PORT,over_http" > "$PP/routes"
    pushpin --config="$PP/pushpin.conf" > "$PP/pushpin.out" 2>&1 & PUSHPIN_PID=$!
    PIDS+=($PUSHPIN_PID)
    wait_port $PUSHPIN_PORT && sleep 1
}

# run LABEL loadgen-args...: one load run; its RESULT line goes to results.txt
run() {
    local label=$1; shift
    local out
    out=$("$LG" -T "$label" "$@" 2> "$TMP/lg.err")
    grep -h '^[a-z].*: ' "$TMP/lg.err" | head -3 >&2
    if [ -n "$out" ]; then
        [ -n "${RUN_EXTRA:-}" ] && out="$out$($RUN_EXTRA)"
        echo "$out load=$(cut -d' ' -f1 /proc/loadavg) workers=${P:-2}" >> "$RAW"
    else
        log "$label: no result ($(tail -1 "$TMP/lg.err"))"
    fi
    echo "$out"
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# perf_profile NAME PIDS SECONDS: a CPU profile of those processes (background)
perf_profile() {
    [ "${PERF:-1}" = 1 ] && command -v perf >/dev/null || return 0
    ( sleep 0.8; perf record -q -g -o "$TMP/$1.perf" -p "$2" -- sleep "$3" >/dev/null 2>&1 &&
      perf report -i "$TMP/$1.perf" --no-children --sort comm,dso,sym -g none --percent-limit 0.5 \
          2>/dev/null | grep -v '^$' | head -70 > "$RES/perf-$1.txt" ) &
    PERF_JOB=$!
}
perf_wait() { [ -n "${PERF_JOB:-}" ] && wait "$PERF_JOB" 2>/dev/null; PERF_JOB=""; }
# profile_run NAME PIDS LOADGEN-ARGS...: the profile is taken in a run of its
# own, whose figures are not kept: a sampling profiler attached to fooking
# alone would slow the side of a pair it is measuring.
profile_run() {
    local name=$1 pids=$2; shift 2
    perf_profile "$name" "$pids" 1.5
    "$LG" -T "profile-$name" "$@" >/dev/null 2>&1 || true
    perf_wait
}

# ---- system calls and allocations per message ----
# The calls reported one by one; every other call is in sys_total.
SYSCALLS="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl ioctl brk mmap munmap"
SYSWIN=2 # seconds: the measured window of a counting run
USE_PERF=0
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then USE_PERF=1; fi
# sys_window FILE PIDS: the command loadgen -X runs: counts the system calls of
# PIDS (comma-separated) into FILE, and marks loadgen's window (SIGUSR1) once
# counting has started and before it stops, SYSWIN seconds apart. perf stat reads the
# kernel's syscall tracepoints (a few percent of overhead); strace -c, the
# fallback, stops the process at every call and so slows it several times,
# which changes how much each epoll_wait and read batch.
sys_window() {
    if [ $USE_PERF = 1 ]; then
        local ev="raw_syscalls:sys_enter" s
        for s in $SYSCALLS; do ev="$ev,syscalls:sys_enter_$s"; done
        echo "perf stat -x, -o $1 -e $ev -p $2 -- sh -c 'kill -USR1 \$LOADGEN_PID; sleep $SYSWIN; kill -USR1 \$LOADGEN_PID'"
    else
        echo "strace -c -f -o $1 -p ${2//,/ -p } & sleep 1; kill -USR1 \$LOADGEN_PID; sleep $SYSWIN; kill -USR1 \$LOADGEN_PID; kill -INT \$!; wait"
    fi
}
# sys_fields FILE: that count as RESULT fields (sys_total=N sys_read=N ...)
sys_fields() {
    if [ $USE_PERF = 1 ]; then
        awk -F, '$3 == "raw_syscalls:sys_enter" { printf " sys_total=%s", $1 }
                 $3 ~ /^syscalls:sys_enter_/ { n = $3; sub(/.*sys_enter_/, "", n); printf " sys_%s=%s", n, $1 }' "$1"
    else
        awk -v want=" $SYSCALLS " '$1 ~ /^[0-9.]+$/ && $NF != "total" {
                 c = (NF == 6) ? $(NF-2) : $(NF-1); t += c  # the errors column is empty or not
                 if (index(want, " " $NF " ")) printf " sys_%s=%s", $NF, c }
             END { printf " sys_total=%d", t }' "$1"
    fi
}
# alloc_window FILE PIDS: a SIGURG to each of PIDS (which run with
# malloc_count.so and MALLOC_COUNT_FILE=FILE) before and after SYSWIN seconds
alloc_window() {
    echo "kill -URG ${2//,/ }; kill -USR1 \$LOADGEN_PID; sleep $SYSWIN; kill -URG ${2//,/ }; kill -USR1 \$LOADGEN_PID"
}
# alloc_fields FILE: the difference between each process's two lines, summed
alloc_fields() {
    sleep 0.2 # the second dump
    awk '{ split($1, a, "="); pid = a[2]
           for (i = 2; i <= NF; i++) { split($i, kv, "="); if (pid in seen) d[kv[1]] += kv[2] - last[pid, kv[1]]; last[pid, kv[1]] = kv[2] }
           seen[pid] = 1 }
         END { for (k in d) printf " alloc_%s=%d", k, d[k] }' "$1"
}
# count_syscalls LABEL PIDS loadgen-args...: one load run whose measured window
# is a system-call count of PIDS; the counts go onto its RESULT line.
count_syscalls() {
    local label=$1 pids=$2 f=$TMP/$1.sys; shift 2
    rm -f "$f"
    RUN_EXTRA="sys_fields $f" run "$label" "$@" -X "$(sys_window "$f" "$pids")" >/dev/null
    echo "$label: $(sys_window "$f" "$pids")" >> "$RES/syscount-commands.txt"
}
# count_allocs LABEL PIDS ALLOCFILE loadgen-args...: the same for allocations
count_allocs() {
    local label=$1 pids=$2 f=$3; shift 3
    RUN_EXTRA="alloc_fields $f" run "$label" "$@" -X "$(alloc_window "$f" "$pids")" >/dev/null
}

if [ "$QUICK" = 1 ]; then
    D=1; W=0.5; NS="100 1000"; KS="1 8"; SS="64"; FANS="100 1000"; IDLES="10000 50000"; NCHAN_IDLES="10000"
    PUSHPIN_MAXN=100; PUSHPIN_SETUP=5; FAN_PAIRS=3
else
    D=3; W=1; NS="100 1000 5000"; KS="1 8"; SS="64 1024"; FANS="100 1000 10000"; IDLES="10000 50000 100000"; NCHAN_IDLES="10000 50000 100000"
    PUSHPIN_MAXN=1000; PUSHPIN_SETUP=10; FAN_PAIRS=5
fi
SRC="-B 2:8 -S 30" # 127.0.0.2-9: 8 x 28K ephemeral ports; 30 s at most to connect
START=$(date +%s)
log "results in $TMP, quick=$QUICK"

start_echo
start_router
start_gateway gw_length length 0 0; GWL_PORT=$GW_PORT; GWL_PID=$GW_PID
start_gateway gw_length_mpx length 0 0 2 1; GWLM_PORT=$GW_PORT; GWLM_PID=$GW_PID
start_gateway gw_ws_mpx websocket 0 1 2 1; GWWM_PORT=$GW_PORT; GWWM_PID=$GW_PID
start_baseline length; BLL_PORT=$BL_PORT
start_baseline fcgi; BLF_PORT=$BL_PORT; BLF_PID=$BL_PID
start_baseline ws; BLW_PORT=$BL_PORT; BLW_PUB=$BL_PUB; BLW_PID=$BL_PID
[ $HAVE_NGINX = 1 ] && start_nginx || HAVE_NGINX=0
[ $HAVE_NGINX = 1 ] || HAVE_PUSHPIN=0

# ---- (a) round trip ----
log "(a) round trip"
for S in $SS; do for K in $KS; do for N in $NS; do
    A="-s rt -n $N -k $K -b $S -d $D -w $W $SRC"
    if [ "$N" = 1000 ] && [ "$K" = 8 ] && [ "$S" = 64 ]; then
        profile_run rt-length "$(children $GWL_PID)" $A -p length -a 127.0.0.1:$GWL_PORT
    fi
    # fooking against the fcgi baseline is the ratio that matters: alternated,
    # three times each, and the best of each kept (report.py), so a burst of
    # the neighbours' work does not decide it
    for rep in 1 2 3; do
        run fooking-length $A -p length -a 127.0.0.1:$GWL_PORT >/dev/null
        run baseline-fcgi $A -p length -a 127.0.0.1:$BLF_PORT >/dev/null
    done
    run fooking-length-mpx $A -p length -a 127.0.0.1:$GWLM_PORT >/dev/null
    run baseline-length $A -p length -a 127.0.0.1:$BLL_PORT >/dev/null
    run fooking-ws-mpx $A -p ws -a 127.0.0.1:$GWWM_PORT >/dev/null
    if [ $HAVE_PUSHPIN = 1 ] && [ "$N" -le "$PUSHPIN_MAXN" ]; then
        # A fresh Pushpin for every run: a backlog left by one run would sink the next.
        start_pushpin && run pushpin $A -S $PUSHPIN_SETUP -p ws -a 127.0.0.1:$PUSHPIN_PORT >/dev/null
        stop "$PUSHPIN_PID"
    fi
    run baseline-ws $A -p ws -a 127.0.0.1:$BLW_PORT >/dev/null
done; done; done
perf_wait

# p99 at half (and a quarter of) the maximum throughput (open loop), 1000 clients
for PROTO in length ws; do
    port_var=$([ $PROTO = length ] && echo $GWLM_PORT || echo $GWWM_PORT)
    max=$(grep "label=fooking-$PROTO-mpx .*n=1000 k=8 s=64 " "$RAW" | tail -1 | tr ' ' '\n' | sed -n 's/^rate=//p')
    [ -z "$max" ] && continue
    run fooking-$PROTO-mpx-half -s rt -p $PROTO -n 1000 -k 8 -b 64 -d $D -w $W $SRC -r $((max / 2)) -a 127.0.0.1:$port_var >/dev/null
    run fooking-$PROTO-mpx-quarter -s rt -p $PROTO -n 1000 -k 8 -b 64 -d $D -w $W $SRC -r $((max / 4)) -a 127.0.0.1:$port_var >/dev/null
done
# the same offered rate for fooking (one request per backend connection) and
# the fcgi baseline: half of the baseline's closed-loop maximum
bmax=$(grep "label=baseline-fcgi .*n=1000 k=8 s=64 " "$RAW" | tail -1 | tr ' ' '\n' | sed -n 's/^rate=//p')
if [ -n "$bmax" ]; then
    run fooking-length-half -s rt -p length -n 1000 -k 8 -b 64 -d $D -w $W $SRC -r $((bmax / 2)) -a 127.0.0.1:$GWL_PORT >/dev/null
    run baseline-fcgi-half -s rt -p length -n 1000 -k 8 -b 64 -d $D -w $W $SRC -r $((bmax / 2)) -a 127.0.0.1:$BLF_PORT >/dev/null
fi

# ---- (e) system calls and allocations per round trip ----
# 100 clients x 1 in flight, 64 bytes, length protocol, one request per backend
# connection: fooking's two workers against the fcgi baseline's two processes.
log "(e) system calls and allocations per message"
RT1="-s rt -p length -n 100 -k 1 -b 64 -w $W $SRC"
count_syscalls fooking-length-sys "$(children $GWL_PID)" $RT1 -a 127.0.0.1:$GWL_PORT
count_syscalls baseline-fcgi-sys "$BLF_PID,$(children $BLF_PID)" $RT1 -a 127.0.0.1:$BLF_PORT
# Allocations: a gateway (and a baseline) of their own with the counter preloaded.
MC=$ROOT/bench/build/malloc_count.so
GW_ENV="LD_PRELOAD=$MC MALLOC_COUNT_FILE=$TMP/alloc-gw.txt" start_gateway gw_alloc length 0 0
count_allocs fooking-length-alloc "$(children $GW_PID)" "$TMP/alloc-gw.txt" $RT1 -a 127.0.0.1:$GW_PORT
stop "$GW_PID"
# ... and in fan-out: SEND_ALL through the router to 1000 WebSocket subscribers.
GW_ENV="LD_PRELOAD=$MC MALLOC_COUNT_FILE=$TMP/alloc-fan.txt" start_gateway gw_fan_alloc websocket 0 1
count_allocs fooking-fanout-alloc "$(children $GW_PID)" "$TMP/alloc-fan.txt" \
    -s fanout -p ws -n 1000 -b 64 -w $W $SRC -P sendall -a 127.0.0.1:$GW_PORT -R 127.0.0.1:$ROUTER_PORT
stop "$GW_PID"
GW_ENV="LD_PRELOAD=$MC MALLOC_COUNT_FILE=$TMP/alloc-bl.txt" start_baseline fcgi
count_allocs baseline-fcgi-alloc "$BL_PID,$(children $BL_PID)" "$TMP/alloc-bl.txt" $RT1 -a 127.0.0.1:$BL_PORT
stop "$BL_PID"
stop "$BLF_PID"

# ---- (b) fan-out ----
# Fresh router and gateways: a scenario never runs on a heap and a router that
# the previous one left behind.
log "(b) fan-out"
stop "$GWWM_PID"; stop "$GWLM_PID"; stop "$GWL_PID"; stop "$ROUTER_PID"
start_router
start_gateway gw_ws_fan websocket 0 1; GWW_PORT=$GW_PORT; GWW_PID=$GW_PID
for N in $FANS; do
    S=64; [ "$N" = 100 ] && S=16
    A="-s fanout -p ws -n $N -b $S -d $D -w $W $SRC"
    [ "$N" = 1000 ] && profile_run fanout "$(children $GWW_PID),$ROUTER_PID" $A -P sendall \
        -a 127.0.0.1:$GWW_PORT -R 127.0.0.1:$ROUTER_PORT
    # fooking and the baseline alternated FAN_PAIRS times (the report takes
    # the median of the pairs' ratios, as for round trips): one run is short
    # next to the swings a shared machine puts into a fan-out's closed loop.
    for rep in $(seq $FAN_PAIRS); do
    run fooking-sendall $A -P sendall -a 127.0.0.1:$GWW_PORT -R 127.0.0.1:$ROUTER_PORT >/dev/null
    run baseline-fanout $A -P sendall -a 127.0.0.1:$BLW_PORT -R 127.0.0.1:$BLW_PUB -R 127.0.0.1:$((BLW_PUB + 1)) >/dev/null
    [ $rep -le 2 ] && [ "$N" != 100 ] && [ $HAVE_NGINX = 1 ] && run nchan $A -P http -u "/sub?id=bench" -a 127.0.0.1:$NCHAN_PORT \
        -R 127.0.0.1:$NCHAN_PORT -R 127.0.0.1:$NCHAN_PORT -R 127.0.0.1:$NCHAN_PORT -R 127.0.0.1:$NCHAN_PORT >/dev/null
    done
done
# System calls per delivery: SEND_ALL to 1000 subscribers, the gateway's workers
# (the router's calls are per publication, not per recipient), and the baseline.
FA="-s fanout -p ws -n 1000 -b 64 -w $W $SRC -P sendall"
count_syscalls fooking-sendall-sys "$(children $GWW_PID)" $FA -a 127.0.0.1:$GWW_PORT -R 127.0.0.1:$ROUTER_PORT
count_syscalls baseline-fanout-sys "$BLW_PID,$(children $BLW_PID)" $FA -a 127.0.0.1:$BLW_PORT \
    -R 127.0.0.1:$BLW_PUB -R 127.0.0.1:$((BLW_PUB + 1))
# The same SEND_ALL through a stateless router on the Redis bus (DESIGN §9)
if start_bus; then
    start_gateway gw_ws_bus websocket 0 bus; GWB_PORT=$GW_PORT; GWB_PID=$GW_PID
    sleep 0.5 # the workers subscribe to the bus once connected
    for N in $FANS; do
        S=64; [ "$N" = 100 ] && S=16
        run fooking-bus-sendall -s fanout -p ws -n $N -b $S -d $D -w $W $SRC -P sendall \
            -a 127.0.0.1:$GWB_PORT -R 127.0.0.1:$BUS_ROUTER_PORT >/dev/null
    done
    stop "$GWB_PID"; stop "$BUS_ROUTER_PID"; stop "$REDIS_PID"
fi
# ... and on a three-server NATS cluster (DESIGN §16): first one gateway (two
# workers) on the router's server, then two gateways (one worker each) on the
# two other servers, so every delivery crosses a route between servers.
if start_nats; then
    start_gateway gw_ws_nats websocket 0 nats0; GWN_PORT=$GW_PORT; GWN_PID=$GW_PID
    sleep 0.5 # the workers subscribe once connected
    for N in $FANS; do
        S=64; [ "$N" = 100 ] && S=16
        run fooking-nats-sendall -s fanout -p ws -n $N -b $S -d $D -w $W $SRC -P sendall \
            -a 127.0.0.1:$GWN_PORT -R 127.0.0.1:$NATS_ROUTER_PORT >/dev/null
    done
    stop "$GWN_PID"
    start_gateway gw_ws_nats1 websocket 0 nats1 1; GWN1_PORT=$GW_PORT; GWN1_PID=$GW_PID
    start_gateway gw_ws_nats2 websocket 0 nats2 1; GWN2_PORT=$GW_PORT; GWN2_PID=$GW_PID
    sleep 0.5
    for N in $FANS; do
        S=64; [ "$N" = 100 ] && S=16
        run fooking-nats2-sendall -s fanout -p ws -n $N -b $S -d $D -w $W $SRC -P sendall \
            -a 127.0.0.1:$GWN1_PORT -a 127.0.0.1:$GWN2_PORT -R 127.0.0.1:$NATS_ROUTER_PORT >/dev/null
    done
    stop "$GWN1_PID"; stop "$GWN2_PID"; stop "$NATS_ROUTER_PID"
    for p in "${NATS_PIDS[@]}"; do stop "$p"; done
fi
# CH_PUB needs the subscribers' SIDs: a gateway that posts EVENT=1, whose reply is the SID
start_gateway gw_ws_ev websocket 1 1; GWE_PORT=$GW_PORT; GWE_PID=$GW_PID
for N in $FANS; do
    S=64; [ "$N" = 100 ] && S=16
    for rep in 1 2; do
        run fooking-chpub -s fanout -p ws -n $N -b $S -d $D -w $W $SRC -P chpub -a 127.0.0.1:$GWE_PORT -R 127.0.0.1:$ROUTER_PORT >/dev/null
    done
done

# ---- (b2) router commands: the HTTP API beside the binary protocol ----
# Broadcasts to 10 WebSocket subscribers (one gateway, two workers), so the
# router's command rate is what is measured: binary SEND_ALL on one backend
# connection (pipelined, at most 10000 outstanding) against POST
# /api/broadcast on 16 keep-alive HTTP/1.1 connections, one request in
# flight each. Commands per second = deliveries per second / 10.
log "(b2) router commands: HTTP API vs binary"
HTTP_R=""; for _ in $(seq 16); do HTTP_R="$HTTP_R -R 127.0.0.1:$ROUTER_HTTP"; done
CMD="-s fanout -p ws -n 10 -b 64 -d $D -w $W $SRC"
for rep in $(seq $FAN_PAIRS); do
    run fooking-cmd-binary $CMD -P sendall -a 127.0.0.1:$GWW_PORT -R 127.0.0.1:$ROUTER_PORT >/dev/null
    run fooking-cmd-http $CMD -P api -a 127.0.0.1:$GWW_PORT $HTTP_R >/dev/null
done

# ---- (d) connect rate ----
log "(d) connect rate"
CA="-s connect -p ws -n 512 -k 64 -d $D -w $W $SRC"
# the baseline's work exactly (accept, handshake, close): no event to the backend
GW_EVENT_CLOSE=0 start_gateway gw_ws_bare websocket 0 0; GWX_PORT=$GW_PORT; GWX_PID=$GW_PID
for rep in 1 2 3; do # alternated, the best of each kept (as above)
    run fooking-connect-bare $CA -a 127.0.0.1:$GWX_PORT >/dev/null
    run baseline-connect $CA -a 127.0.0.1:$BLW_PORT >/dev/null
    run fooking-connect $CA -a 127.0.0.1:$GWW_PORT >/dev/null
done
stop "$GWX_PID"
run fooking-connect-event $CA -a 127.0.0.1:$GWE_PORT >/dev/null
[ $HAVE_NGINX = 1 ] && run nchan-connect $CA -u "/sub?id=bench" -a 127.0.0.1:$NCHAN_PORT >/dev/null
stop "$GWE_PID"; stop "$GWW_PID"; stop "$BLW_PID"
[ $HAVE_NGINX = 1 ] && stop_nginx

# ---- (c) idle connections: fresh servers for each count ----
# This sandbox caps every process at $(ulimit -Hn) descriptors (no CAP_SYS_RESOURCE to
# raise it), so past ~24K connections the servers get more workers (about 12K
# connections each; the same count for fooking, nginx and the baseline) and the
# load generator more processes. Memory per connection is what is compared.
log "(c) idle connections"
idle_procs() { local p=$(( ($1 + 11999) / 12000 )); [ $p -lt 2 ] && p=2; echo $p; }
for N in $IDLES; do
    P=$(idle_procs $N)
    stop "$ROUTER_PID"; start_router
    start_gateway gw_idle websocket 0 1 $P
    run fooking-idle -s idle -p ws -n $N -j $P $SRC -H 2 -a 127.0.0.1:$GW_PORT \
        -m "gateway=$GW_PID,$(children $GW_PID)" -m "router=$ROUTER_PID" >/dev/null
    stop "$GW_PID"
    start_baseline ws $P
    run baseline-idle -s idle -p ws -n $N -j $P $SRC -H 1 -a 127.0.0.1:$BL_PORT -m "baseline=$BL_PID,$(children $BL_PID)" >/dev/null
    stop "$BL_PID"
done
if [ $HAVE_NGINX = 1 ]; then
    for N in $NCHAN_IDLES; do
        P=$(idle_procs $N)
        start_nginx $P
        run nchan-idle -s idle -p ws -n $N -j $P $SRC -H 2 -u "/sub?id=idle" -a 127.0.0.1:$NCHAN_PORT \
            -m "nginx=$NGINX_PID,$(children $NGINX_PID)" >/dev/null
        stop_nginx
    done
fi

# ---- backend API v2: memory per bound uid and per channel membership ----
log "(f) memory per uid and membership (100K sessions)"
make -s build/rtable_mem build/gw_mem
for t in rtable_mem gw_mem; do
    build/$t 100000 | grep '^RESULT' | sed "s/\$/ load=$(cut -d' ' -f1 /proc/loadavg)/" >> "$RAW"
done

# ---- the report ----
END=$(date +%s)
log "runs took $((END - START)) s; writing BENCHMARKS.md"
python3 bench/report.py --raw "$RAW" --out BENCHMARKS.md --results "$RES" --quick "$QUICK" --version "$FK_VERSION" \
    --seconds $((END - START)) --command "$([ "$QUICK" = 1 ] && echo 'make bench QUICK=1' || echo 'make bench')"
