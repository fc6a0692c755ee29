#!/usr/bin/env bash
# Strait load benchmark: a Strait gateway pair and an HAProxy pair (TLS 1.3, mutual auth),
# one thread each, in front of the same nginx and iperf3 backends, on loopback only.
# Systems take turns round by round; prints per-round values, medians and Strait/HAProxy
# ratios, a goal summary, and writes it as JSON to benches/results/latest.json.
#
#   bash benches/load.sh                 # ROUNDS=3 by default
#   ROUNDS=5 DURATION=10 bash benches/load.sh
#
# See benches/README.md for what is measured and what it needs.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

ROUNDS=${ROUNDS:-3}              # rounds; each runs Strait, then HAProxy, then direct
DURATION=${DURATION:-5}          # seconds of each wrk / oha / iperf3 run
CONNS=${CONNS:-64}               # wrk connections (keep-alive and Connection: close)
RATE=${RATE:-2000}               # fixed request rate of the latency run (oha -q)
LAT_CONNS=${LAT_CONNS:-16}       # oha connections of the latency run
LAT_WARMUP=${LAT_WARMUP:-1}      # seconds at the start of the latency run left out of p50/p99
COLD_CONNS=${COLD_CONNS:-64}     # simultaneous connections right after a cold start
IDLE_CONNS=${IDLE_CONNS:-1000}   # idle proxied connections for the memory measurement
LARGE_MIB=${LARGE_MIB:-1024}     # size of the large file served by nginx
NET=${NET:-127.77.0}             # loopback /24 the benchmark's addresses live in
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
TOOLS_DIR=$BENCH_DIR/.tools
KEEP=${KEEP:-0}                  # 1: keep the temporary folder (configs, logs, raw outputs)

case "$NET" in 127.*) ;; *) echo "NET must be inside 127.0.0.0/8 (loopback only)" >&2; exit 2 ;; esac
for v in ROUNDS DURATION CONNS RATE LAT_CONNS LAT_WARMUP COLD_CONNS IDLE_CONNS LARGE_MIB; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done

A_STRAIT=$NET.1      # Strait gw-a: where clients connect
B_STRAIT=$NET.2      # Strait gw-b
A_HAP=$NET.3         # HAProxy side A: where clients connect
B_HAP=$NET.4         # HAProxy side B
BACKEND=$NET.5       # nginx and iperf3

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()
W=""
OHA_BUILD_PID=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}" $OHA_BUILD_PID; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}" $OHA_BUILD_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    exec 8>&- 9>&- 2>/dev/null
    if [[ -n $W && -d $W ]]; then
        if [[ $KEEP == 1 || $rc != 0 ]]; then log "kept temporary folder $W"; else rm -rf "$W"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # PID: drop from the cleanup list
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

STOP_RC=0
stop_pid() { # PID [NAME]: SIGTERM, wait up to 10 s, then SIGKILL; exit status in STOP_RC
    local pid=$1
    STOP_RC=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        log "${2:-$pid} did not stop within 5 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
    forget_pid "$pid"
}

