//! The control plane: the bridge between clients and the `turn` crate. The gate
//! (`gate`) decides on every STUN request before the crate sees it (credentials through
//! `auth` and `nonce`, the peer policy and quotas of `crate::policy`, the per-request caps)
//! and on every answer the crate sends; `tables` is the control plane's state per
//! allocation (mirrored into the owning worker's forwarding table); `conn` is the
//! channel-fed `Conn` the crate reads requests from, so that data never passes through the
//! crate's tasks.

pub mod auth;
pub mod conn;
pub mod gate;
pub mod nonce;
pub mod tables;
