//! The gate's decisions on authenticated TURN requests (Allocate, Refresh,
//! CreatePermission, ChannelBind), in the order that keeps state bounded: credentials first,
//! then the allocation's owner (441), then whether the crate would read the request at all
//! (400), then the method's own rules (quotas 486/508, policy 403, permission cap 508,
//! channel range 400), and only then is anything recorded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
};
use stun::message::{
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message,
};

use super::pending::{Full, PendingTable};
use super::{CRATE_READ_LIMIT, Gate, Inbound, Pending, PendingKey, lock};
use crate::control::auth::{split_username, verify_message_past_expiry};
use crate::control::nonce::NonceCheck;
use crate::control::tables::{AllocState, ClientKey};
use crate::policy::canonical;
use crate::policy::quota::QuotaError;
use crate::transport::ClientTransport;
use crate::transport::framing::{MAX_CHANNEL, MIN_CHANNEL};
use crate::wire;

/// Why a request is refused after its credentials were verified: an error response signed
/// with the request's key (RFC 8489 section 9.2.4).
type Refusal = u16;

impl Gate {
    pub(super) fn request(
        &self,
        m: &Message,
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        client: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Inbound {
        let alloc = self.client_alloc(transport, local, client);
        // Requests from clients without an allocation are what a flood consists of. Stream
        // clients are bounded by the connection caps and idle timeout instead: a dropped
        // request on a stream would hang its client.
        if alloc.is_none() && !transport.is_stream() && !lock(&self.limiter).allow(client.ip(), now)
        {
            self.metrics.rate_limited.inc();
            return Inbound::Drop;
        }
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return self.unauthorized(m, "missing", client, unix);
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            wire::text(m, ATTR_USERNAME),
            wire::text(m, ATTR_REALM),
            wire::text(m, ATTR_NONCE),
        ) else {
            return self.unauthorized(m, "malformed", client, unix);
        };
        if realm != self.cfg.realm {
            return self.unauthorized(m, "wrong_realm", client, unix);
        }
        match self.nonces.check(&nonce, client.ip(), unix) {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => {
                self.metrics.auth_failure("stale_nonce");
                return self.challenge(m, 438, client, unix);
            }
            NonceCheck::Invalid => return self.unauthorized(m, "bad_nonce", client, unix),
        }
        let secrets = self.creds.secrets();
        // SPEC 3.2: unless `strict_expiry`, the credential that made an allocation keeps
        // refreshing it (and its permissions and channels) past its expiry time, so a call
        // outlives `credential_ttl`. A new Allocate always needs an unexpired credential.
        let continuing = !self.cfg.strict_expiry
            && m.typ.method != METHOD_ALLOCATE
            && alloc
                .as_ref()
                .is_some_and(|a| a.username() == Some(username.as_str()));
        let verified =
            verify_message_past_expiry(m, secrets.all(), &username, &realm, unix, continuing);
        let key = match verified {
            Ok(key) => key,
            Err(e) => return self.unauthorized(m, e.reason(), client, unix),
        };
        let Ok((expiry, user)) = split_username(&username) else {
            return self.unauthorized(m, "malformed", client, unix);
        };
        let refuse =
            |code: Refusal| Inbound::Reply(wire::error_response(m, code, None, Some(&key)));
        // RFC 8656 section 5 (RFC 5766 section 4): every request after the Allocate must use
        // the USERNAME that created the allocation, else 441, so another user's valid
        // credential cannot refresh, delete or extend it. (An Allocate on a 5-tuple in use
        // gets 437 from the crate, RFC 8656 section 7.2.)
        if let Some(a) = &alloc
            && m.typ.method != METHOD_ALLOCATE
            && a.username() != Some(username.as_str())
        {
            self.metrics.auth_failure("wrong_credentials");
            return refuse(441);
        }
        // RFC 8656 section 7.2: a retransmission of the Allocate that made this allocation
        // (its answer was lost or late) gets the original success answer again.
        if let Some(a) = &alloc
            && m.typ.method == METHOD_ALLOCATE
            && a.username() == Some(username.as_str())
            && let Some((tid, answer)) = a.created_by.get()
            && *tid == m.transaction_id.0
        {
            return Inbound::Reply(answer.clone());
        }
        let crate_nonce = self
            .crate_nonce
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(n, _)| n.clone()));
        // What the crate gets: only the part we checked, re-signed with its nonce.
        let Some(to_crate) = crate_nonce.and_then(|n| wire::with_nonce(m, &n, &key)) else {
            return Inbound::Drop;
        };
        if to_crate.len() > CRATE_READ_LIMIT {
            // The crate would drop it unanswered: refuse it before recording anything.
            self.metrics.refused("oversized");
            return refuse(400);
        }
        let pkey = PendingKey {
            client: ClientKey::new(transport.as_ref(), local, client),
            tid: m.transaction_id.0,
        };
        let recorded = match (m.typ.method, alloc) {
            (METHOD_ALLOCATE, None) => {
                let credential = (username.clone(), key.clone());
                match self.begin_allocate(pkey, transport, client, credential, user, now) {
                    // A datagram retransmission of an Allocate the crate has not answered
                    // yet: it answers the first copy (handing it a second one would get
                    // the client a 437 once the first made the allocation).
                    Ok(InFlight::Already) if !transport.is_stream() => return Inbound::Drop,
                    Ok(_) => Ok(()),
                    Err(code) => Err(code),
                }
            }
            // RFC 8656 sections 8.2, 10.2, 12.2: no allocation on this 5-tuple.
            (METHOD_REFRESH | METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND, None) => Err(437),
            (METHOD_CREATE_PERMISSION, Some(alloc)) => self
                .permission_request(m, alloc, now)
                .and_then(|p| self.record(pkey, p, now)),
            (METHOD_CHANNEL_BIND, Some(alloc)) => self
                .channel_request(m, alloc, now)
                .and_then(|p| self.record(pkey, p, now)),
            // Refresh of one's own allocation, or an Allocate the crate answers with 437.
            _ => Ok(()),
        };
        if let Err(code) = recorded {
            return refuse(code);
        }
        self.creds.remember(&username, key, expiry, unix);
        Inbound::ToCrate(to_crate)
    }

    /// Reserves quota for an Allocate and records it, both keyed by the client's 5-tuple and
    /// transaction id (a retransmission from the same 5-tuple is counted once; the same id
    /// from another source port is another allocation). RFC 8656 section 7.2: 486 for the
    /// user's quota, 508 for capacity (also when the pending table is full).
    fn begin_allocate(
        &self,
        pkey: PendingKey,
        transport: &Arc<dyn ClientTransport>,
        client: SocketAddr,
        credential: (String, Vec<u8>),
        user: &str,
        now: Instant,
    ) -> Result<InFlight, Refusal> {
        let mut table = lock(&self.pending);
        if table.contains(&pkey) {
            return Ok(InFlight::Already);
        }
        if let Err(e) = lock(&self.quota).reserve(user) {
            let (code, scope) = match e {
                QuotaError::PerUser => (486, "user"),
                QuotaError::Total => (508, "total"),
            };
            self.metrics.quota_rejected(scope);
            return Err(code);
        }
        let p = Pending::Allocate {
            transport: Arc::clone(transport),
            client,
            credential,
            user: user.to_owned(),
        };
        let inserted = table.insert(pkey, p, now);
        self.settle_inserted(&mut table, inserted, Some(user))
            .map(|()| InFlight::New)
    }

    /// Records a CreatePermission or ChannelBind; 508 when the table is full.
    fn record(&self, pkey: PendingKey, p: Pending, now: Instant) -> Result<(), Refusal> {
        let mut table = lock(&self.pending);
        let inserted = table.insert(pkey, p, now);
        self.settle_inserted(&mut table, inserted, None)
    }

    /// Releases what expired entries held, and the new reservation of `user` if the entry
    /// could not be recorded (so a full table never yields an allocation we do not follow).
    fn settle_inserted(
        &self,
        table: &mut PendingTable<Pending>,
        inserted: Result<Vec<Pending>, Full>,
        user: Option<&str>,
    ) -> Result<(), Refusal> {
        let result = match inserted {
            Ok(expired) => {
                for p in expired {
                    if let Pending::Allocate { user, .. } = p {
                        lock(&self.quota).release(&user);
                    }
                }
                Ok(())
            }
            Err(Full) => {
                if let Some(user) = user {
                    lock(&self.quota).release(user);
                }
                self.metrics.refused("pending_full");
                Err(508)
            }
        };
        self.metrics
            .pending
            .set(i64::try_from(table.len()).unwrap_or(i64::MAX));
        result
    }

    /// RFC 8656 section 10.2: every XOR-PEER-ADDRESS must be valid (400) and allowed (403,
    /// SPEC section 3: the whole request is refused when any is denied; the crate would
    /// install only the first), and the allocation must have room for the new peers (508).
    fn permission_request(
        &self,
        m: &Message,
        alloc: Arc<AllocState>,
        now: Instant,
    ) -> Result<Pending, Refusal> {
        let peers = match wire::peer_addresses(m) {
            Some(p) if !p.is_empty() => p,
            _ => return Err(400),
        };
        if !peers.iter().all(|p| self.peer_allowed(*p)) {
            self.metrics.denied_peer("create_permission");
            return Err(403);
        }
        let mut ips: Vec<IpAddr> = peers.iter().map(|p| canonical(p.ip())).collect();
        ips.sort_unstable();
        ips.dedup();
        self.admit(&alloc, &ips, now)?;
        Ok(Pending::Permission { alloc, ips })
    }

    /// RFC 8656 section 12.2: a CHANNEL-NUMBER in range (400; 0x4000-0x7FFF as RFC 5766
    /// section 11 allows, see `framing`), exactly one valid XOR-PEER-ADDRESS (400), allowed
    /// (403), and room for its permission (508).
    fn channel_request(
        &self,
        m: &Message,
        alloc: Arc<AllocState>,
        now: Instant,
    ) -> Result<Pending, Refusal> {
        let number = match m.get(ATTR_CHANNEL_NUMBER) {
            Ok(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return Err(400),
        };
        if !(MIN_CHANNEL..=MAX_CHANNEL).contains(&number) {
            self.metrics.refused("bad_channel");
            return Err(400);
        }
        let peers = wire::peer_addresses(m).unwrap_or_default();
        let &[peer] = peers.as_slice() else {
            return Err(400);
        };
        if !self.peer_allowed(peer) {
            self.metrics.denied_peer("channel_bind");
            return Err(403);
        }
        self.admit(&alloc, &[peer.ip()], now)?;
        Ok(Pending::Channel {
            alloc,
            number,
            peer,
        })
    }

    /// SPEC section 3.1: at most `max_permissions_per_allocation` peers, checked before the
    /// crate sees the request (so its table is bounded by ours); 508 beyond.
    fn admit(&self, alloc: &AllocState, ips: &[IpAddr], now: Instant) -> Result<(), Refusal> {
        alloc
            .admit_permissions(ips, self.cfg.max_permissions_per_allocation, now)
            .map_err(|_| {
                self.metrics.refused("permission_cap");
                508
            })
    }
}

/// Whether an Allocate was just recorded or was already awaiting the crate's answer.
enum InFlight {
    New,
    Already,
}