wait_listen() { # ADDR PORT [SECONDS]
    local deadline=$((SECONDS + ${3:-10}))
    until [[ -n $(ss -Hltn "src $1:$2") ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.005
    done
}

wait_line() { # FILE PATTERN PID [SECONDS]: wait until FILE has a line matching PATTERN
    local deadline=$((SECONDS + ${4:-20}))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.002
    done
}

rss_kib() { # PID...: sum of VmRSS in KiB
    local sum=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        sum=$((sum + v))
    done
    echo "$sum"
}

cpu_ticks() { # PID...: sum of utime+stime in clock ticks
    local sum=0 pid
    for pid in "$@"; do
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$sum"
}

# ---------------------------------------------------------------- tools
need=()
for pair in haproxy:haproxy nginx:nginx wrk:wrk iperf3:iperf3 curl:curl ss:iproute2; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[[ -x /usr/bin/python3 ]] || need+=(python3)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${need[@]}" >&2; } \
        || die "could not install ${need[*]}"
fi
PY=/usr/bin/python3
HELPER="$PY $BENCH_DIR/bench.py"

# oha: the fixed-rate latency load generator; a long build, so started first, in the background.
OHA=${OHA:-}                     # path of an oha binary; "none" skips the latency runs
if [[ $OHA == none ]]; then
    OHA=""
elif [[ -z $OHA ]]; then
    if command -v oha >/dev/null; then
        OHA=$(command -v oha)
    elif [[ -x $TOOLS_DIR/bin/oha ]]; then
        OHA=$TOOLS_DIR/bin/oha
    elif command -v cargo >/dev/null; then
        mkdir -p "$TOOLS_DIR"
        log "building oha in the background: cargo install oha --locked --root $TOOLS_DIR (log: $TOOLS_DIR/oha-install.log)"
        cargo install oha --locked --root "$TOOLS_DIR" >"$TOOLS_DIR/oha-install.log" 2>&1 &
        OHA_BUILD_PID=$!
    fi
fi

log "building Strait: cargo build --release"
(cd "$ROOT" && cargo build --release >&2) || die "cargo build --release failed"
STRAIT=$ROOT/target/release/strait
[[ -x $STRAIT ]] || die "no $STRAIT"

if [[ -n $OHA_BUILD_PID ]]; then
    log "waiting for the oha build to finish (it must not compete with the measurements)"
    if wait "$OHA_BUILD_PID" && [[ -x $TOOLS_DIR/bin/oha ]]; then
        OHA=$TOOLS_DIR/bin/oha
    else
        log "oha could not be built; see $TOOLS_DIR/oha-install.log. The latency runs are skipped."
    fi
    OHA_BUILD_PID=""
fi
if [[ -n $OHA ]]; then
    export PATH="$(dirname "$OHA"):$PATH"
    oha_help=$("$OHA" --help 2>&1 || true)
    if [[ $oha_help == *--output-format* ]]; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi
    OHA_EXTRA=() OHA_DB=()
    [[ $oha_help != *--latency-correction* ]] || OHA_EXTRA+=(--latency-correction)
    [[ $oha_help != *--db-url* ]] || OHA_DB=(--db-url=)
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= 4 * IDLE_CONNS + 2000)) || die "open-files limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS"

# ---------------------------------------------------------------- layout
W=$(mktemp -d /tmp/strait-bench.XXXXXX)
mkdir -p "$W"/{certs,strait,haproxy,nginx/www,nginx/tmp,raw} "$RESULTS_DIR"
RESULTS=$W/results.tsv
: >"$RESULTS"
record() { # METRIC SYSTEM ROUND VALUE [NOTE]
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$RESULTS"
}
note() { printf '#note\t%s\n' "$*" >>"$RESULTS"; log "note: $*"; }
meta() { printf '#meta\t%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

BASE=$($HELPER freeports "$A_STRAIT" "$B_STRAIT" "$A_HAP" "$B_HAP" "$BACKEND" --count 20 --lo 20000 --hi 32000) \
    || die "no free ports on $NET.1-5"
P_A_ADMIN=$BASE;        P_A_TUNNEL=$((BASE + 1)); P_A_WEB=$((BASE + 2)); P_A_BULK=$((BASE + 3))
P_B_ADMIN=$((BASE + 4)); P_B_TUNNEL=$((BASE + 5))
P_HA_WEB=$((BASE + 6));  P_HA_BULK=$((BASE + 7));  P_HB_WEB=$((BASE + 8)); P_HB_BULK=$((BASE + 9))
P_NGINX=$((BASE + 10));  P_IPERF=$((BASE + 11))
log "work folder $W; addresses $NET.1-5, ports $BASE-$((BASE + 11))"

# Certificates: one CA, one certificate per side, shared by both pairs.
"$STRAIT" certs ca --trust-domain strait.local --out "$W/certs" >&2
for gw in gw-a gw-b; do
    "$STRAIT" certs issue --ca "$W/certs" --name "$gw" --out "$W/certs" >&2
    cat "$W/certs/$gw.pem" "$W/certs/$gw-key.pem" >"$W/certs/$gw-combined.pem" # for HAProxy
done

# Backend: nginx (small and large static file) and an iperf3 server.
head -c 1024 /dev/zero | tr '\0' 'x' >"$W/nginx/www/small.html"
truncate -s "${LARGE_MIB}M" "$W/nginx/www/large.bin"
cat >"$W/nginx/nginx.conf" <<EOF
daemon off;
user root;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_header_timeout 600s;
    client_body_temp_path $W/nginx/tmp/body;
    proxy_temp_path $W/nginx/tmp/proxy;
    fastcgi_temp_path $W/nginx/tmp/fastcgi;
    uwsgi_temp_path $W/nginx/tmp/uwsgi;
    scgi_temp_path $W/nginx/tmp/scgi;
    server {
        listen $BACKEND:$P_NGINX;
        root $W/nginx/www;
    }
}
EOF

