//! `switchboard-relay`: parse arguments, load the configuration, run the relay.

use std::process::ExitCode;

use switchboard_config::Component;
use switchboard_config::startup::{Startup, startup};

fn main() -> ExitCode {
    let cfg = match startup(Component::Relay) {
        Startup::Run(cfg) => *cfg,
        Startup::Exit(code) => return code,
    };
    match switchboard_relay::main_with(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("Fatal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
