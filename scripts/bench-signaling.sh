#!/usr/bin/env bash
# Signaling benchmark: switchboard-signaling against a reference Node socket.io 4.8 server
# (bench/node-server) implementing the same protocol v1 events, under the same
# switchboard-loadgen loads, alternating server by server in one run. The server runs on one
# core and the load on the other (taskset). Prints one table with both sets of figures and
# the ratios (ours / Node; below 1 is better for CPU, RSS and p99, above 1 for rates).
#
# Usage: bash scripts/bench-signaling.sh
# Env: ROUNDS (default 1: each load once per server, ours first), RATE_SECS (default 10),
#      IDLE_SMALL (4000), IDLE_LARGE (20000, capped by the open-file limit),
#      SERVER_CPU / LOAD_CPU (default 0 / 1), PEERS (1000), ROOM (4).
# Not part of CI: figures depend on the machine; compare the two columns of one run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-1}
RATE_SECS=${RATE_SECS:-10}
IDLE_SMALL=${IDLE_SMALL:-4000}
IDLE_LARGE=${IDLE_LARGE:-20000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PEERS=${PEERS:-1000}
ROOM=${ROOM:-4}

log() { printf '==> %s\n' "$*" >&2; }
for tool in taskset node npm python3 curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
if [ "$IDLE_LARGE" -gt $((nofile - 200)) ]; then
  log "open-file limit is $nofile: the large idle run uses $((nofile - 200)) connections instead of $IDLE_LARGE"
  IDLE_LARGE=$((nofile - 200))
fi

log "Building (release)"
cargo build --release --locked -p switchboard-signaling -p switchboard-loadgen >&2
(cd bench/node-server && npm ci --no-audit --no-fund --loglevel=error >&2)

work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

OURS_PORT=18180 NODE_PORT=18190
cat >"$work/switchboard.toml" <<TOML
[turn]
secrets = ["bench-secret-not-for-production"]
realm = "bench"
public_host = "127.0.0.1"

[signaling]
listen = "127.0.0.1:$OURS_PORT"
metrics_listen = "127.0.0.1:18182"
auth = "none"
max_connections_per_ip = 30000
# The load sends up to a few hundred events/s per socket at the saturation search.
rate_limit_per_second = 10000
rate_limit_burst = 20000

[relay]
listen_udp = ["127.0.0.1:18183"]
TOML

start_server() { # $1 = ours|node
  if [ "$1" = ours ]; then
    RUST_LOG=warn taskset -c "$SERVER_CPU" target/release/switchboard-signaling --config "$work/switchboard.toml" \
      >"$work/ours.log" 2>&1 &
    pid=$!; port=$OURS_PORT
  else
    taskset -c "$SERVER_CPU" node bench/node-server/server.js "$NODE_PORT" >"$work/node.log" 2>&1 &
    pid=$!; port=$NODE_PORT
  fi
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "error: $1 server did not come up" >&2; cat "$work/$1.log" >&2; exit 1
}
stop_server() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }

# run SERVER LABEL LOADGEN-ARGS...: one fresh server per load, one JSON line to results.
run() {
  local server=$1 label=$2; shift 2
  start_server "$server"
  log "$server: $label"
  local line
  if line=$(taskset -c "$LOAD_CPU" target/release/switchboard-loadgen --url "ws://127.0.0.1:$port" \
      --server-pid "$pid" --json "$@" | tail -1); then
    printf '{"server":"%s","load":"%s","r":%s}\n' "$server" "$label" "$line" >>"$work/results.jsonl"
  else
    printf '{"server":"%s","load":"%s","r":null}\n' "$server" "$label" >>"$work/results.jsonl"
  fi
  stop_server
}

rate_load() { # SERVER PER-PEER-RATE
  run "$1" "rate $(( $2 * PEERS ))" --peers "$PEERS" --room-size "$ROOM" --rate "$2" --duration "$RATE_SECS"
}

for round in $(seq "$ROUNDS"); do
  for server in ours node; do
    run "$server" "idle $IDLE_SMALL" --idle --peers "$IDLE_SMALL" --room-size "$ROOM" --duration 3
    run "$server" "idle $IDLE_LARGE" --idle --peers "$IDLE_LARGE" --room-size "$ROOM" --duration 3
    rate_load "$server" 10
    rate_load "$server" 20
  done
