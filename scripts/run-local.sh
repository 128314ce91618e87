#!/usr/bin/env bash
# Runs both services locally on loopback with the built-in development defaults, and prints
# the demo URL. Ctrl-C stops both. Usage: bash scripts/run-local.sh [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
bin=target/debug
"$bin/switchboard-relay" "$@" &
relay=$!
"$bin/switchboard-signaling" "$@" &
signaling=$!
trap 'kill -TERM $relay $signaling 2>/dev/null; wait' INT TERM EXIT
sleep 0.5 # only so the URL is printed after the start-up logs; nothing waits on it
printf '\n  Demo: open http://localhost:8080/ in two tabs and join the same room.\n\n' >&2
wait -n $relay $signaling
