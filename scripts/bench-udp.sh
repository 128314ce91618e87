#!/usr/bin/env bash
# Benchmark (not a test): the UDP rows of scripts/bench-relay.sh, i.e. coturn and
# switchboard-relay under the same turnutils_uclient client-to-client (-y) loads over UDP
# (`-m 50 -n 5000 -l 170 -z 0` and the heavier `-m 100 -n 5000 -l 1000 -z 0`), printing loss,
# wall time, peak RSS and the ratios. Same environment knobs as bench-relay.sh.
# Usage: bash scripts/bench-udp.sh
BENCH_ROWS=${BENCH_ROWS:-"udp udp-heavy"} exec bash "$(dirname "$0")/bench-relay.sh" "$@"
