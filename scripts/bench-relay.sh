#!/usr/bin/env bash
# Benchmark (not a test): coturn and switchboard-relay under identical turnutils_uclient loads.
#
# Runs each load over UDP, TCP and TLS against a fresh coturn (`turnserver`, TURN REST secret)
# and a fresh switchboard-relay (same secret), one server at a time, on loopback only, and
# prints loss %, wall time, the server's peak RSS and CPU time for both, with our/coturn ratios.
# A row our relay cannot serve (no listener, failed allocation, crash) is reported as
# "n/a" with the reason; the coturn rows always run.
#
# Usage: bash scripts/bench-relay.sh
# Environment:
#   RELAY_BIN=path        our binary (default target/release/switchboard-relay, built first)
#   BENCH_SKIP_BUILD=1    do not run `cargo build --release -p switchboard-relay`
#   BENCH_ONLY=coturn     run only coturn (or `ours`)
#   BENCH_ROWS="udp tcp"  subset of rows: udp udp-heavy tcp tls tls-paced
#   BENCH_PORT_BASE=N     ports N..N+3 for listeners (default 34780)
#   BENCH_TIMEOUT=S       bound on one uclient run in seconds (default 300)
#   BENCH_N=N             messages per client instead of 5000 (a quick smoke run)
#   BENCH_DROPS=1         also sample the kernel's per-socket UDP drop counters (ss) every
#                         0.5 s and print where packets were dropped: at the client's
#                         sockets or at the server's (the loss figure alone cannot tell)
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in turnserver turnutils_uclient openssl ss; do
  command -v "$tool" >/dev/null || { echo "bench-relay: $tool not found (apt-get install coturn openssl iproute2)" >&2; exit 2; }
done

# The distribution's coturn service must not take ports or CPU during the run.
if command -v systemctl >/dev/null 2>&1; then systemctl stop coturn >/dev/null 2>&1 || true; fi

relay_bin=${RELAY_BIN:-target/release/switchboard-relay}
base=${BENCH_PORT_BASE:-34780}
bound=${BENCH_TIMEOUT:-300}
rows=${BENCH_ROWS:-"udp udp-heavy tcp tls tls-paced"}
only=${BENCH_ONLY:-}
ct_port=$base ct_tls=$((base + 1)) our_port=$((base + 2)) our_tls=$((base + 3))
our_metrics=$((base + 4))

work=$(mktemp -d)
server_pid=""
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

# Same REST secret for both servers; throw-away, never printed.
secret=$(openssl rand -hex 24)

# The load each row applies (the issue 6 load, a heavier one, then TCP and TLS). tls-paced
# paces sends at 20 ms: turnutils_uclient handles one message per TLS record and loses
# packets over TLS when unpaced against coturn; our relay writes one record per message
# over TLS (measured 0 % unpaced), so that row shows coturn's floor.
n=${BENCH_N:-5000}
declare -A row_flags=(
  [udp]="-y -m 50 -n $n -l 170 -z 0"
  [udp-heavy]="-y -m 100 -n $n -l 1000 -z 0"
  [tcp]="-t -y -m 50 -n $n -l 170 -z 0"
  [tls]="-S -t -y -m 50 -n $n -l 170 -z 0"
  [tls-paced]="-S -t -y -m 50 -n $((n / 10)) -l 170 -z 20"
)

log() { printf '==> %s\n' "$*" >&2; }

# --- Certificate for the TLS rows (self-signed; uclient does not verify without -E) -----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 600 "$work/key.pem"

# --- Our relay's configuration ---------------------------------------------------------
cat >"$work/switchboard.toml" <<EOF
log_level = "warn"

[turn]
realm = "bench"
public_host = "127.0.0.1"
secrets = ["$secret"]

[relay]
listen_udp = ["127.0.0.1:$our_port"]
listen_tcp = ["127.0.0.1:$our_port"]
listen_tls = ["127.0.0.1:$our_tls"]
tls_cert = "$work/cert.pem"
tls_key = "$work/key.pem"
relay_ip = "127.0.0.1"
external_ip = "127.0.0.1"
port_range = [45000, 49999]
allowed_peers = ["127.0.0.0/8"]
metrics_listen = "127.0.0.1:$our_metrics"
# The loads allocate up to 2 x 100 relays under one bare-timestamp username (-W without -u).
max_allocations_per_user = 1000
EOF
chmod 600 "$work/switchboard.toml"

