#!/usr/bin/env bash
# Runs both services locally on loopback and prints the demo URL; Ctrl-C stops both.
# Without --config they use the built-in development defaults (loopback only, a public
# development secret, a loud warning). Usage: bash scripts/run-local.sh [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
bin=target/debug
"$bin/switchboard-relay" "$@" &
relay=$!
"$bin/switchboard-signaling" "$@" &
signaling=$!
trap 'kill -TERM $relay $signaling 2>/dev/null || true; wait' INT TERM EXIT
url=http://localhost:8080/
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "${url}health" 2>/dev/null; then break; fi
  kill -0 $signaling 2>/dev/null || { echo "switchboard-signaling exited" >&2; exit 1; }
  sleep 0.1
done
printf '\n  Switchboard is running. Demo: open %s in two tabs and join the same room.\n\n' "$url" >&2
wait -n $relay $signaling
