//! The crate-facing half of the gate: learning the crate's nonce, following the
//! responses the crate sends (to mirror allocations, permissions and channels into our
//! tables), and the peer-to-client decisions of the fast path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::attributes::ATTR_NONCE;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, Message,
};

use super::{Gate, Outbound, Pending, PendingKey, SYNTHETIC_CLIENT, lock};
use crate::control::tables::{AllocState, ClientKey, RelaySlot};
use crate::dataplane::WorkerShared;
use crate::transport::ClientTransport;
use crate::wire;

impl Gate {
    /// Whether the I/O layer should hand the crate our synthetic unauthenticated request
    /// now (to learn the crate's nonce: at start-up only, afterwards the crate's own 438
    /// for its expired nonce carries the next one). Claims the injection when `true`.
    pub fn begin_injection(&self, now: Instant) -> bool {
        let known = self.crate_nonce.read().ok().is_some_and(|g| g.is_some());
        if known {
            return false;
        }
        let mut since = lock(&self.injecting_since);
        if since.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(2)) {
            return false;
        }
        *since = Some(now);
        true
    }

    /// The synthetic request: an Allocate without credentials, which the crate answers
    /// with 401 and a nonce of its own.
    #[must_use]
    pub fn synthetic_request() -> Vec<u8> {
        let mut m = Message::new();
        m.typ = stun::message::MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST);
        m.transaction_id = stun::agent::TransactionId::new();
        m.write_header();
        m.raw
    }

    /// Classifies one packet the crate sends to `client` on the listener `local` of
    /// `transport`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the listener (worker, transport, address), the packet, its client and two clocks"
    )]
    pub fn handle_crate_output(
        &self,
        worker: &Arc<WorkerShared>,
        transport: &dyn ClientTransport,
        local: SocketAddr,
        packet: &[u8],
        client: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Outbound {
        if wire::looks_like_channel_data(packet) {
            return Outbound::Forward;
        }
        let Some(m) = wire::parse(packet) else {
            return Outbound::Forward;
        };
        if client == SYNTHETIC_CLIENT {
            if let Some(nonce) = wire::text(&m, ATTR_NONCE) {
                if let Ok(mut g) = self.crate_nonce.write() {
                    *g = Some((nonce, now));
                }
                *lock(&self.injecting_since) = None;
            }
            return Outbound::Swallow;
        }
        let pkey = PendingKey {
            client: ClientKey::new(transport, local, client),
            tid: m.transaction_id.0,
        };
        let pending = {
            let mut table = lock(&self.pending);
            let p = table.take(&pkey);
            self.metrics
                .pending
                .set(i64::try_from(table.len()).unwrap_or(i64::MAX));
            p
        };
        if m.typ.class == CLASS_ERROR_RESPONSE {
            if let Some(Pending::Allocate { user, .. }) = &pending {
                lock(&self.quota).release(user);
            }
            let code = wire::error_code(&m);
            if matches!(code, Some(401 | 438)) {
                // The crate's nonce expired (after an hour): it removed it from its table
                // and put this new one in, so its table stays at about one entry. Use the
                // new one from now on, and give the client our own nonce to retry with.
                if let Ok(mut g) = self.crate_nonce.write() {
                    *g = wire::text(&m, ATTR_NONCE).map(|n| (n, now));
                }
                let nonce = self.nonces.issue(client.ip(), unix);
                return Outbound::Replace(wire::error_response(
                    &m,
                    438,
                    Some((&nonce, &self.cfg.realm)),
                    None,
                ));
            }
            return Outbound::Forward;
        }
        if m.typ.class != CLASS_SUCCESS_RESPONSE {
            return Outbound::Forward;
        }
        match pending {
            Some(Pending::Allocate {
                transport,
                client,
                credential,
                user,
            }) => {
                if self.allocated(&m, worker, transport, client, credential, user, now) {
                    return Outbound::Allocated;
                }
                // Never tell a client it holds an allocation our layer does not follow.
                return Outbound::Replace(wire::error_response(&m, 508, None, None));
            }
            Some(Pending::Permission { alloc, ips }) => {
                alloc.permit(&ips, now);
                self.metrics.permissions_created.inc_by(ips.len() as u64);
            }
            Some(Pending::Channel {
                alloc,
                number,
                peer,
            }) => {
                alloc.bind_channel(number, peer, now);
                self.metrics.channels_bound.inc();
            }
            None if m.typ.method == METHOD_ALLOCATE => {
                // Only an Allocate whose entry expired unanswered gets here.
                tracing::warn!(%client, "Allocate success for a request no longer followed");
                return Outbound::Replace(wire::error_response(&m, 508, None, None));
            }
            None => {}
        }
        Outbound::Forward
    }

    /// Mirrors a new allocation into our tables; `false` (reservation released) when it
    /// cannot be followed.
    #[expect(
        clippy::too_many_arguments,
        reason = "the answer, where it came through, and the pending Allocate's parts"
    )]
    fn allocated(
        &self,
        m: &Message,
        worker: &Arc<WorkerShared>,
        transport: Arc<dyn ClientTransport>,
        client: SocketAddr,
        credential: (String, Vec<u8>),
        user: String,
        now: Instant,
    ) -> bool {
        let slot = wire::relayed_address(m).and_then(|a| self.tables.slot_by_port(a.port()));
        let (Some(slot), Ok(local)) = (slot, transport.local_addr()) else {
            tracing::warn!(%client, "Allocate success without a matching relayed socket");
            lock(&self.quota).release(&user);
            return false;
        };
        let key = ClientKey::new(transport.as_ref(), local, client);
        let state = Arc::new(AllocState::new(
            client,
            Arc::clone(&transport),
            Arc::clone(worker),
            key,
            user,
        ));
        let _ = state.credential.set(credential);
        let _ = state.created_by.set((m.transaction_id.0, m.raw.clone()));
        if slot.state.set(Arc::clone(&state)).is_err() {
            lock(&self.quota).release(&state.user);
            return false;
        }
        tracing::debug!(%client, relayed = %slot.advertised, worker = worker.id, "Allocation created");
        // The data plane's entry goes in before the success answer is sent.
        worker.add(
            key,
            Arc::clone(&slot.socket),
            transport,
            client,
            self.cfg.bytes_per_second,
            now,
        );
        self.tables.insert(key, state);
        self.metrics.allocations.inc();
        self.metrics.allocations_created.inc();
        true
    }

    /// A stream client's connection ended: the Refresh (LIFETIME 0, RFC 8656 section 7.4)
    /// to hand the crate on its behalf, signed with the Allocate's key and the crate's nonce.
    #[must_use]
    pub fn client_closed(
        &self,
        transport: &dyn ClientTransport,
        local: SocketAddr,
        client: SocketAddr,
    ) -> Option<Vec<u8>> {
        let alloc = self.tables.get(&ClientKey::new(transport, local, client))?;
        let (username, key) = alloc.credential.get()?;
        let nonce = self
            .crate_nonce
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(n, _)| n.clone()))?;
        wire::release_request(username, &self.cfg.realm, &nonce, key)
    }

    /// A relayed socket was closed by the crate (expiry, Refresh 0, shutdown).
    pub fn slot_closed(&self, slot: &Arc<RelaySlot>) {
        tracing::debug!(relayed = %slot.advertised, "Relayed socket closed");
        if let Some(state) = self.tables.remove_slot(slot) {
            lock(&self.quota).release(&state.user);
            self.metrics.allocations.dec();
        }
    }
}