# Strait pair: gw-a has no endpoints, so its tcp listeners go through the tunnel to gw-b.
cat >"$W/strait/gw-a.toml" <<EOF
[gateway]
name = "gw-a"
region = "region-a"
zone = "zone-a1"
drain_timeout = "1s"

[admin]
listen = "$A_STRAIT:$P_A_ADMIN"

[tls]
trust_bundle = "$W/certs/ca.pem"
cert = "$W/certs/gw-a.pem"
key = "$W/certs/gw-a-key.pem"

[tunnel]
listen = "$A_STRAIT:$P_A_TUNNEL"

[[peers]]
name = "gw-b"
region = "region-b"
address = "$B_STRAIT:$P_B_TUNNEL"
identity = "spiffe://strait.local/gateway/gw-b"

[[services]]
name = "web"
port = 80
protocol = "tcp"

[[services]]
name = "iperf"
port = 5201
protocol = "tcp"

[[listeners]]
name = "web"
protocol = "tcp"
listen = "$A_STRAIT:$P_A_WEB"
service = "web.default:80"

[[listeners]]
name = "bulk"
protocol = "tcp"
listen = "$A_STRAIT:$P_A_BULK"
service = "iperf.default:5201"
EOF
cat >"$W/strait/gw-b.toml" <<EOF
[gateway]
name = "gw-b"
region = "region-b"
zone = "zone-b1"
drain_timeout = "1s"

[admin]
listen = "$B_STRAIT:$P_B_ADMIN"

[tls]
trust_bundle = "$W/certs/ca.pem"
cert = "$W/certs/gw-b.pem"
key = "$W/certs/gw-b-key.pem"

[tunnel]
listen = "$B_STRAIT:$P_B_TUNNEL"

[[peers]]
name = "gw-a"
region = "region-a"
address = "$A_STRAIT:$P_A_TUNNEL"
identity = "spiffe://strait.local/gateway/gw-a"

[[services]]
name = "web"
port = 80
protocol = "tcp"
exported = true
endpoints = [{ address = "$BACKEND:$P_NGINX" }]

[[services]]
name = "iperf"
port = 5201
protocol = "tcp"
exported = true
endpoints = [{ address = "$BACKEND:$P_IPERF" }]
EOF
for gw in gw-a gw-b; do
    "$STRAIT" check --config "$W/strait/$gw.toml" >&2 || die "strait check failed for $gw.toml"
done

