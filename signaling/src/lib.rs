//! Switchboard signaling: Socket.IO rooms and presence, relayed offers/answers/ICE, a REST
//! API and TURN credentials (SPEC sections 2 and 4).
//!
//! Layout: [`rooms`] is the deciding logic (pure), [`store`] the one interface to room state,
//! [`socket`] the Socket.IO side, [`rest`] the REST API, [`server`] the listener, shutdown and
//! process entry point.

pub mod assets;
pub mod auth;
pub mod conn_limit;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod ice;
pub mod live;
pub mod metrics;
pub mod passwords;
pub mod protocol;
pub mod ratelimit;
pub mod rest;
pub mod rooms;
pub mod server;
pub mod socket;
pub mod store;

pub use hub::Hub;
pub use server::{app, main_with, run, serve};
