#!/usr/bin/env bash
# Benchmark (not a test): coturn and switchboard-relay under identical loads, in three parts.
#
# uclient: each turnutils_uclient load over UDP, TCP and TLS against a fresh coturn
# (`turnserver`, TURN REST secret) and a fresh switchboard-relay (same secret), one server at
# a time, on loopback only: loss %, wall time, the server's peak RSS and CPU time for both,
# with our/coturn ratios.
# capacity: switchboard-turnload (tools/turnload) with the server pinned to one core and the
# load to the other: first the tool's own ceiling and latency floor against a plain UDP echo
# (calibrate), then per client leg (UDP, TCP, TLS) and server (coturn --relay-threads=1, ours
# with relay.workers = 1 and taskset) the open-loop rate swept upward by x1.25 to the knee
# (highest rate with < 0.1 % loss), the server's CPU us per relayed packet at a fixed rate,
# and p50/p99 latency at 50 % of coturn's knee. A step the tool refuses (it could not send at
# the asked rate) ends the sweep: the knee is then only a lower bound (">=").
# callgrind: each server under `valgrind --tool=callgrind` for two low-rate runs of the same
# length (R and 2R): instructions per relayed packet = (I(2R) - I(R)) / (packets(2R) -
# packets(R)), so start-up, set-up and timers cancel out. Repeatable whatever the machine does.
# A row our relay cannot serve (no listener, failed allocation, crash) is reported as "n/a"
# with the reason; the coturn rows always run. Every loop is bounded in count and time.
#
# Usage: bash scripts/bench-relay.sh
# Environment:
#   BENCH_PARTS="uclient capacity callgrind"  which parts to run (default all three)
#   RELAY_BIN=path        our binary (default target/release/switchboard-relay, built first)
#   TURNLOAD_BIN=path     the load tool (default target/release/switchboard-turnload)
#   BENCH_SKIP_BUILD=1    do not run `cargo build --release -p switchboard-relay -p switchboard-turnload`
#   BENCH_ONLY=coturn     run only coturn (or `ours`)
#   BENCH_ROWS="udp tcp"  uclient rows: udp udp-heavy tcp tls tls-paced
#   BENCH_PORT_BASE=N     ports N..N+3 for listeners (default 34780)
#   BENCH_TIMEOUT=S       bound on one uclient run in seconds (default 300)
#   BENCH_N=N             messages per client instead of 5000 (a quick smoke run)
#   BENCH_DROPS=1         also sample the kernel's per-socket UDP drop counters (ss) every
#                         0.5 s and print where packets were dropped: at the client's
#                         sockets or at the server's (the loss figure alone cannot tell)
# Capacity and callgrind parts:
#   BENCH_LEGS="udp tcp tls"   client legs (default all three)
#   BENCH_CAP_SECS=S      measured seconds per run (default 3), after BENCH_CAP_WARMUP (1)
#   BENCH_CAP_START=R     first rate of a sweep, packets/s (default 10000)
#   BENCH_CAP_STEP=F      rate factor per step (default 1.25)
#   BENCH_CAP_MAX_STEPS=N steps per sweep at most (default 14)
#   BENCH_CAP_BUDGET=S    seconds per sweep at most (default 150)
#   BENCH_CAP_ALLOCS=N    allocations, in pairs (default 50)
#   BENCH_CAP_SIZE=B      payload bytes (default 160)
#   BENCH_CAP_FIXED=R     the common rate of the CPU-per-packet column (default 10000)
#   BENCH_CAP_RETRIES=N   re-runs of a step the tool refused (default 1; shared machines)
#   BENCH_CG_RATE=R       callgrind's low rate R (default 200; runs R and 2R)
#   BENCH_CG_SECS=S       measured seconds per callgrind run (default 4)
#   BENCH_SERVER_CPU=0 BENCH_LOAD_CPU=1   the cores for taskset
#   BENCH_KEEP=1          keep the work folder (logs, JSON lines, callgrind profiles)
#   BENCH_NICE=N          nice level of server and load in the capacity part (default 0;
#                         e.g. -10 on a machine shared with builds)
set -euo pipefail
cd "$(dirname "$0")/.."

parts=${BENCH_PARTS:-"uclient capacity callgrind"}
want() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

for tool in turnserver turnutils_uclient openssl ss jq taskset; do
  command -v "$tool" >/dev/null || { echo "bench-relay: $tool not found (apt-get install coturn openssl iproute2 jq util-linux)" >&2; exit 2; }
