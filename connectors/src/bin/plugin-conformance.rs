//! Checks a plugin folder against the external plugin protocol (`docs/plugins.md`).
//!
//! ```text
//! cargo run -p connectors --bin plugin-conformance -- <plugin-dir> [--config JSON]
//!     [--credential-env VAR] [--timeout-secs N]
//! ```
//!
//! The credential is read from the environment variable named by `--credential-env`, never
//! from the command line (where other users can read it). Exit status 0 when every check
//! passes, 1 when one fails, 2 on bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use connectors::external::conformance::{self, Options};
use connectors::external::{Credential, PluginSettings};

const USAGE: &str = "usage: plugin-conformance <plugin-dir> [--config JSON] [--credential-env VAR] [--timeout-secs N]";

fn parse(args: &[String]) -> Result<(PathBuf, Options), String> {
    let mut dir = None;
    let mut options = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => {
                let v: serde_json::Value =
                    serde_json::from_str(value()?).map_err(|e| format!("--config: {e}"))?;
                options.config = v
                    .as_object()
                    .cloned()
                    .ok_or("--config: not a JSON object")?;
            }
            "--credential-env" => {
                let name = value()?;
                let secret = std::env::var(name)
                    .map_err(|_| format!("--credential-env: {name} is not set"))?;
                options.credential = Some(Credential::new(secret));
            }
            "--timeout-secs" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--timeout-secs: {e}"))?;
                options.settings.call_timeout = Duration::from_secs(secs);
                options.settings.start_timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other if dir.is_none() && !other.starts_with('-') => dir = Some(PathBuf::from(other)),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    // The author's own PATH, so `#!/usr/bin/env python3` finds what they use.
    options.settings = PluginSettings {
        path: std::env::var("PATH").ok(),
        ..options.settings
    };
    Ok((dir.ok_or(USAGE)?, options))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, options) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let checks = conformance::run(&dir, options).await;
    let failed = checks.iter().filter(|c| !c.passed()).count();
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok   {:<24} {detail}", check.name),
            Err(detail) => println!("FAIL {:<24} {detail}", check.name),
        }
    }
    println!(
        "{} passed, {failed} failed: {}",
        checks.len() - failed,
        dir.display()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
