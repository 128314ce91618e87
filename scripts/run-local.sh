#!/usr/bin/env bash
# Runs both services locally and prints the demo URL; Ctrl-C stops both.
# Without --config they use the built-in development defaults (loopback only, a public
# development secret, a loud warning). Usage: bash scripts/run-local.sh [--config FILE]
# SWITCHBOARD_BIN_DIR=DIR runs the binaries found there instead of building (the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SWITCHBOARD_BIN_DIR:-}" ]; then
  bin=$SWITCHBOARD_BIN_DIR
else
  cargo build --workspace --bins
  bin=${CARGO_TARGET_DIR:-target}/debug
fi

# Validate first, so a broken file is reported once, clearly, before anything starts; the
# summary line names the signaling address ("...; signaling on ADDR, ..."), which gives the URL.
check() {
  local out
  if ! out=$("$@" --check-config 2>&1); then
    printf '%s\n' "$out" >&2
    exit 2
  fi
  printf '%s\n' "$out"
}
check "$bin/switchboard-relay" "$@" >/dev/null
summary=$(check "$bin/switchboard-signaling" "$@")
listen=$(sed -n 's/.*signaling on \([^,]*\),.*/\1/p' <<<"$summary")
port=${listen##*:}
host=${listen%:*}
case "$host" in
  0.0.0.0 | "[::]" | "") host=localhost ;;
esac
url="http://$host:$port/"

"$bin/switchboard-relay" "$@" &
relay=$!
"$bin/switchboard-signaling" "$@" &
signaling=$!
trap 'kill -TERM $relay $signaling 2>/dev/null || true; wait' INT TERM EXIT
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "${url}health" 2>/dev/null; then break; fi
  kill -0 $signaling 2>/dev/null || { echo "switchboard-signaling exited" >&2; exit 1; }
  sleep 0.1
done
printf '\n  Switchboard is running. Demo: open %s in two tabs and join the same room.\n\n' "$url" >&2
wait -n $relay $signaling
