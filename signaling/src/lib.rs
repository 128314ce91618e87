//! Switchboard signaling: Socket.IO rooms and presence, relayed offers/answers/ICE, a REST
//! API and TURN credentials.

use switchboard_config::Config;

/// Runs the service until SIGINT/SIGTERM.
pub fn main_with(_cfg: Config) -> anyhow::Result<()> {
    anyhow::bail!("the signaling server is not implemented yet")
}
