//! Assembles one relay instance: the gate (control plane), the data-plane workers serving
//! the listeners, the `turn` crate's server over one channel-fed listener conn and relay
//! generator per served listener, and the reloadable credentials. Takes already-bound
//! sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchboard_config::Config;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

use crate::control::auth::{Credentials, RestAuthHandler};
use crate::control::conn::{ListenerConn, RelayGenerator};
use crate::control::gate::{Gate, GateConfig};
use crate::dataplane::{DataPlane, Listener};
use crate::metrics::Metrics;
use crate::policy::PeerPolicy;

/// How long `close` waits for the crate to tear its allocations down.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running relay.
pub struct Relay {
    server: Server,
    gate: Arc<Gate>,
    plane: DataPlane,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

/// The peer policy for `cfg`: its lists, its listening addresses and relay addresses.
#[must_use]
pub fn policy_for(cfg: &Config, bound: &[SocketAddr]) -> PeerPolicy {
    let r = &cfg.relay;
    let mut own_listen: Vec<SocketAddr> = bound.to_vec();
    own_listen.extend(
        r.listen_udp
            .iter()
            .chain(&r.listen_tcp)
            .chain(&r.listen_tls),
    );
    PeerPolicy::new(
        r.allowed_peers.clone(),
        r.denied_peers.clone(),
        own_listen,
        vec![r.relay_ip, r.external_ip],
    )
}

impl Relay {
    /// Starts serving `listeners` (already bound) on the workers of `plane`, in turn.
    pub async fn start(
        cfg: &Config,
        plane: DataPlane,
        listeners: Vec<Listener>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let bound: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| match l {
                Listener::Udp(s) => s.local_addr().ok(),
                Listener::Messages(t) => t.local_addr().ok(),
            })
            .collect();
        let r = &cfg.relay;
        let gate_cfg = GateConfig {
            realm: cfg.turn.realm.clone(),
            policy: policy_for(cfg, &bound),
            max_allocations: r.max_allocations,
            max_allocations_per_user: r.max_allocations_per_user,
            bytes_per_second: r
                .max_bitrate_per_allocation
                .bits_per_second()
                .map(|b| b / 8),
            unauth_requests_per_second: r.unauth_requests_per_second,
            max_permissions_per_allocation: r.max_permissions_per_allocation,
            pending_cap: crate::control::gate::PENDING_CAP,
            strict_expiry: cfg.relay.strict_expiry,
        };
        let creds = Arc::new(Credentials::new(cfg.turn.secrets.clone()));
        let gate = Arc::new(Gate::new(
            gate_cfg,
            Arc::clone(&creds),
            rand::random(),
            metrics,
        ));
        let mut conn_configs = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let crate::dataplane::Served {
                worker,
                transport,
                inbox,
            } = plane
                .serve(i, listener, &gate)
                .context("serving a listener on a worker")?;
            let conn = ListenerConn::new(transport, Arc::clone(&gate), Arc::clone(&worker), inbox)
                .context("listener address")?;
            conn_configs.push(ConnConfig {
                conn: Arc::new(conn),
                relay_addr_generator: Box::new(RelayGenerator {
                    relay_ip: r.relay_ip,
                    external_ip: r.external_ip,
                    ports: r.port_range,
                    gate: Arc::clone(&gate),
                    worker,
                }),
            });
        }
        let server = Server::new(ServerConfig {
            conn_configs,
            realm: cfg.turn.realm.clone(),
            auth_handler: Arc::new(RestAuthHandler::new(creds)),
            channel_bind_timeout: Duration::from_secs(0),
            alloc_close_notify: None,
        })
        .await
        .context("starting the TURN server")?;
        Ok(Self {
            server,
            gate,
            plane,
        })
    }

    /// [`Relay::start`] with every transport served message by message on the stream
    /// worker (tests of the assembled relay over in-memory or stream transports).
    #[cfg(test)]
    pub(crate) async fn start_on_transports(
        cfg: &Config,
        transports: Vec<Arc<dyn crate::transport::ClientTransport>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let plane = DataPlane::start(1)?;
        let listeners = transports.into_iter().map(Listener::Messages).collect();
        Self::start(cfg, plane, listeners, metrics).await
    }

    /// Applies a reloaded configuration: new TURN secrets take effect for new requests;
    /// existing allocations are untouched.
    pub fn reload(&self, cfg: &Config) {
        self.gate.creds.set_secrets(cfg.turn.secrets.clone());
    }

    /// The gate, for tests that inspect the tables.
    #[cfg(test)]
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Live allocations.
    #[must_use]
    pub fn allocations(&self) -> usize {
        self.gate.tables.allocations()
    }

    /// Live allocations per worker (the data plane's view).
    #[must_use]
    pub fn worker_allocations(&self) -> Vec<usize> {
        self.plane
            .workers()
            .iter()
            .map(|w| w.allocations())
            .collect()
    }

    /// Stops the crate's listeners and closes every allocation, within [`CLOSE_TIMEOUT`],
    /// then the workers.
    pub async fn close(self) {
        if tokio::time::timeout(CLOSE_TIMEOUT, self.server.close())
            .await
            .is_err()
        {
            tracing::warn!("TURN server did not close within {CLOSE_TIMEOUT:?}");
        }
        let plane = self.plane;
        let _ = tokio::task::spawn_blocking(move || plane.stop()).await;
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