done
if want callgrind && ! command -v valgrind >/dev/null; then
  echo "bench-relay: valgrind not found (apt-get install valgrind), or leave callgrind out of BENCH_PARTS" >&2
  exit 2
fi

# The distribution's coturn service must not take ports or CPU during the run.
if command -v systemctl >/dev/null 2>&1; then systemctl stop coturn >/dev/null 2>&1 || true; fi

relay_bin=${RELAY_BIN:-target/release/switchboard-relay}
tool_bin=${TURNLOAD_BIN:-target/release/switchboard-turnload}
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
  if [ -n "${BENCH_KEEP:-}" ]; then log "kept $work"; else rm -rf "$work"; fi
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
# Every load connects from 127.0.0.1: uclient's TLS rows open 100 connections and retry the
# handshakes its TLSv1.0/1.1 contexts fail (rustls speaks TLS 1.2 and 1.3 only), past the
# default cap of 64 per source IP (coturn has no such cap).
max_stream_connections_per_ip = 4096
EOF
chmod 600 "$work/switchboard.toml"

# The capacity rows run ours as one worker on one core (taskset; relay.workers = 1 for a
# relay that honours it).
sed -e 's/^max_allocations_per_user = 1000$/max_allocations_per_user = 1000\nworkers = 1/' \
  "$work/switchboard.toml" >"$work/switchboard-cap.toml"
chmod 600 "$work/switchboard-cap.toml"

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  pkgs=()
  [ "$only" != coturn ] && [ -z "${RELAY_BIN:-}" ] && pkgs+=(-p switchboard-relay)
  { want capacity || want callgrind; } && [ -z "${TURNLOAD_BIN:-}" ] && pkgs+=(-p switchboard-turnload)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "cargo build --release ${pkgs[*]}"
    cargo build --release "${pkgs[@]}" >&2 || log "build failed: rows needing it will be n/a"
  fi
fi

# --- Server control ----------------------------------------------------------------------
# Waits (bounded: $3 tenths of a second, default 100) until something listens on port $2
# over $1 (t or u) while $server_pid lives.
wait_listening() {
  local proto=$1 port=$2
  for _ in $(seq "${3:-100}"); do
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

# Stops the server: SIGTERM, then SIGKILL after $1 tenths of a second (default 50).
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq "${1:-50}"); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
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
  case "$1,$2" in *n/a* | ,* | *,) echo "n/a"; return ;; esac
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f\n", a / b }'
}

mb() { case $1 in n/a) echo n/a ;; *) awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }' ;; esac; }

# --- Part 1: turnutils_uclient rows --------------------------------------------------------
if want uclient; then
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
fi

# --- Parts 2 and 3: capacity (switchboard-turnload) and callgrind -------------------------
legs=${BENCH_LEGS:-"udp tcp tls"}
cap_secs=${BENCH_CAP_SECS:-3}
cap_warmup=${BENCH_CAP_WARMUP:-1}
cap_start=${BENCH_CAP_START:-10000}
cap_step=${BENCH_CAP_STEP:-1.25}
cap_steps=${BENCH_CAP_MAX_STEPS:-14}
cap_budget=${BENCH_CAP_BUDGET:-150}
cap_allocs=${BENCH_CAP_ALLOCS:-50}
cap_size=${BENCH_CAP_SIZE:-160}
cap_fixed=${BENCH_CAP_FIXED:-10000}
cap_retries=${BENCH_CAP_RETRIES:-1}
cg_rate=${BENCH_CG_RATE:-200}
cg_secs=${BENCH_CG_SECS:-4}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
nice_level=${BENCH_NICE:-0}
# One run of the tool: warm-up + measurement + set-up and drain, bounded.
tool_bound=$(awk -v w="$cap_warmup" -v s="$cap_secs" 'BEGIN { printf "%d\n", w + s + 61 }')
export TURNLOAD_SECRET=$secret # the tool reads it from the environment, not argv

# The command prefix that runs on core $1 (when the machine has two) at the bench's nice
# level, in the array `pin`. An array rather than a function, so that `"${pin[@]}" cmd &`
# leaves the server's own pid in $! (nice and taskset exec it).
pin_to() {
  pin=(nice -n "$nice_level")
  [ "$(nproc)" -ge 2 ] && pin+=(taskset -c "$1")
  return 0
}
# Runs "$@" on core $1.
pinned() {
  pin_to "$1"
  shift
  "${pin[@]}" "$@"
}