# HAProxy pair from the templates.
fill() { # TEMPLATE OUT
    sed -e "s|@A_ADDR@|$A_HAP|g" -e "s|@B_ADDR@|$B_HAP|g" -e "s|@BACKEND_ADDR@|$BACKEND|g" \
        -e "s|@A_WEB_PORT@|$P_HA_WEB|g" -e "s|@A_BULK_PORT@|$P_HA_BULK|g" \
        -e "s|@B_WEB_PORT@|$P_HB_WEB|g" -e "s|@B_BULK_PORT@|$P_HB_BULK|g" \
        -e "s|@NGINX_PORT@|$P_NGINX|g" -e "s|@IPERF_PORT@|$P_IPERF|g" \
        -e "s|@CA@|$W/certs/ca.pem|g" -e "s|@A_PEM@|$W/certs/gw-a-combined.pem|g" \
        -e "s|@B_PEM@|$W/certs/gw-b-combined.pem|g" "$1" >"$2"
    [[ $(grep -v '^[[:space:]]*#' "$2") != *@[A-Z]*@* ]] || die "unfilled placeholder in $2"
}
fill "$BENCH_DIR/haproxy/a.cfg.tmpl" "$W/haproxy/a.cfg"
fill "$BENCH_DIR/haproxy/b.cfg.tmpl" "$W/haproxy/b.cfg"
for side in a b; do haproxy -c -q -f "$W/haproxy/$side.cfg" >&2 || die "haproxy -c failed for $side.cfg"; done

# ---------------------------------------------------------------- backends
nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" >"$W/nginx/stdout" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
iperf3 -s -B "$BACKEND" -p "$P_IPERF" >"$W/raw/iperf3-server.log" 2>&1 &
IPERF_PID=$!; PIDS+=("$IPERF_PID")
wait_listen "$BACKEND" "$P_NGINX" || die "nginx did not start; see $W/nginx/error.log"
wait_listen "$BACKEND" "$P_IPERF" || die "iperf3 -s did not start"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$BACKEND:$P_NGINX/small.html")
[[ $code == 200 ]] || die "nginx answers $code"

# ---------------------------------------------------------------- pairs
# Each system is started fresh once per round (so the first requests are a cold start) and
# stopped at the end of its turn. Strait: one tokio worker thread per gateway; HAProxy:
# nbthread 1 per side.
PAIR_PIDS=()
start_pair() { # SYSTEM
    PAIR_PIDS=()
    case $1 in
    strait)
        local gw addr
        for gw in gw-b gw-a; do
            : >"$W/strait/$gw.out"
            NO_COLOR=1 TOKIO_WORKER_THREADS=1 "$STRAIT" run --config "$W/strait/$gw.toml" \
                >"$W/strait/$gw.out" 2>>"$W/strait/$gw.err" &
            PIDS+=("$!"); PAIR_PIDS+=("$!")
            wait_line "$W/strait/$gw.out" '"event":"ready"' "$!" ||
                die "strait $gw did not get ready; see $W/strait/$gw.err"
        done
        ;;
    haproxy)
        haproxy -db -f "$W/haproxy/b.cfg" >>"$W/haproxy/b.log" 2>&1 &
        PIDS+=("$!"); PAIR_PIDS+=("$!")
        wait_listen "$B_HAP" "$P_HB_WEB" && wait_listen "$B_HAP" "$P_HB_BULK" ||
            die "haproxy B did not start; see $W/haproxy/b.log"
        haproxy -db -f "$W/haproxy/a.cfg" >>"$W/haproxy/a.log" 2>&1 &
        PIDS+=("$!"); PAIR_PIDS+=("$!")
        wait_listen "$A_HAP" "$P_HA_WEB" && wait_listen "$A_HAP" "$P_HA_BULK" ||
            die "haproxy A did not start; see $W/haproxy/a.log"
        ;;
    esac
}

stop_pair() { # SYSTEM ROUND
    local pid i
    # Stop the client side first, like an orderly rollout would.
    for ((i = ${#PAIR_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PAIR_PIDS[i]}
        stop_pid "$pid" "$1"
        if [[ $1 == strait && $STOP_RC != 0 ]]; then note "round $2: a strait process exited with status $STOP_RC after SIGTERM"; fi
    done
    PAIR_PIDS=()
}

web_target() { # SYSTEM -> host:port of the plain-TCP entry for HTTP
    case $1 in
    strait) echo "$A_STRAIT:$P_A_WEB" ;;
    haproxy) echo "$A_HAP:$P_HA_WEB" ;;
    direct) echo "$BACKEND:$P_NGINX" ;;
    esac
}
bulk_target() { # SYSTEM -> host port of the iperf3 entry
    case $1 in
    strait) echo "$A_STRAIT $P_A_BULK" ;;
    haproxy) echo "$A_HAP $P_HA_BULK" ;;
    direct) echo "$BACKEND $P_IPERF" ;;
    esac
}

