//! Start-up shared by both binaries: command line, `--check-config`, config loading, logging.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;

use crate::{Component, Config, LogFormat};

/// Exit code for an invalid configuration (SPEC section 1).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file [default: $SWITCHBOARD_CONFIG, then ./switchboard.toml, then
    /// built-in development defaults]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration (FILE, else as --config), print a one-line summary and
    /// exit: 0 when valid, 2 with the file, key, line and cause when not
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
}

/// What the binary should do after start-up.
#[derive(Debug)]
pub enum Startup {
    /// Run with this configuration; logging is initialised.
    Run(Box<Config>),
    /// Exit now with this code (check-config, bad config).
    Exit(ExitCode),
}

/// Parses the command line, loads and validates the configuration, initialises logging and
/// logs configuration warnings.
#[must_use]
pub fn startup(component: Component) -> Startup {
    let (name, about) = match component {
        Component::Signaling => (
            "switchboard-signaling",
            "Switchboard signaling: Socket.IO rooms, REST API and TURN credentials",
        ),
        Component::Relay => (
            "switchboard-relay",
            "Switchboard relay: STUN/TURN over UDP, TCP and TLS",
        ),
    };
    let cmd = Args::command().name(name).bin_name(name).about(about);
    let args = match Args::from_arg_matches(&cmd.get_matches()) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if let Some(file) = args.check_config {
        let path = file.or(args.config);
        return match crate::load(path.as_deref(), component) {
            Ok(cfg) => {
                #[allow(clippy::print_stdout)] // --check-config answers on stdout.
                {
                    println!("{}", cfg.summary(component));
                }
                for w in cfg.warnings(component) {
                    eprintln!("warning: {w}");
                }
                Startup::Exit(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: invalid configuration: {e}");
                Startup::Exit(ExitCode::from(EXIT_CONFIG))
            }
        };
    }
    let cfg = match crate::load(args.config.as_deref(), component) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return Startup::Exit(ExitCode::from(EXIT_CONFIG));
        }
    };
    if let Err(e) = init_logging(&cfg) {
        eprintln!("error: invalid configuration: key `log_level`: {e}");
        return Startup::Exit(ExitCode::from(EXIT_CONFIG));
    }
    for w in cfg.warnings(component) {
        tracing::warn!("{w}");
    }
    tracing::info!(summary = %cfg.summary(component), "Configuration loaded");
    Startup::Run(Box::new(cfg))
}

/// Logs to stderr, human or JSON; `RUST_LOG` wins over `log_level`.
pub fn init_logging(cfg: &Config) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).map_err(|e| format!("RUST_LOG: {e}"))?,
        _ => EnvFilter::try_new(cfg.log_level.as_deref().unwrap_or("info"))
            .map_err(|e| e.to_string())?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (in tests) is harmless.
    let _ = result;
    Ok(())
}
