#!/usr/bin/env bash
# Builds every cargo fuzz target once (release, debug assertions, AddressSanitizer: cargo
# fuzz's defaults) and runs each for SECONDS, one after the other, then prints per target
# the executions and coverage of libFuzzer's final stats. Exits non-zero if any target
# crashed (its input is kept under fuzz/artifacts/<target>/; see README "Fuzzing").
#
# Usage: bash scripts/fuzz.sh [SECONDS]      (default: $FUZZ_SECONDS, else 600)
#   FUZZ_TARGETS="stream_framer config_loader"  runs only these targets.
# Needs the nightly toolchain; installs cargo-fuzz when missing.
# Seeds: fuzz/corpus/<target>/ and fuzz/regressions/<target>/ (read only). What the fuzzer
# finds is kept in fuzz/target/corpus/<target>/ (not checked in), so runs build on each
# other. Logs: fuzz/target/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${FUZZ_SECONDS:-600}}"
targets=(${FUZZ_TARGETS:-relay_client_packet stream_framer stun_attributes signaling_event config_loader})

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "SECONDS must be a positive integer, not '$seconds'"
if ! cargo +nightly --version >/dev/null 2>&1; then
  die "the nightly Rust toolchain is missing (cargo fuzz needs it): rustup toolchain install nightly"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "Installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="fuzz/target/$host/release"
log "Building the fuzz targets (cargo +nightly fuzz build)"
build_start=$SECONDS
cargo +nightly fuzz build
printf 'built in %d s\n' $((SECONDS - build_start)) >&2

mkdir -p fuzz/target/logs
summary=()
crashed=()
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || die "no fuzz target '$t' (see fuzz/Cargo.toml)"
  work="fuzz/target/corpus/$t"
  artifacts="fuzz/artifacts/$t/"
  logfile="fuzz/target/logs/$t.log"
  mkdir -p "$work" "$artifacts" "fuzz/corpus/$t" "fuzz/regressions/$t"
  log "Fuzzing $t for $seconds s"
  rc=0
  # -timeout: an input taking over 10 s is a hang and counts as a crash.
  "$bin_dir/$t" -artifact_prefix="$artifacts" -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 "$work" "fuzz/corpus/$t" "fuzz/regressions/$t" >"$logfile" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logfile" | tail -1)"
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$logfile" | tail -1 || true)"
  cov="$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([^ ]+).*/cov \1  ft \2  corpus \3/p' <<<"$done_line")"
  if [ "$rc" -ne 0 ]; then
    crashed+=("$t")
    unit="$(sed -n 's/.*Test unit written to //p' "$logfile" | tail -1)"
    grep -E "panicked at|ERROR: |SUMMARY: " "$logfile" | head -5 >&2 || true
    summary+=("$(printf '%-20s CRASH (exit %s) %s  log: %s' "$t" "$rc" "${unit:-}" "$logfile")")
  else
    summary+=("$(printf '%-20s %10s execs  %6s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-no final stats}")")
  fi
done

log "Fuzzing summary ($seconds s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
  printf '\nerror: crashes in: %s\n' "${crashed[*]}" >&2
  printf 'Minimize with `cargo +nightly fuzz tmin TARGET ARTIFACT`, keep it under fuzz/regressions/TARGET/, fix, and run the crate'"'"'s fuzz_corpus test.\n' >&2
  exit 1
fi
