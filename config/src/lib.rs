//! Switchboard's shared configuration: the one TOML schema both binaries read, and the TURN
//! REST credential scheme both share.
//!
//! Loading is two steps: the file is deserialized into raw serde types (unknown keys are
//! errors) and then validated into the typed [`Config`]. Every error names the file, the
//! key path, the line and column, and the cause.

mod error;
mod load;
mod model;
mod raw;
mod units;

pub mod credentials;
#[doc(hidden)]
pub mod fuzzing;
pub mod ice;

pub use error::{ConfigError, Location};
pub use load::{
    DEFAULT_FILE, DEVELOPMENT_TOML, ENV_ADMIN_TOKEN, ENV_CONFIG, ENV_JWT_SECRET, ENV_REDIS_URL,
    ENV_RELAY_ADMIN_TOKEN, ENV_TOKENS, ENV_TURN_SECRETS, EnvFn, config_path, load,
    load_development, load_file, parse, process_env,
};
pub use model::*;
pub use units::{Bitrate, PortRange};

/// Re-exported so callers hold secrets in the same type.
pub use secrecy::{ExposeSecret, SecretString};

/// Seconds since the Unix epoch, for callers at the edge (the logic takes time as input).
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(feature = "startup")]
pub mod startup;
