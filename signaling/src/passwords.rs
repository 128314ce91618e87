//! Room passwords at run time: the slow argon2 hash and check run on tokio's blocking pool
//! (never on a runtime worker) with at most [`MAX_CONCURRENT_HASHES`] at once (each takes
//! 19 MiB), and failed attempts are limited per (room, IP) and per IP, and slow hashes per IP
//! ([`crate::rooms::attempts`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::rooms::PasswordHash;
use crate::rooms::attempts::FailedAttempts;

/// Hashes (create or check) running at once; further ones wait their turn.
pub const MAX_CONCURRENT_HASHES: usize = 2;

/// The hashing pool and the attempt limiter.
#[derive(Debug)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    attempts: Mutex<FailedAttempts>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_HASHES)),
            attempts: Mutex::new(FailedAttempts::default()),
        }
    }
}

impl Passwords {
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let _permit = self.permits.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }

    /// A new room's password hash (fresh random salt). `None` if hashing failed.
    pub async fn hash(&self, password: String) -> Option<PasswordHash> {
        let salt: [u8; 16] = rand::random();
        self.blocking(move || PasswordHash::new(&password, salt))
            .await
            .flatten()
    }

    /// Whether `password` matches `hash`.
    pub async fn verify(&self, hash: PasswordHash, password: String) -> bool {
        self.blocking(move || hash.matches(&password))
            .await
            .unwrap_or(false)
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, FailedAttempts> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` may try a password on `room` now.
    #[must_use]
    pub fn may_try(&self, room: &str, ip: IpAddr) -> bool {
        self.attempts().allowed(room, ip, Instant::now())
    }

    /// Takes one slow hash (create or check) from `ip`'s budget; `false` when it is spent.
    #[must_use]
    pub fn admit_hash(&self, ip: IpAddr) -> bool {
        self.attempts().try_hash(ip, Instant::now())
    }

    /// Counts a wrong or missing password.
    pub fn handle_failure(&self, room: &str, ip: IpAddr) {
        self.attempts().handle_failure(room, ip, Instant::now());
    }

    /// Entries in the attempt tables (bounded).
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.attempts().len()
    }
}
