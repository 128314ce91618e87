//! `switchboard-signaling`: parse arguments, load the configuration, run the server.

use std::process::ExitCode;

use switchboard_config::Component;
use switchboard_config::startup::{Startup, startup};

fn main() -> ExitCode {
    let cfg = match startup(Component::Signaling) {
        Startup::Run(cfg) => *cfg,
        Startup::Exit(code) => return code,
    };
    match switchboard_signaling::main_with(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("Fatal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
