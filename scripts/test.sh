#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the system tools the tests use (coturn's
# turnutils, Chromium, Node packages), then fmt, clippy, every test of the workspace, and
# every cargo fuzz target for a short bounded time (FUZZ_SECONDS each, default 20).
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# --- System packages -------------------------------------------------------------------
# Tools the integration tests drive. Tests that need one FAIL (never skip) when it is missing.
need_pkgs=()
command -v turnutils_uclient >/dev/null 2>&1 || need_pkgs+=(coturn)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "Installing system packages: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# The distribution's coturn service must not hold port 3478 during tests.
if command -v systemctl >/dev/null 2>&1; then systemctl stop coturn >/dev/null 2>&1 || true; fi

# The fuzz targets need the nightly toolchain (cargo fuzz); fail now rather than after the suite.
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly Rust toolchain is missing; the fuzz targets need it: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "Installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# --- Node packages for the JS clients (socket.io-client, playwright-core) ------------------
if [ -f tests/js/package.json ]; then
  log "Installing Node test clients"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Rust ---------------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "Building binaries for the end-to-end tests"
cargo build --workspace --bins --locked
log "cargo test"
cargo test --workspace --locked -- --test-threads="${SWITCHBOARD_TEST_THREADS:-2}"

# --- Fuzzing --------------------------------------------------------------------------------
# The corpus and regressions already ran on stable above (tests/fuzz_corpus.rs of each crate);
# this builds every target once and fuzzes each briefly.
log "cargo fmt --check (fuzz targets)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
