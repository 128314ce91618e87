//! The requests our layer handed the crate and awaits the answer to, keyed by the full
//! client 5-tuple (transport kind, listener, client address) and the transaction id: the
//! same transaction id from another source port is another request (and another quota
//! reservation), as RFC 8489 section 6.3 keys a transaction by its source too.
//!
//! Bounded in time and count (SPEC section 3.1): every entry expires `timeout` after it was
//! made, expired entries are swept on insert (at most once per [`SWEEP_INTERVAL`], and always
//! when the table is full), and a full table refuses new entries, so the caller can answer
//! with an error instead of handing the crate a request it will not follow.
//! Sans-IO: time is an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::control::tables::ClientKey;

/// How long a request may wait for the crate's answer. The crate answers in the same task
/// that read the request, so a live entry normally lasts microseconds; this bounds the
/// ones it never answers.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests followed at once. In steady state the table holds about one entry per
/// listener (the crate handles one request at a time per listener).
pub const PENDING_CAP: usize = 4096;
/// Expired entries are swept at most this often (and whenever the table is full).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One client transaction: the client's 5-tuple and the STUN transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingKey {
    pub client: ClientKey,
    pub tid: [u8; 12],
}

/// The table is full of live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pending-request table is full")]
pub struct Full;

#[derive(Debug)]
pub struct PendingTable<V> {
    entries: HashMap<PendingKey, (V, Instant)>,
    cap: usize,
    timeout: Duration,
    last_sweep: Option<Instant>,
}

impl<V> PendingTable<V> {
    #[must_use]
    pub fn new(cap: usize, timeout: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            cap: cap.max(1),
            timeout,
            last_sweep: None,
        }
    }

    /// Records `value` for `key` until `now + timeout`. Returns the entries that expired on
    /// the way (so the caller can give back what they held), or [`Full`] when `cap` live
    /// entries remain; nothing is recorded then.
    pub fn insert(&mut self, key: PendingKey, value: V, now: Instant) -> Result<Vec<V>, Full> {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_INTERVAL);
        let full = self.entries.len() >= self.cap && !self.entries.contains_key(&key);
        let expired = if due || full {
            self.sweep(now)
        } else {
            Vec::new()
        };
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            // Still full after the sweep, so the sweep freed nothing: nothing is lost here.
            debug_assert!(expired.is_empty());
            return Err(Full);
        }
        self.entries.insert(key, (value, now + self.timeout));
        Ok(expired)
    }

    /// Removes and returns every entry whose deadline has passed.
    pub fn sweep(&mut self, now: Instant) -> Vec<V> {
        self.last_sweep = Some(now);
        let keys: Vec<PendingKey> = self
            .entries
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.entries.remove(&k).map(|(v, _)| v))
            .collect()
    }

    /// The entry for `key`, removed. An entry past its deadline is still returned: the
    /// answer came late but came, and whatever the entry holds must be settled either way.
    pub fn take(&mut self, key: &PendingKey) -> Option<V> {
        self.entries.remove(key).map(|(v, _)| v)
    }

    #[must_use]
    pub fn contains(&self, key: &PendingKey) -> bool {
        self.entries.contains_key(key)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn key(port: u16, tid: u8) -> PendingKey {
        let local: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
        PendingKey {
            client: ClientKey {
                stream: false,
                local,
                client: SocketAddr::new("198.51.100.1".parse().expect("ip"), port),
            },
            tid: [tid; 12],
        }
    }

    /// RFC 8489 section 6.3: a transaction is identified by its id and its source; one id
    /// sent from two source ports is two requests.
    #[test]
    fn one_transaction_id_from_two_source_ports_is_two_entries() {
        let t0 = Instant::now();
        let mut p = PendingTable::new(8, PENDING_TIMEOUT);
        p.insert(key(1, 7), "a", t0).expect("room");
        p.insert(key(2, 7), "b", t0).expect("room");
        assert_eq!(p.len(), 2);
        assert_eq!(p.take(&key(2, 7)), Some("b"));
        assert_eq!(p.take(&key(2, 7)), None);
        assert_eq!(p.take(&key(1, 7)), Some("a"));
    }

    /// SPEC section 3.1: no state per request outlives a bounded time, even far below the
    /// cap: expired entries are swept on a later insert and handed back to be released.
    #[test]
    fn entries_expire_by_time_and_are_swept_without_reaching_the_cap() {
        let t0 = Instant::now();
        let mut p = PendingTable::new(1000, PENDING_TIMEOUT);
        for i in 0..10 {
            p.insert(key(i, 1), i, t0).expect("room");
        }
        let later = t0 + PENDING_TIMEOUT;
        let mut expired = p.insert(key(100, 1), 100, later).expect("room");
        expired.sort_unstable();
        assert_eq!(expired, (0..10).collect::<Vec<_>>());
        assert_eq!(p.len(), 1);
        assert_eq!(p.sweep(later + PENDING_TIMEOUT), vec![100]);
        assert!(p.is_empty());
    }

    /// A full table refuses (the caller answers with an error) rather than dropping an entry
    /// silently or growing, and accepts again once entries expire.
    #[test]
    fn a_full_table_refuses_new_entries_until_old_ones_expire() {
        let t0 = Instant::now();
        let mut p = PendingTable::new(3, PENDING_TIMEOUT);
        for i in 0..3 {
            p.insert(key(i, 1), i, t0).expect("room");
        }
        assert_eq!(p.insert(key(9, 1), 9, t0), Err(Full));
        assert_eq!(p.len(), 3);
        // A retransmission of a recorded request replaces its entry even when full.
        assert!(p.insert(key(0, 1), 0, t0).is_ok());
        let expired = p
            .insert(key(9, 1), 9, t0 + PENDING_TIMEOUT)
            .expect("room after expiry");
        assert_eq!(expired.len(), 3);
        assert_eq!(p.len(), 1);
    }
}
