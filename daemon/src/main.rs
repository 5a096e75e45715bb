//! `stella-integrations`: parse arguments, load the configuration, call the library.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use daemon::config::Config;
#[cfg(unix)]
use futures::StreamExt as _;

/// The StellaOps Integrations hub: integration catalog and connector health daemon.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); defaults apply without one. Also `STELLA_CONFIG`.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Generate an API key and print it with the config entry that enables it.
    GenKey {
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes.
        #[arg(long, default_value = "integrations:read")]
        scopes: String,
        /// The key's name (its audit actor is `apikey:<id>`).
        #[arg(long, default_value = "key")]
        id: String,
    },
    /// Read a key from standard input and print its SHA-256, for `[[auth.api_keys]]`.
    HashKey,
    /// Validate the configuration (file and environment) as start-up does, without starting
    /// anything or touching the database, and print the effective settings with every secret
    /// redacted. Exits non-zero, with the reason, when the configuration is invalid.
    CheckConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    daemon::install_crypto_provider();
    let args = Args::parse();
    let command = args.command.unwrap_or(Command::Serve);
    match command {
        Command::Openapi => {
            println!("{}", daemon::api::spec_json());
            return Ok(());
        }
        Command::HashKey => {
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .context("reading the key")?;
            println!("{}", hex::encode(daemon::auth::api_key::digest(key.trim())));
            return Ok(());
        }
        Command::GenKey { tenant, scopes, id } => {
            let key = daemon::auth::api_key::generate();
            let scopes: Vec<&str> = scopes.split(',').map(str::trim).collect();
            let digest = hex::encode(daemon::auth::api_key::digest(&key));
            println!("{key}");
            eprintln!(
                "\n# Add to the configuration (the key above is not stored anywhere):\n\
                 [[auth.api_keys]]\nid = {id:?}\ntenant = {tenant:?}\nscopes = {scopes:?}\nsha256 = {digest:?}"
            );
            return Ok(());
        }
        Command::CheckConfig => {
            let config =
                Config::load(args.config.as_deref()).context("loading the configuration")?;
            daemon::check(&config).context("checking the configuration")?;
            print!(
                "{}",
                config
                    .redacted_toml()
                    .context("printing the configuration")?
            );
            return Ok(());
        }
        Command::Serve | Command::Migrate => {}
    }
    let config = Config::load(args.config.as_deref()).context("loading the configuration")?;
    daemon::telemetry::init(&config);
    match command {
        Command::Migrate => daemon::migrate(&config).await.context("migrating")?,
        _ => {
            let path = args.config.clone();
            daemon::run_reloading(config, shutdown_signal(), hangups(), move || {
                Config::load(path.as_deref())
            })
            .await
            .context("running the daemon")?;
        }
    }
    Ok(())
}

/// Yields on every SIGHUP: reload the configuration. Never yields where there is none.
fn hangups() -> impl futures::Stream<Item = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(signals) => {
                futures::stream::unfold(
                    signals,
                    |mut s| async move { s.recv().await.map(|()| ((), s)) },
                )
                .left_stream()
            }
            Err(error) => {
                tracing::warn!(message = "SIGHUP cannot be handled; reloading is off.", %error);
                futures::stream::pending().right_stream()
            }
        }
    }
    #[cfg(not(unix))]
    futures::stream::pending()
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