# Prefix for the server command (valgrind in the callgrind part).
server_wrap=()

start_coturn_cap() {
  pin_to "$server_cpu"
  "${pin[@]}" "${server_wrap[@]}" turnserver -n --no-cli --use-auth-secret \
    --static-auth-secret="$secret" --realm=bench -L 127.0.0.1 -E 127.0.0.1 -p "$ct_port" \
    --tls-listening-port "$ct_tls" --cert "$work/cert.pem" --pkey "$work/key.pem" --no-dtls \
    --allow-loopback-peers --relay-threads=1 --min-port 40000 --max-port 44999 \
    --no-stdout-log --log-file "$work/coturn-cap.log" --simple-log --pidfile "$work/coturn.pid" \
    >"$work/coturn.out" 2>&1 &
  server_pid=$!
}

start_ours_cap() {
  [ -x "$relay_bin" ] || return 1
  pin_to "$server_cpu"
  NO_COLOR=1 "${pin[@]}" "${server_wrap[@]}" "$relay_bin" \
    --config "$work/switchboard-cap.toml" >"$work/ours.out" 2>&1 &
  server_pid=$!
}

# The port of server $1 for leg $2.
port_of() {
  case $1,$2 in
    coturn,tls) echo "$ct_tls" ;; coturn,*) echo "$ct_port" ;;
    ours,tls) echo "$our_tls" ;; *) echo "$our_port" ;;
  esac
}

# Starts server $1 for leg $2 and waits (bound: $3 tenths of a second) until it listens.
start_cap() {
  local server=$1 leg=$2 proto=u
  [ "$leg" = udp ] || proto=t
  # Something left listening there would answer in the new server's place.
  if [ -n "$(ss -Hln"$proto" "sport = :$(port_of "$server" "$leg")" 2>/dev/null)" ]; then
    log "port $(port_of "$server" "$leg") is already taken: not starting $server"
    return 1
  fi
  if [ "$server" = coturn ]; then start_coturn_cap; else start_ours_cap || return 1; fi
  if ! wait_listening "$proto" "$(port_of "$server" "$leg")" "${3:-100}"; then
    stop_server
    return 1
  fi
}

# One load run against the server that is up: leg rate secs [extra flags]. Prints the JSON
# line; the exit status is the tool's (3 = refused).
load_run() {
  local leg=$1 rate=$2 secs=$3
  shift 3
  local tls=()
  [ "$leg" = tls ] && tls=(--insecure)
  pinned "$load_cpu" timeout "$tool_bound" "$tool_bin" load \
    --server "127.0.0.1:$(port_of "$current" "$leg")" -t "$leg" "${tls[@]}" \
    -n "$cap_allocs" -r "$rate" -s "$cap_size" -d "$secs" --warmup "$cap_warmup" \
    --server-pid "$server_pid" --user-prefix "b$RANDOM-" --json "$@" 2>>"$work/turnload.log"
}

# load_run on the leg being swept ($leg).
load_run_leg() { load_run "$leg" "$@"; }

# One calibrate run against the echo at $echo_addr: rate secs.
calibrate_run() {
  pinned "$load_cpu" timeout "$tool_bound" "$tool_bin" calibrate --echo "$echo_addr" \
    -n "$cap_allocs" -r "$1" -s "$cap_size" -d "$2" --warmup "$cap_warmup" --json \
    2>>"$work/turnload.log"
}

# Runs "$@" again (at most $cap_retries times) while the tool refuses (exit 3): on a
# shared machine the sender is sometimes descheduled for milliseconds.
attempt() {
  local tries=0 rc out
  while :; do
    rc=0
    out=$("$@") || rc=$?
    if [ "$rc" = 3 ] && [ "$tries" -lt "$cap_retries" ]; then
      tries=$((tries + 1))
      log "    refused ($(field "$out" refused | cut -c1-60)), again"
      continue
    fi
    # 437 Allocation Mismatch: the kernel gave one of this run's client sockets the port of
    # an earlier step's allocation that the server still holds (its delete was lost under
    # load). A new run binds new ports.
    if [ "$rc" = 1 ] && [ "$tries" -lt "$cap_retries" ] &&
      tail -n1 "$work/turnload.log" | grep -q 'error 437'; then
      tries=$((tries + 1))
      log "    437 Allocation Mismatch on a reused client port, again"
      continue
    fi
    printf '%s\n' "$out"
    return "$rc"
  done
}

