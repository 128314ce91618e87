#!/usr/bin/env bash
# Builds the Docker image and checks it (not part of scripts/test.sh: it needs a container
# engine and base images). With docker or podman:
#   bash scripts/test-image.sh               # base images from the registry
#   bash scripts/test-image.sh --local-base  # no registry: make debian:bookworm-slim with
#                                            # debootstrap and rust:1-slim-bookworm from it
#                                            # plus this machine's Rust toolchain (podman)
# Checks: the image builds; it runs as the non-root user; without a config it refuses to start
# (exit 2, no silent development defaults); with a mounted config both entrypoints serve and
# the image's HEALTHCHECK reports healthy for each; SIGTERM stops each with exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "no container engine (podman or docker) found" >&2; exit 1; }
tag=switchboard:image-test
work=$(mktemp -d)
cleanup() {
  "$engine" rm -f sb-test-signaling sb-test-relay sb-test-idle >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
log() { printf '\n==> %s\n' "$*" >&2; }

if [ "${1:-}" = "--local-base" ]; then
  command -v debootstrap >/dev/null || fail "--local-base needs debootstrap"
  log "Making debian:bookworm-slim with debootstrap"
  debootstrap --variant=minbase bookworm "$work/debian" http://deb.debian.org/debian >/dev/null
  # Trust the same CAs as this machine (an egress proxy's CA, if any).
  mkdir -p "$work/debian/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$work/debian/usr/local/share/ca-certificates/" 2>/dev/null || true
  tar -C "$work/debian" -c . | "$engine" import - docker.io/library/debian:bookworm-slim >/dev/null
  log "Making rust:1-slim-bookworm from it and this machine's toolchain"
  chroot "$work/debian" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null && update-ca-certificates >/dev/null'
  toolchain=$(rustc --print sysroot)
  mkdir -p "$work/debian/usr/local/rust"
  cp -a "$toolchain/." "$work/debian/usr/local/rust/"
  rm -rf "$work/debian/usr/local/rust/share/doc"
  tar -C "$work/debian" -c . | "$engine" import \
    --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - docker.io/library/rust:1-slim-bookworm >/dev/null
  rm -rf "$work/debian"
fi

log "Building the image"
build_args=(build --network host -t "$tag")
# podman writes OCI images by default, which drop HEALTHCHECK; ask for the Docker format.
[[ "$engine" == *podman ]] && build_args+=(--format docker --pull=never)
"$engine" "${build_args[@]}" .

log "Checking the image"
user=$("$engine" run --rm "$tag" id -un)
[ "$user" = switchboard ] || fail "runs as $user, not switchboard"
set +e
out=$("$engine" run --rm "$tag" 2>&1)
rc=$?
set -e
[ $rc -eq 2 ] || fail "without a config: exit $rc, want 2 ($out)"
grep -q "/etc/switchboard/switchboard.toml" <<<"$out" || fail "no clear error without a config: $out"

# A config on ports unlikely to be busy; host networking as the README recommends for the relay.
mkdir -p "$work/etc"
secret=$(head -c 24 /dev/urandom | base64)
cat >"$work/etc/switchboard.toml" <<EOF
[turn]
secrets = ["$secret"]
public_host = "127.0.0.1"
[signaling]
listen = "127.0.0.1:18080"
[relay]
listen_udp = ["127.0.0.1:13478"]
listen_tcp = ["127.0.0.1:13478"]
relay_ip = "127.0.0.1"
external_ip = "127.0.0.1"
port_range = [40000, 40999]
metrics_listen = "127.0.0.1:19641"
EOF
chmod -R a+rX "$work/etc"
for svc in signaling relay; do
  "$engine" run -d --name "sb-test-$svc" --network host \
    -v "$work/etc:/etc/switchboard:ro" "$tag" "switchboard-$svc" >/dev/null
done
# The image's own HEALTHCHECK: podman runs it on demand; docker on its interval.
healthy() {
  if [[ "$engine" == *podman ]]; then
    "$engine" healthcheck run "$1" >/dev/null 2>&1
  else
    [ "$("$engine" inspect --format '{{.State.Health.Status}}' "$1")" = healthy ]
  fi
}
for svc in signaling relay; do
  ok=""
  for _ in $(seq 1 120); do
    if healthy "sb-test-$svc"; then ok=yes; break; fi
    sleep 0.5
  done
  [ -n "$ok" ] || fail "$svc: HEALTHCHECK never passed: $("$engine" logs "sb-test-$svc" 2>&1 | tail -5)"
  echo "$svc: healthy"
done
if [[ "$engine" == *podman ]]; then
  # And it is not always healthy: a container whose PID 1 is no Switchboard service fails it.
  "$engine" run -d --name sb-test-idle "$tag" sleep 60 >/dev/null
  if "$engine" healthcheck run sb-test-idle >/dev/null 2>&1; then fail "HEALTHCHECK passes without a service"; fi
  "$engine" rm -f -t 0 sb-test-idle >/dev/null
  echo "no service: unhealthy, as it should be"
fi
curl -fsS http://127.0.0.1:18080/api/ice-servers | grep -q '"iceServers"' || fail "signaling: no ICE servers"
for svc in signaling relay; do
  "$engine" stop -t 15 "sb-test-$svc" >/dev/null
  code=$("$engine" inspect --format '{{.State.ExitCode}}' "sb-test-$svc")
  [ "$code" = 0 ] || fail "$svc: exit $code after SIGTERM"
  echo "$svc: stopped with exit 0"
done
log "Image OK: $("$engine" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