if [ "$only" != coturn ] && [ -z "${RELAY_BIN:-}" ] && [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  log "cargo build --release -p switchboard-relay"
  cargo build --release -p switchboard-relay >&2 || log "build failed: our rows will be n/a"
fi

# --- Server control ----------------------------------------------------------------------
# Waits (bounded) until something listens on port $2 over $1 (t or u) while $server_pid lives.
wait_listening() {
  local proto=$1 port=$2
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || return 1
    [ -n "$(ss -Hln"$proto" "sport = :$port" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}

start_coturn() {
  turnserver -n --no-cli --use-auth-secret --static-auth-secret="$secret" --realm=bench \
    -L 127.0.0.1 -E 127.0.0.1 -p "$ct_port" --tls-listening-port "$ct_tls" \
    --cert "$work/cert.pem" --pkey "$work/key.pem" --no-dtls --allow-loopback-peers \
    --min-port 40000 --max-port 44999 --no-stdout-log --log-file "$work/coturn.log" \
    --simple-log --pidfile "$work/coturn.pid" >"$work/coturn.out" 2>&1 &
  server_pid=$!
}

start_ours() {
  [ -x "$relay_bin" ] || return 1
  NO_COLOR=1 "$relay_bin" --config "$work/switchboard.toml" >"$work/ours.out" 2>&1 &
  server_pid=$!
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# CPU seconds (user + system) the server has used so far, from /proc/PID/stat.
cpu_seconds() {
  local ticks
  ticks=$(getconf CLK_TCK)
  # Fields after the ")" that ends the command name: utime is the 12th, stime the 13th.
  sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null |
    awk -v t="$ticks" '{ printf "%.1f\n", ($12 + $13) / t }'
}

# Samples `ss -uanmp` every 0.5 s into $1 until the file $1.stop exists.
sample_drops() {
  local dir=$1 i=0
  mkdir -p "$dir"
  while [ ! -e "$dir.stop" ]; do
    i=$((i + 1))
    ss -uanmp >"$dir/$i" 2>/dev/null || true
    sleep 0.5
  done
}

# The highest drop count seen per UDP socket, summed per process: "client server".
# Sockets close at the end of a run, so these are lower bounds.
sum_drops() {
  cat "$1"/* 2>/dev/null | awk '
    /users:\(\("/ { match($0, /users:\(\("[^"]+/); name = substr($0, RSTART + 9, RLENGTH - 9); key = name " " $4; next }
    /skmem:/ && key != "" {
      if (match($0, /,d[0-9]+\)/)) { d = substr($0, RSTART + 2, RLENGTH - 3) + 0; if (d > max[key]) max[key] = d }
      key = ""
    }
    END {
      for (k in max) { split(k, p, " "); if (p[1] ~ /^turnutils/) c += max[k]; else s += max[k] }
      printf "%d %d\n", c, s
    }'
}

# A result row without loss and wall time: unavailable NOTE [RSS_KB CPU_S].
unavailable() { echo "n/a|n/a|${2:-n/a}|${3:-n/a}|$1"; }

# --- One measurement: prints "loss|wall|rss_kb|cpu_s|note" ---------------------------------
measure() {
  local server=$1 row=$2 proto=u port
  case $row in tcp | tls*) proto=t ;; esac
  if [ "$server" = coturn ]; then
    start_coturn
    port=$ct_port; [[ $row == tls* ]] && port=$ct_tls
  else
    if ! start_ours; then unavailable "no binary at $relay_bin"; return; fi
    port=$our_port; [[ $row == tls* ]] && port=$our_tls
  fi
  if ! wait_listening "$proto" "$port"; then
    local why="not listening on $proto:$port"
    kill -0 "$server_pid" 2>/dev/null || why="exited at start-up: $(last_error "$work/$server.out")"
    stop_server
    unavailable "$why"
    return
  fi
  local out="$work/$server-$row.uclient" t0 t1 rc=0 sampler=""
  if [ -n "${BENCH_DROPS:-}" ]; then
    sample_drops "$work/ss-$server-$row" &
    sampler=$!
  fi
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086 # the flags are words on purpose
  timeout "$bound" turnutils_uclient ${row_flags[$row]} -W "$secret" -p "$port" 127.0.0.1 \
    >"$out" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  if [ -n "$sampler" ]; then
    touch "$work/ss-$server-$row.stop"
    wait "$sampler" 2>/dev/null || true
    # measure runs in a subshell: the table reads this file.
    sum_drops "$work/ss-$server-$row" >"$work/drops-$server-$row"
  fi
  local rss cpu alive=1
  rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || true)
  cpu=$(cpu_seconds "$server_pid" || true)
  kill -0 "$server_pid" 2>/dev/null || alive=0
  stop_server
  local loss
  loss=$(grep -oE 'Total lost packets [0-9]+ \([0-9.]+%\)' "$out" | tail -n1 | grep -oE '[0-9.]+%' | tr -d % || true)
  if [ "$alive" = 0 ]; then
    unavailable "server died during the run"
  elif [ "$rc" = 124 ]; then
    unavailable "uclient timed out after ${bound}s" "$rss" "$cpu"
  elif [ -z "$loss" ] || [ "$rc" != 0 ]; then
    unavailable "uclient failed (rc $rc): $(grep -m1 -iE 'error|cannot|fail' "$out" | cut -c1-50)" "$rss" "$cpu"
  else
    local sent
    sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$out" | tail -n1)
    printf '%.2f|%s|%s|%s|%s\n' "$loss" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
      "${rss:-n/a}" "${cpu:-n/a}" "$sent"
  fi
}

# The last line of a log without colours or timestamp, e.g. "ERROR ...: cause".
last_error() {
  tail -n1 "$1" 2>/dev/null | sed -E 's/\x1b\[[0-9;]*m//g; s/^[0-9TZ:.-]+ +//' | cut -c1-90
}

ratio() {
  case "$1$2" in *n/a*) echo "n/a"; return ;; esac
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f\n", a / b }'
}

mb() { case $1 in n/a) echo n/a ;; *) awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }' ;; esac; }

# --- Run --------------------------------------------------------------------------------
# Coturn and ours alternate row by row so both see the same background load; the load
# average is printed with the table because on a shared machine it moves loss figures.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A result
for row in $rows; do
  [ -n "${row_flags[$row]:-}" ] || { log "unknown row $row"; exit 2; }
  for server in coturn ours; do
    if [ -n "$only" ] && [ "$only" != "$server" ]; then
      result[$server,$row]=$(unavailable skipped)
      continue
    fi
    log "$server $row: turnutils_uclient ${row_flags[$row]} -W <secret>"
    result[$server,$row]=$(measure "$server" "$row")
    log "  -> ${result[$server,$row]}"
  done
done

printf '\n%-9s %-34s | %7s %7s %6s %6s | %7s %7s %6s %6s | %5s %5s %5s\n' \
  row load "loss%" "wall s" "RSS MB" "CPU s" "loss%" "wall s" "RSS MB" "CPU s" "time" "RSS" "CPU"
printf '%-9s %-34s | %-29s | %-29s | %s\n' "" "" "coturn $(turnserver --version 2>/dev/null | head -n1)" "switchboard-relay" "ours/coturn"
for row in $rows; do
  IFS='|' read -r cl cw cr cc _ <<<"${result[coturn,$row]}"
  IFS='|' read -r ol ow or oc onote <<<"${result[ours,$row]}"
  printf '%-9s %-34s | %7s %7s %6s %6s | %7s %7s %6s %6s | %5s %5s %5s\n' \
    "$row" "${row_flags[$row]}" "$cl" "$cw" "$(mb "$cr")" "$cc" "$ol" "$ow" "$(mb "$or")" "$oc" \
    "$(ratio "$ow" "$cw")" "$(ratio "$or" "$cr")" "$(ratio "$oc" "$cc")"
  [ "$ol" = n/a ] && printf '%-9s   ours not available: %s\n' "" "$onote"
done
if [ -n "${BENCH_DROPS:-}" ]; then
  printf '\nUDP datagrams dropped by the kernel at full socket buffers (ss, sampled every 0.5 s; lower bounds)\n'
  printf '%-9s | %14s %14s | %14s %14s\n' row "coturn: client" "server" "ours: client" "server"
  for row in $rows; do
    read -r cc cs <<<"$(cat "$work/drops-coturn-$row" 2>/dev/null || echo n/a n/a)"
    read -r oc os <<<"$(cat "$work/drops-ours-$row" 2>/dev/null || echo n/a n/a)"
    printf '%-9s | %14s %14s | %14s %14s\n' "$row" "$cc" "$cs" "$oc" "$os"
  done
fi
printf '\nEach row: fresh server, then turnutils_uclient <load> -W <secret> -p PORT 127.0.0.1.\n'
printf 'Load average before: %s, after: %s (%s CPUs).\n' "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