# ---------------------------------------------------------------- measurements
errs_note() { # JSON from bench.py: errors object -> "k=v ..." or ""
    $PY -c 'import json,sys; e=json.load(sys.stdin).get("errors") or {}; print(" ".join(f"{k}={v}" for k,v in e.items()))'
}
jget() { # KEY: read one field of a JSON object on stdin
    $PY -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("NA" if v is None else v)' "$1"
}

arm_cold() { # SYSTEM ROUND: start the burst client, waiting on a fifo, before the pair starts
    local target; target=$(web_target "$1")
    COLD_OUT=$W/raw/cold-$1-$2.txt
    rm -f "$W/go"; mkfifo "$W/go"
    $HELPER burst "${target%:*}" "${target##*:}" /small.html "$COLD_CONNS" <"$W/go" >"$COLD_OUT" 2>&1 &
    COLD_PID=$!; PIDS+=("$COLD_PID")
    exec 9>"$W/go"
}

fire_cold() { # SYSTEM ROUND
    COLD_READY_T=$(date +%s.%N)
    echo go >&9
    exec 9>&-
    local rc=0
    timeout 30 tail --pid="$COLD_PID" -f /dev/null || true
    wait "$COLD_PID" || rc=$?
    forget_pid "$COLD_PID"
    local res; res=$(tail -n 1 "$COLD_OUT")
    local max failed; max=$(jget max_ms <<<"$res") || max=NA
    failed=$(jget failed <<<"$res") || failed=NA
    local n=""; [[ $failed == 0 ]] || n="failed=$failed of $COLD_CONNS"
    [[ $rc == 0 ]] || n="$n burst client exit $rc"
    record cold_max_ms "$1" "$2" "$max" "$n"
    local lag; lag=$(jget t_go <<<"$res" | awk -v r="$COLD_READY_T" '$1 != "NA" {printf "%.1f", ($1 - r) * 1000}')
    log "  cold start: worst of $COLD_CONNS = $max ms ${n:+($n) }(burst began ${lag:-?} ms after the pair was ready)"
}