# A JSON field of the line in $1.
field() {
  local v
  v=$(jq -r ".$2 // \"n/a\"" <<<"$1" 2>/dev/null) || v=""
  echo "${v:-n/a}"
}
# Formats a number with $2 decimals (n/a passes through).
num() { case $1 in n/a | null | "") echo n/a ;; *) awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f\n", d, v }' ;; esac; }

# Sweeps the rate upward with the runner $1 (called as `$1 RATE SECS`, its own flags after)
# until loss reaches 0.1 %, the tool refuses, a run fails, or the step/time bounds end it.
# Prints "knee|why it stopped"; a knee the sweep did not find the end of is a lower bound.
sweep() {
  local runner=$1 rate=$cap_start knee=0 why="" steps=0 t0=$SECONDS out rc loss
  while :; do
    if [ "$steps" -ge "$cap_steps" ]; then why="bound: $cap_steps steps"; break; fi
    if [ $((SECONDS - t0)) -ge "$cap_budget" ]; then why="bound: ${cap_budget}s"; break; fi
    steps=$((steps + 1))
    rc=0
    out=$(attempt "$runner" "$rate" "$cap_secs") || rc=$?
    if [ "$rc" = 3 ]; then why="tool refused $rate/s: $(field "$out" refused | cut -c1-60)"; break; fi
    if [ "$rc" != 0 ]; then why="run failed at $rate/s (rc $rc): $(tail -n1 "$work/turnload.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-80)"; break; fi
    loss=$(field "$out" loss_pct)
    log "    $rate/s: loss $(num "$loss" 3) %, p99 $(num "$(field "$out" p99_us)" 0) us, server CPU/relayed $(num "$(field "$out" cpu_us_per_relayed)" 2) us"
    if awk -v l="$loss" 'BEGIN { exit !(l < 0.1) }'; then
      knee=$rate
      rate=$(awk -v r="$rate" -v f="$cap_step" 'BEGIN { printf "%d\n", r * f + 0.5 }')
    else
      why="loss $(num "$loss" 2) % at $rate/s"
      break
    fi
    if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then why="server died"; break; fi
  done
  echo "$knee|$why"
}

# "knee", ">=knee" (the sweep ended before loss did), "<start" (loss at the first step), n/a.
knee_text() {
  case $1,$2 in
    0,loss* | n/a,loss*) echo "<$cap_start" ;;
    0,* | n/a,* | ,*) echo n/a ;;
    *,loss*) echo "$1" ;;
    *) echo ">=$1" ;;
  esac
}

# Callgrind's total instructions (Ir) of the profile $1.
cg_total() { awk '/^(summary|totals):/ { print $2; exit }' "$1" 2>/dev/null; }

# Instructions per relayed packet of server $1 on leg $2: runs at R and 2R, each on a fresh
# server under callgrind. Prints "value|note".
callgrind_row() {
  local server=$1 leg=$2 r out rc i=0 ir=() pk=()
  current=$server
  for r in "$cg_rate" $((cg_rate * 2)); do
    i=$((i + 1))
    server_wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/cg-$server-$leg-$i.out")
    if ! start_cap "$server" "$leg" 600; then
      server_wrap=()
      echo "n/a|did not start under valgrind"
      return
    fi
    server_wrap=()
    rc=0
    # Under valgrind the server is ~50x slower: judge only relaying, not pacing.
    out=$(cap_allocs=10 load_run "$leg" "$r" "$cg_secs" --max-late-fraction 1 --min-achieved 0) || rc=$?
    stop_server 600
    if [ "$rc" != 0 ]; then echo "n/a|load failed under valgrind (rc $rc)"; return; fi
    ir+=("$(cg_total "$work/cg-$server-$leg-$i.out")")
    # Every payload that came back, warm-up included, crossed the relay twice.
    pk+=("$(jq -r '2 * (.received + .warmup_received)' <<<"$out")")
    log "    callgrind $server $leg $r/s: ${ir[-1]:-?} Ir, ${pk[-1]} relayed, loss $(num "$(field "$out" loss_pct)" 2) %"
  done
  if [ -z "${ir[0]}" ] || [ -z "${ir[1]}" ]; then echo "n/a|no callgrind totals"; return; fi
  awk -v a="${ir[0]}" -v b="${ir[1]}" -v p="${pk[0]}" -v q="${pk[1]}" \
    'BEGIN { if (q - p <= 0) print "n/a|no extra packets"; else printf "%.0f|\n", (b - a) / (q - p) }'
}

