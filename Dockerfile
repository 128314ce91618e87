# One image, both binaries. Build:   docker build -t switchboard .
# Run:  docker run --network host -v /etc/switchboard:/etc/switchboard:ro switchboard switchboard-relay
#       docker run -p 8080:8080 -v /etc/switchboard:/etc/switchboard:ro switchboard   (signaling, the default)
# The relay wants --network host: it allocates thousands of UDP ports (port_range).

# ---- build ------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Cache dependencies: build against the manifests first, then the real sources.
COPY Cargo.toml Cargo.lock ./
COPY config/Cargo.toml config/
COPY signaling/Cargo.toml signaling/
COPY relay/Cargo.toml relay/
COPY tests/Cargo.toml tests/
COPY tools/turnload/Cargo.toml tools/turnload/
RUN for c in config signaling relay tests tools/turnload; do mkdir -p $c/src && echo 'fn main() {}' > $c/src/main.rs && touch $c/src/lib.rs; done \
 && mkdir -p signaling/assets config && touch config/switchboard.dev.toml \
 && cargo build --release --locked -p switchboard-signaling -p switchboard-relay || true
COPY . .
RUN touch config/src/lib.rs signaling/src/lib.rs signaling/src/main.rs relay/src/lib.rs relay/src/main.rs \
 && cargo build --release --locked -p switchboard-signaling -p switchboard-relay \
 && install -m 0755 target/release/switchboard-signaling target/release/switchboard-relay /usr/local/bin/

# ---- run --------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid switchboard --home-dir /nonexistent --shell /usr/sbin/nologin switchboard \
 && mkdir -p /etc/switchboard
COPY --from=build /usr/local/bin/switchboard-signaling /usr/local/bin/switchboard-relay /usr/local/bin/
COPY config/switchboard.example.toml /etc/switchboard/switchboard.example.toml
ENV SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml
USER switchboard:switchboard
# The public ports (README, "DNS and firewall"): signaling HTTP + Socket.IO; STUN/TURN
# udp+tcp; TURN over TLS; relayed ports. Not exposed: /metrics listens on loopback by
# default, relay.metrics_listen = 127.0.0.1:9641 and signaling.metrics_listen =
# 127.0.0.1:9642; keep them private (scrape from the host or a private network).
EXPOSE 8080/tcp 3478/udp 3478/tcp 5349/tcp 443/tcp 49152-65535/udp
# Healthy when the service running as PID 1 answers GET /health on the address its config
# names (`--health`: signaling.listen, or relay.metrics_listen for the relay).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["sh", "-c", "for b in switchboard-signaling switchboard-relay; do if grep -qa \"$b\" /proc/1/cmdline; then exec \"$b\" --health; fi; done; echo 'no switchboard service runs as PID 1' >&2; exit 1"]
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["switchboard-signaling"]