idle_test() { # SYSTEM ROUND
    local sys=$1 r=$2 target; target=$(web_target "$sys")
    sleep 1
    local base; base=$(rss_kib "${PAIR_PIDS[@]}")
    local p before=()
    for p in "${PAIR_PIDS[@]}"; do before+=("$(rss_kib "$p")"); done
    local out=$W/raw/idle-$sys-$r.txt
    rm -f "$W/idle"; mkfifo "$W/idle"
    $HELPER idle "${target%:*}" "${target##*:}" "$IDLE_CONNS" <"$W/idle" >"$out" 2>&1 &
    local ipid=$!; PIDS+=("$ipid")
    exec 8>"$W/idle"
    wait_line "$out" '^opened' "$ipid" 120 || die "idle client failed; see $out"
    # Wait until every connection reached the backend (the gateways connect upstream at once).
    local n=0 deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        n=$(ss -Htn state established "dst $BACKEND:$P_NGINX" | wc -l)
        ((n >= IDLE_CONNS)) && break
        sleep 0.2
    done
    sleep 2
    local held; held=$(rss_kib "${PAIR_PIDS[@]}")
    local i sides=""   # PAIR_PIDS is (server side, client side)
    for i in "${!PAIR_PIDS[@]}"; do
        sides+="$([[ $i == 0 ]] && echo B || echo A) +$(( ($(rss_kib "${PAIR_PIDS[i]}") - before[i]) / 1024 )) MiB "
    done
    echo close >&8
    exec 8>&-
    timeout 30 tail --pid="$ipid" -f /dev/null || true
    wait "$ipid" || true
    forget_pid "$ipid"
    local opened; opened=$(awk '/^opened/ {print $2}' "$out")
    local nt=""
    ((n >= IDLE_CONNS)) || nt="only $n of $IDLE_CONNS connections reached the backend"
    ((opened == IDLE_CONNS)) || nt="$nt; only $opened of $IDLE_CONNS client connections opened"
    local early; early=$(awk '/^closed/ {print $4}' "$out")
    [[ ${early:-0} == 0 ]] || nt="$nt; $early closed by the proxy while idle"
    local per; per=$(awk -v a="$held" -v b="$base" -v n="$IDLE_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}')
    record idle_kib "$sys" "$r" "$per" "$nt"
    record base_rss_mib "$sys" "$r" "$(awk -v b="$base" 'BEGIN {printf "%.2f", b / 1024}')"
    log "  idle: RSS $base KiB -> $held KiB with $IDLE_CONNS connections = $per KiB/conn (${sides% }) ${nt:+($nt)}"
}

wrk_test() { # SYSTEM ROUND MODE(ka|close)
    local sys=$1 r=$2 mode=$3 target; target=$(web_target "$sys")
    local out=$W/raw/wrk-$mode-$sys-$r.txt hdr=()
    [[ $mode == close ]] && hdr=(-H 'Connection: close')
    local t0 c0=0
    t0=$(date +%s.%N)
    [[ $sys != direct ]] && c0=$(cpu_ticks "${PAIR_PIDS[@]}")
    timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s "${hdr[@]}" \
        "http://$target/small.html" >"$out" 2>&1 || true
    local c1=0 t1; t1=$(date +%s.%N)
    [[ $sys != direct ]] && c1=$(cpu_ticks "${PAIR_PIDS[@]}")
    local res; res=$($HELPER wrk "$out")
    local rps; rps=$(jget rps <<<"$res")
    local e; e=$(errs_note <<<"$res")
    record "${mode}_rps" "$sys" "$r" "$rps" "$e"
    local cpu="" per=""
    if [[ $sys != direct ]]; then
        local n; n=$(jget requests <<<"$res")
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.1f", 100 * d / hz / (t1 - t0)}')
        [[ $n == NA || $n == 0 ]] || per=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN {printf "%.1f", 1e6 * d / hz / n}')
        record "${mode}_cpu_us" "$sys" "$r" "${per:-NA}"
    fi
    log "  wrk $mode: $rps req/s ${e:+(errors: $e)} ${cpu:+(pair CPU $cpu% of a core, ${per:-?} us per request)}"
}

lat_test() { # SYSTEM ROUND
    local sys=$1 r=$2 target; target=$(web_target "$sys")
    if [[ -z $OHA ]]; then
        record p50_ms "$sys" "$r" NA "oha unavailable"
        record p99_ms "$sys" "$r" NA "oha unavailable"
        return
    fi
    # The first LAT_WARMUP seconds (connections being set up) are left out of p50/p99, using
    # oha's per-request SQLite output; p99 over the whole run is kept as p99_all_ms.
    local out=$W/raw/oha-$sys-$r.json db=$W/raw/oha-$sys-$r.db
    rm -f "$db"
    timeout $((DURATION + LAT_WARMUP + 30)) "$OHA" -z "$((DURATION + LAT_WARMUP))s" -q "$RATE" -c "$LAT_CONNS" --no-tui \
        "${OHA_JSON[@]}" "${OHA_EXTRA[@]}" "${OHA_DB[@]/%/$db}" "http://$target/small.html" >"$out" 2>"$out.err" || true
    local res
    if ((${#OHA_DB[@]})); then res=$($HELPER oha "$out" "$db" "$LAT_WARMUP"); else res=$($HELPER oha "$out"); fi
    rm -f "$db"
    local p50 p99 p99all got e
    p50=$(jget p50_ms <<<"$res"); p99=$(jget p99_ms <<<"$res"); got=$(jget rps <<<"$res")
    p99all=$(jget p99_all_ms <<<"$res")
    e=$(errs_note <<<"$res")
    if [[ $got != NA ]] && awk -v g="$got" -v q="$RATE" 'BEGIN {exit !(g < 0.95 * q)}'; then
        e="${e:+$e; }achieved only $(printf '%.0f' "$got") of $RATE req/s"
    fi
    record p50_ms "$sys" "$r" "$p50" "$e"
    record p99_ms "$sys" "$r" "$p99" "$e"
    record p99_all_ms "$sys" "$r" "$p99all" "$e"
    log "  oha at $RATE req/s: p50 $p50 ms, p99 $p99 ms (whole run with warm-up: p99 $p99all ms) ${e:+($e)}"
}

bulk_test() { # SYSTEM ROUND
    local sys=$1 r=$2 host port
    read -r host port < <(bulk_target "$sys")
    local out=$W/raw/iperf-$sys-$r.json
    timeout $((DURATION + 30)) iperf3 -c "$host" -p "$port" -t "$DURATION" -J >"$out" 2>&1 || true
    local res; res=$($HELPER iperf "$out")
    local g e; g=$(jget gbps <<<"$res"); e=$(jget error <<<"$res"); [[ $e == NA ]] && e=""
    record bulk_gbps "$sys" "$r" "$g" "$e"
    # HTTP download of the large file through the same entry as the HTTP tests.
    local target; target=$(web_target "$sys")
    local c; c=$(timeout 120 curl -s -o /dev/null --max-time 100 -w '%{http_code} %{size_download} %{speed_download}' \
        "http://$target/large.bin" || true)
    local code size speed hg hn=""
    read -r code size speed <<<"$c"
    if [[ $code == 200 && $size == $((LARGE_MIB * 1024 * 1024)) ]]; then
        hg=$(awk -v s="$speed" 'BEGIN {printf "%.3f", s * 8 / 1e9}')
    else
        hg=NA; hn="download failed: status ${code:-none}, ${size:-0} bytes"
    fi
    record http_bulk_gbps "$sys" "$r" "$hg" "$hn"
    log "  bulk: iperf3 $g Gbit/s ${e:+($e)}; HTTP download $hg Gbit/s ${hn:+($hn)}"
}

# ---------------------------------------------------------------- run
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta rounds "$ROUNDS"
meta duration_s "$DURATION"
meta strait_commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo -dirty)"
meta haproxy "$(haproxy -v | head -n 1)"
meta nginx "$(nginx -v 2>&1)"
meta wrk "$(wrk -v 2>&1 | head -n 1)"
meta iperf3 "$(iperf3 --version | head -n 1)"
meta oha "$([[ -n $OHA ]] && "$OHA" --version || echo unavailable)"
meta cpu "$(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
meta kernel "$(uname -r)"
meta setup "one worker thread per gateway (TOKIO_WORKER_THREADS=1 / nbthread 1), TLS 1.3 mTLS between sides, loopback $NET.0/24"
[[ -n $OHA ]] || note "oha unavailable: latency at a fixed rate skipped"

# Everything shares the same cores: say so when something else is using them.
busy=$(awk 'NR == 1 {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
sleep 2
busy=$(awk -v b="$busy" 'NR == 1 {split(b, a, " "); u = $2 + $3 + $4 + $7 + $8; t = $2 + $3 + $4 + $5 + $6 + $7 + $8;
    printf "%.0f", 100 * (u - a[1]) / (t - a[2])}' /proc/stat)
meta cpu_busy_before_pct "$busy"
((busy < 15)) || note "the machine was ${busy}% busy before the run: other processes compete for the cores, numbers are noisy"

# CPU accounting, to tell at the end how much of the machine other processes took.
proc_busy() { awk 'NR == 1 {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }  # all CPUs, ticks
children_ticks() { # CPU of this shell's reaped children, in ticks, into CHILD_TICKS
    times >"$W/times.txt" # not in a pipe or $(...): a subshell has its own children
    CHILD_TICKS=$(awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
        s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%d", s * hz }' "$W/times.txt")
}
RUN_T0=$(date +%s.%N); RUN_BUSY0=$(proc_busy); children_ticks; RUN_CHILD0=$CHILD_TICKS
RUN_BACKEND0=$(cpu_ticks "$NGINX_PID" $(pgrep -P "$NGINX_PID") "$IPERF_PID")

log "Strait vs HAProxy: $ROUNDS rounds of ${DURATION}s runs"
for ((r = 1; r <= ROUNDS; r++)); do
    for sys in strait haproxy; do
        log "round $r/$ROUNDS: $sys"
        arm_cold "$sys" "$r"
        start_pair "$sys"
        fire_cold "$sys" "$r"
        idle_test "$sys" "$r"
        wrk_test "$sys" "$r" ka
        wrk_test "$sys" "$r" close
        lat_test "$sys" "$r"
        bulk_test "$sys" "$r"
        stop_pair "$sys" "$r"
        sleep 1
    done
    log "round $r/$ROUNDS: direct (nginx / iperf3 without a proxy)"
    wrk_test direct "$r" ka
    wrk_test direct "$r" close
    lat_test direct "$r"
    bulk_test direct "$r"
    sleep 1
done

# Share of the machine that other processes used while the benchmark ran.
children_ticks
foreign=$(awk -v b0="$RUN_BUSY0" -v b1="$(proc_busy)" -v c0="$RUN_CHILD0" -v c1="$CHILD_TICKS" \
    -v k0="$RUN_BACKEND0" -v k1="$(cpu_ticks "$NGINX_PID" $(pgrep -P "$NGINX_PID") "$IPERF_PID")" \
    -v t0="$RUN_T0" -v t1="$(date +%s.%N)" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN { f = ((b1 - b0) - (c1 - c0) - (k1 - k0)) / hz / ((t1 - t0) * n) * 100; if (f < 0) f = 0; printf "%.0f", f }')
meta foreign_cpu_pct "$foreign"
((foreign < 10)) || note "other processes used ${foreign}% of the machine during the run: numbers are noisy"

# Anything the gateways logged at warn or error level is worth a look.
# Startup and shutdown warnings about the peer being down are expected (the pair starts and
# stops one side at a time); everything else is listed by message.
for gw in gw-a gw-b; do
    sed 's/\x1b\[[0-9;]*m//g' "$W/strait/$gw.err" >"$W/strait/$gw.log"
    grep -E '^[^ ]+ +(WARN|ERROR) ' "$W/strait/$gw.log" |
        grep -v -E 'tunnel dial failed.*Connection refused|tunnel connection lost' |
        sed -E 's/^[^ ]+ +(WARN|ERROR) +([a-z_:]+): ([^=]*[^ =]+) [a-z_]+=.*/\1 \2: \3/' |
        sort | uniq -c | sort -rn >"$W/strait/$gw.warnings" || true
    while read -r count msg; do
        note "strait $gw logged $count x: $msg"
    done <"$W/strait/$gw.warnings"
done
for side in a b; do
    n=$(grep -c -i -E 'alert|error' "$W/haproxy/$side.log" || true)
    ((n == 0)) || note "haproxy $side logged $n alerts/errors, e.g.: $(grep -m1 -i -E 'alert|error' "$W/haproxy/$side.log" | cut -c1-300)"
done

cp "$RESULTS" "$RESULTS_DIR/latest.tsv"
rm -rf "$RESULTS_DIR/latest-raw"
mkdir -p "$RESULTS_DIR/latest-raw"
cp -r "$W/raw" "$W/strait" "$W/haproxy" "$RESULTS_DIR/latest-raw/"
rm -f "$RESULTS_DIR"/latest-raw/strait/*.err
$HELPER report "$RESULTS" "$RESULTS_DIR/latest.json" | tee "$RESULTS_DIR/latest.txt"
log "wrote $RESULTS_DIR/latest.json; raw tool outputs, configs and gateway logs in $RESULTS_DIR/latest-raw/"