if want capacity || want callgrind; then
  if [ ! -x "$tool_bin" ]; then
    echo "bench-relay: no load tool at $tool_bin (cargo build --release -p switchboard-turnload)" >&2
    exit 2
  fi
  [ "$(nproc)" -ge 2 ] || log "one CPU only: server and load are not pinned apart"
  cap_load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  declare -A cap
fi

if want capacity; then
  # The tool's own ceiling and latency floor: the same sender and receiver against a plain
  # UDP echo on the server's core.
  log "calibrate: echo on CPU $server_cpu, load on CPU $load_cpu"
  pin_to "$server_cpu"
  "${pin[@]}" "$tool_bin" echo --listen 127.0.0.1:0 --duration $((cap_budget + 2 * tool_bound)) \
    >"$work/echo.addr" 2>>"$work/turnload.log" &
  server_pid=$!
  for _ in $(seq 50); do [ -s "$work/echo.addr" ] && break; sleep 0.1; done
  echo_addr=$(head -n1 "$work/echo.addr")
  IFS='|' read -r cal_knee cal_why <<<"$(sweep calibrate_run)"
  cal_floor=$(attempt calibrate_run "$cap_fixed" "$cap_secs" || true)
  stop_server

  for leg in $legs; do
    for server in coturn ours; do
      if [ -n "$only" ] && [ "$only" != "$server" ]; then cap[$server,$leg,knee]="n/a|skipped"; continue; fi
      log "$server $leg: sweep from $cap_start/s x$cap_step (${cap_secs}s steps)"
      current=$server
      if start_cap "$server" "$leg"; then
        cap[$server,$leg,knee]=$(sweep load_run_leg)
        stop_server
      else
        cap[$server,$leg,knee]="0|did not start: $(last_error "$work/$server.out")"
      fi
      log "  -> ${cap[$server,$leg,knee]}"
    done
    IFS='|' read -r ct_knee _ <<<"${cap[coturn,$leg,knee]}"
    half=$(awk -v k="${ct_knee:-0}" 'BEGIN { printf "%d\n", k / 2 }')
    for server in coturn ours; do
      if [ -n "$only" ] && [ "$only" != "$server" ]; then continue; fi
      current=$server
      if ! start_cap "$server" "$leg"; then
        cap[$server,$leg,fixed]=""
        cap[$server,$leg,half]=""
        continue
      fi
      log "$server $leg: $cap_fixed/s for CPU, $half/s for latency"
      cap[$server,$leg,fixed]=$(attempt load_run "$leg" "$cap_fixed" "$cap_secs" || true)
      cap[$server,$leg,half]=""
      [ "$half" -gt 0 ] && cap[$server,$leg,half]=$(attempt load_run "$leg" "$half" "$cap_secs" || true)
      stop_server
      printf '%s\n' "${cap[$server,$leg,fixed]}" "${cap[$server,$leg,half]}" >>"$work/points.jsonl"
      log "  -> CPU/relayed $(num "$(field "${cap[$server,$leg,fixed]}" cpu_us_per_relayed)" 2) us; p50/p99 $(num "$(field "${cap[$server,$leg,half]}" p50_us)" 0)/$(num "$(field "${cap[$server,$leg,half]}" p99_us)" 0) us $(field "${cap[$server,$leg,half]}" refused | sed 's/^n\/a$//')"
    done
  done
fi

if want callgrind; then
  for leg in $legs; do
    for server in coturn ours; do
      if [ -n "$only" ] && [ "$only" != "$server" ]; then cap[$server,$leg,cg]="n/a|skipped"; continue; fi
      log "$server $leg: callgrind at $cg_rate/s and $((cg_rate * 2))/s"
      cap[$server,$leg,cg]=$(callgrind_row "$server" "$leg")
      log "  -> ${cap[$server,$leg,cg]}"
    done
  done
fi

