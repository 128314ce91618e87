//! Switchboard signaling: Socket.IO rooms and presence, relayed offers/answers/ICE, a REST
//! API and TURN credentials (SPEC sections 2 and 4).
//!
//! Layout: [`core`] is the sans-IO protocol core (rules, fan-out, and the in-memory
//! [`rooms`] behind its state seam); [`hub`] the shared state that executes its decisions
//! through [`peers`] (the outbound queues); [`socket`] the Socket.IO side (decode, queue,
//! write); [`rest`] the REST API; [`server`] the listener, shutdown and process entry point.
//!
//! Module dependencies point one way: `server` → `socket`/`rest` → `hub` → `peers` →
//! `core` → `rooms`/`protocol`.

pub mod assets;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod conn_limit;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod ice;
pub mod live;
pub mod metrics;
pub mod passwords;
pub mod peerjs;
pub mod peers;
pub mod protocol;
pub mod ratelimit;
pub mod rest;
pub mod rooms;
pub mod server;
pub mod socket;

pub use hub::Hub;
pub use server::{app, main_with, run, serve};
