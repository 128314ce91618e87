//! Switchboard relay: STUN/TURN over UDP on the webrtc-rs `turn` crate, with our layer in
//! front for credentials, peer policy, quotas, nonces, metrics and a fast data path.

pub mod auth;
pub mod nonce;
pub mod policy;
pub mod quota;

use switchboard_config::Config;

/// Runs the service until SIGINT/SIGTERM.
pub fn main_with(_cfg: Config) -> anyhow::Result<()> {
    anyhow::bail!("the relay is not implemented yet")
}