if want capacity || want callgrind; then
  printf '\nCapacity: switchboard-turnload, %s allocations in pairs (client -> relay -> relay -> client), %s B payload; server on CPU %s, load on CPU %s\n' \
    "$cap_allocs" "$cap_size" "$server_cpu" "$load_cpu"
  printf 'coturn %s --relay-threads=1; switchboard-relay relay.workers = 1, taskset to one core\n' "$(turnserver --version 2>/dev/null | head -n1)"
  if want capacity; then
    printf 'calibrate (plain UDP echo, no TURN): ceiling %s packets/s (%s); at %s/s p50 %s us, p99 %s us\n' \
      "$(knee_text "$cal_knee" "$cal_why")" "$cal_why" "$cap_fixed" \
      "$(num "$(field "$cal_floor" p50_us)" 1)" "$(num "$(field "$cal_floor" p99_us)" 1)"
  fi
  printf '\n%-4s | %-23s | %-23s | %-25s | %-23s\n' leg "knee packets/s" "CPU us/relayed @$cap_fixed/s" "p50 / p99 us @50% coturn knee" "callgrind Ir/relayed"
  printf '%-4s | %7s %7s %7s | %7s %7s %7s | %12s %12s | %7s %7s %7s\n' "" coturn ours ratio coturn ours ratio coturn ours coturn ours ratio
  for leg in $legs; do
    IFS='|' read -r ck cw <<<"${cap[coturn,$leg,knee]:-0|not run}"
    IFS='|' read -r ok ow <<<"${cap[ours,$leg,knee]:-0|not run}"
    cf=$(field "${cap[coturn,$leg,fixed]:-}" cpu_us_per_relayed)
    of=$(field "${cap[ours,$leg,fixed]:-}" cpu_us_per_relayed)
    cl="$(num "$(field "${cap[coturn,$leg,half]:-}" p50_us)" 0)/$(num "$(field "${cap[coturn,$leg,half]:-}" p99_us)" 0)"
    ol="$(num "$(field "${cap[ours,$leg,half]:-}" p50_us)" 0)/$(num "$(field "${cap[ours,$leg,half]:-}" p99_us)" 0)"
    IFS='|' read -r cg cgw <<<"${cap[coturn,$leg,cg]:-n/a|not run}"
    IFS='|' read -r og ogw <<<"${cap[ours,$leg,cg]:-n/a|not run}"
    ck_text=$(knee_text "$ck" "$cw")
    ok_text=$(knee_text "$ok" "$ow")
    [ "$ck" = 0 ] && ck=n/a
    [ "$ok" = 0 ] && ok=n/a
    printf '%-4s | %7s %7s %7s | %7s %7s %7s | %12s %12s | %7s %7s %7s\n' "$leg" \
      "$ck_text" "$ok_text" "$(ratio "$ok" "$ck")" \
      "$(num "$cf" 2)" "$(num "$of" 2)" "$(ratio "$of" "$cf")" "$cl" "$ol" "$cg" "$og" "$(ratio "$og" "$cg")"
    printf '       sweep ended: coturn: %s; ours: %s\n' "${cw:-?}" "${ow:-?}"
    for s in coturn ours; do
      line=${cap[$s,$leg,fixed]:-}
      [ -n "$line" ] && printf '       %s @%s/s: loss %s %%, server CPU %s us for %s relayed, RSS %s kB, tool CPU %s %%\n' "$s" "$cap_fixed" \
        "$(num "$(field "$line" loss_pct)" 3)" "$(field "$line" server_cpu_us)" "$(field "$line" relayed_packets)" \
        "$(field "$line" server_hwm_kb)" "$(num "$(field "$line" loader_cpu_pct)" 0)"
      [ -n "$line" ] && [ "$(field "$line" refused)" != n/a ] && printf '       %s @%s/s refused: %s\n' "$s" "$cap_fixed" "$(field "$line" refused)"
    done
    [ -n "$cgw$ogw" ] && printf '       callgrind notes: coturn: %s; ours: %s\n' "${cgw:-ok}" "${ogw:-ok}"
  done
  printf '\nknee: highest rate of the sweep with < 0.1 %% loss (">=": the sweep ended before loss did);\n'
  printf 'CPU us/relayed: server utime+stime over the window / datagrams it relayed (2 per payload);\n'
  printf 'callgrind: (Ir at %s/s - Ir at %s/s) / (relayed at %s/s - relayed at %s/s), %s allocations, %s s.\n' \
    $((cg_rate * 2)) "$cg_rate" $((cg_rate * 2)) "$cg_rate" 10 "$cg_secs"
  printf 'Load average before: %s, after: %s (%s CPUs).\n' "$cap_load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
fi
