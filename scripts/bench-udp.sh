#!/usr/bin/env bash
# Benchmark (not a test): coturn and switchboard-relay under the same turnutils_uclient
# client-to-client (-y) loads over UDP on loopback, with the same TURN REST secret.
# Prints, per load and server: loss, wall time, server RSS (current and peak) and the
# ratios relay/coturn.
#
# Usage: bash scripts/bench-udp.sh            (builds the release binary first)
# Env:   BENCH_LOADS="-m 50 -n 5000 -l 170 -z 0;-m 100 -n 5000 -l 1000 -z 0"  (;-separated)
#        BENCH_TIMEOUT=300  (seconds per uclient run, the bound on every load)
set -euo pipefail
cd "$(dirname "$0")/.."

SECRET="bench-secret-0123456789abcdef"
LOADS="${BENCH_LOADS:--m 50 -n 5000 -l 170 -z 0;-m 100 -n 5000 -l 1000 -z 0}"
TIMEOUT="${BENCH_TIMEOUT:-300}"
for tool in turnserver turnutils_uclient; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install coturn)" >&2; exit 1; }
done
if command -v systemctl >/dev/null 2>&1; then systemctl stop coturn >/dev/null 2>&1 || true; fi

cargo build --release -p switchboard-relay >&2
RELAY_BIN="target/release/switchboard-relay"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_udp() { # wait until the server answers a STUN Binding request (bounded: 10 s)
  python3 - "$1" <<'PY'
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
req = bytes.fromhex("00010000") + (0x2112A442).to_bytes(4, "big") + os.urandom(12)
deadline = time.time() + 10
while time.time() < deadline:
    s.sendto(req, ("127.0.0.1", int(sys.argv[1])))
    try:
        if s.recv(2048)[8:20] == req[8:20]:
            sys.exit(0)
    except OSError:
        pass
sys.exit("server on port %s did not come up" % sys.argv[1])
PY
}

start_coturn() { # port
  turnserver -n --use-auth-secret --static-auth-secret="$SECRET" --realm=switchboard \
    -L 127.0.0.1 -p "$1" -E 127.0.0.1 --min-port 50000 --max-port 59999 \
    --allow-loopback-peers --no-tcp --no-tls --no-dtls --no-tcp-relay --no-cli \
    --log-file "$WORK/coturn.log" --no-stdout-log --simple-log \
    --user-quota 0 --total-quota 0 >/dev/null 2>&1 &
  SERVER_PID=$!
}

start_relay() { # port
  local metrics; metrics=$(free_port)
  cat > "$WORK/relay.toml" <<TOML
log_level = "warn"
[turn]
realm = "switchboard"
secrets = ["$SECRET"]
public_host = "127.0.0.1"
[relay]
listen_udp = ["127.0.0.1:$1"]
listen_tcp = []
relay_ip = "127.0.0.1"
external_ip = "127.0.0.1"
port_range = [40000, 49999]
allowed_peers = ["127.0.0.0/8"]
max_allocations = 100000
max_allocations_per_user = 100000
unauth_requests_per_second = 100000
metrics_listen = "127.0.0.1:$metrics"
TOML
  "$RELAY_BIN" --config "$WORK/relay.toml" 2>"$WORK/relay.log" &
  SERVER_PID=$!
}

rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }

run_load() { # name port load -> "loss wall rss hwm"
  local out t0 t1 loss
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  out=$(timeout "$TIMEOUT" turnutils_uclient -y $3 -W "$SECRET" -u bench -p "$2" 127.0.0.1 2>&1 || true)
  t1=$(date +%s.%N)
  loss=$(printf '%s\n' "$out" | sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' | tail -1)
  echo "${loss:-NA} $(echo "$t1 - $t0" | bc) $(rss "$SERVER_PID") $(hwm "$SERVER_PID")"
}

printf '%-34s %-18s %8s %9s %10s %10s\n' "load (turnutils_uclient -y)" "server" "loss %" "wall s" "RSS KiB" "peak KiB"
IFS=';' read -r -a loads <<< "$LOADS"
for load in "${loads[@]}"; do
  port=$(free_port); start_coturn "$port"; wait_udp "$port"
  read -r c_loss c_wall c_rss c_hwm <<< "$(run_load coturn "$port" "$load")"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  port=$(free_port); start_relay "$port"; wait_udp "$port"
  read -r r_loss r_wall r_rss r_hwm <<< "$(run_load relay "$port" "$load")"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  printf '%-34s %-18s %8s %9.2f %10s %10s\n' "$load" "coturn $(turnserver --version 2>/dev/null | head -1)" "$c_loss" "$c_wall" "$c_rss" "$c_hwm"
  printf '%-34s %-18s %8s %9.2f %10s %10s\n' "$load" "switchboard-relay" "$r_loss" "$r_wall" "$r_rss" "$r_hwm"
  printf '%-34s %-18s %8s %9.2f %10.2f %10.2f\n' "" "ratio relay/coturn" "-" \
    "$(echo "$r_wall / $c_wall" | bc -l)" "$(echo "$r_rss / $c_rss" | bc -l)" "$(echo "$r_hwm / $c_hwm" | bc -l)"
done