done

# Saturation: the highest rate each server holds with 100 % delivery and p99 < 50 ms (and
# at least 95 % of the step's rate actually sent and delivered),
# stepping the per-peer rate up until a step fails twice in a row (a shared VM steals CPU
# time in bursts: one retry keeps a burst from ending the sweep; bounded at 13 steps).
step_ok() { # SERVER LOAD-LABEL
  python3 - "$work/results.jsonl" "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
row = [x for x in rows if x["server"] == sys.argv[2] and x["load"] == sys.argv[3]][-1]["r"]
# The load generator must also have kept up (an open loop that fell behind would pass
# with fewer messages than the step asks for).
target = float(sys.argv[3].split()[1])
print("yes" if row and row["delivery_pct"] >= 100.0 and row["p99_ms"] < 50
      and row["throughput_msg_s"] >= 0.95 * target else "no")
PY
}
for server in ours node; do
  for r in 5 10 15 20 30 40 60 80 100 130 160 200 250; do
    rate_load "$server" "$r"
    ok=$(step_ok "$server" "rate $(( r * PEERS ))")
    if [ "$ok" != yes ]; then
      log "$server: rate $(( r * PEERS )) missed; retrying once"
      rate_load "$server" "$r"
      ok=$(step_ok "$server" "rate $(( r * PEERS ))")
    fi
    if [ "$ok" = yes ]; then
      echo "{\"server\":\"$server\",\"load\":\"saturation\",\"r\":{\"rate\":$(( r * PEERS ))}}" >>"$work/results.jsonl"
    else
      break
    fi
  done
done

mkdir -p target && cp "$work/results.jsonl" target/bench-signaling.jsonl
log "raw results: target/bench-signaling.jsonl"
python3 - "$work/results.jsonl" "rate $((10 * PEERS))" "rate $((20 * PEERS))" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
main_rates = set(sys.argv[2:])
def get(server, load, key):
    vals = [x["r"][key] for x in rows if x["server"] == server and x["load"] == load and x["r"] and x["r"].get(key) is not None]
    return statistics.median(vals) if vals else None
def sat(server):
    vals = [x["r"]["rate"] for x in rows if x["server"] == server and x["load"] == "saturation"]
    return max(vals) if vals else None
def fmt(v, unit=""):
    return "n/a" if v is None else (f"{v:,.1f}{unit}" if isinstance(v, float) else f"{v:,}{unit}")
def ratio(a, b):
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.2f}x"
loads = sorted({x["load"] for x in rows}, key=lambda l: (l.split()[0], int(l.split()[1]) if len(l.split()) > 1 else 0))
print()
print("| load | figure | Node socket.io 4.8 | Switchboard | ours / Node |")
print("|---|---|---|---|---|")
for load in loads:
    if load.startswith("idle"):
        figs = [("RSS per idle connection", "rss_per_conn_kb", " KB"), ("connect p99", "connect_ms_p99", " ms")]
    elif load in main_rates:
        figs = [("server CPU per delivered msg", "server_cpu_us_per_msg", " us"), ("p99 latency", "p99_ms", " ms"),
                ("delivered", "delivery_pct", " %"), ("reordered", "reordered", ""), ("throughput", "throughput_msg_s", " msg/s"),
                ("load generator CPU", "loadgen_cpu_pct", " % of a core")]
    else:
        continue
    for name, key, unit in figs:
        n, o = get("node", load, key), get("ours", load, key)
        print(f"| {load} | {name} | {fmt(n, unit)} | {fmt(o, unit)} | {ratio(o, n)} |")
n, o = sat("node"), sat("ours")
print(f"| saturation | highest msg/s with 100 % delivery, p99 < 50 ms | {fmt(n)} | {fmt(o)} | {ratio(o, n)} |")
for server in ("node", "ours"):
    r = sat(server)
    if r is None:
        continue
    label = f"rate {r}"
    cpu, p99, lg = (get(server, label, k) for k in ("server_cpu_us_per_msg", "p99_ms", "loadgen_cpu_pct"))
    print(f"| at {server}'s saturation ({r:,} msg/s) | {server}: CPU {fmt(cpu, ' us')}/msg, p99 {fmt(p99, ' ms')}, load generator {fmt(lg, ' %')} | | | |")
PY
