//! The protocol conformance checks that `plugin-conformance` runs against a plugin folder, so
//! plugin authors can check their plugin before an operator installs it.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::discovery::{DiscoveredPlugin, load};
use super::protocol::{
    self, Credential, ListResourcesResult, SUPPORTED_PROTOCOL_VERSIONS, ValidateResult, method,
};
use super::supervisor::{DEFAULT_PATH, ENV_PLUGIN_DIR, Supervisor};
use super::{CallError, PluginSettings};
use crate::provider::Capability;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// A short stable name, such as `check_health`.
    pub name: &'static str,
    /// `Ok` with what was seen, or `Err` with what is wrong.
    pub outcome: Result<String, String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// What to run the checks with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A valid configuration of the plugin's type (pointing at a reachable test provider for
    /// meaningful health answers).
    pub config: Map<String, Value>,
    /// The credential to send; a canary when `None`, which must never be echoed back.
    pub credential: Option<Credential>,
    /// Limits of the run (timeouts).
    pub settings: PluginSettings,
}

/// A canary credential: any plugin answer containing it is a leak.
const CANARY: &str = "conformance-canary-7c1e9b04";

fn check(name: &'static str, outcome: Result<String, String>) -> Check {
    Check { name, outcome }
}

fn no_secret(value: &Value, credential: &Credential) -> Result<(), String> {
    let secret = credential.expose();
    if !secret.is_empty() && value.to_string().contains(secret) {
        Err("the answer contains the credential".into())
    } else {
        Ok(())
    }
}

/// Runs every check against the plugin in `dir`. Never panics on anything the plugin does.
pub async fn run(dir: &Path, options: Options) -> Vec<Check> {
    let mut checks = Vec::new();
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let plugin = match load(&canonical) {
        Ok(plugin) => {
            checks.push(check(
                "manifest",
                Ok(format!(
                    "{} {} provides {}",
                    plugin.manifest.id, plugin.manifest.version, plugin.manifest.provider_type
                )),
            ));
            plugin
        }
        Err(e) => {
            checks.push(check(
                "manifest",
                Err(format!("rejected ({}): {}", e.1.code(), e.1)),
            ));
            return checks;
        }
    };
    let supervisor = std::sync::Arc::new(Supervisor::new(plugin.clone(), options.settings.clone()));
    let canary = Credential::new(CANARY);
    let credential = options.credential.as_ref().unwrap_or(&canary);
    let params = protocol::integration_params("conformance", &options.config, Some(credential));
    supervisor.remember_secret(credential);

    checks.push(check(
        "initialize",
        match supervisor.ensure_started().await {
            Ok(()) => Ok(format!(
                "protocol version {} negotiated",
                plugin.manifest.protocol_version
            )),
            Err(e) => Err(e.to_string()),
        },
    ));
    let validate = supervisor
        .call(method::VALIDATE_CONFIG, json!({"config": options.config}))
        .await;
    checks.push(check(
        "validate_config",
        validate.map_err(|e| e.to_string()).and_then(|v| {
            let r: ValidateResult =
                serde_json::from_value(v).map_err(|e| format!("malformed result: {e}"))?;
            if r.valid {
                Ok("the given configuration is valid".into())
            } else {
                Err(format!(
                    "the given configuration was refused: {:?}",
                    r.errors
                ))
            }
        }),
    ));
    let refused = supervisor
        .call(method::VALIDATE_CONFIG, json!({"config": 42}))
        .await;
    checks.push(check(
        "validate_config_refuses",
        match refused {
            Err(CallError::Plugin { code: -32602, .. }) => {
                Ok("a non-object config is an invalid-params error".into())
            }
            Ok(v) => match serde_json::from_value::<ValidateResult>(v) {
                Ok(r) if !r.valid => Ok("a non-object config is refused".into()),
                Ok(_) => Err("a non-object config was accepted".into()),
                Err(e) => Err(format!("malformed result: {e}")),
            },
            Err(e) => Err(format!("expected valid=false or error -32602, got: {e}")),
        },
    ));
    for (name, m) in [
        ("check_health", method::CHECK_HEALTH),
        ("test_connection", method::TEST_CONNECTION),
    ] {
        let outcome = match supervisor.call(m, params.clone()).await {
            Ok(v) => no_secret(&v, credential).and_then(|()| {
                protocol::health_report(v, Some(credential)).map(|r| {
                    format!(
                        "{}{}",
                        r.health.as_str(),
                        r.reason
                            .map(|r| format!(" ({})", r.as_str()))
                            .unwrap_or_default()
                    )
                })
            }),
            Err(e) => Err(e.to_string()),
        };
        checks.push(check(name, outcome));
    }
    let lists = plugin
        .manifest
        .capabilities
        .contains(&Capability::ListResources);
    let listed = supervisor
        .call(method::LIST_RESOURCES, params.clone())
        .await;
    checks.push(check(
        "list_resources",
        match (lists, listed) {
            (true, Ok(v)) => no_secret(&v, credential).and_then(|()| {
                serde_json::from_value::<ListResourcesResult>(v)
                    .map(|r| format!("{} resources", r.resources.len()))
                    .map_err(|e| format!("malformed result: {e}"))
            }),
            (true, Err(CallError::Plugin { code, message, .. }))
                if !(-32768..=-32600).contains(&code) =>
            {
                Ok(format!(
                    "a provider error {code}: {}",
                    protocol::sanitize(&message, Some(credential))
                ))
            }
            (false, Err(CallError::Plugin { code: -32601, .. })) => {
                Ok("not offered: method not found".into())
            }
            (false, other) => Err(format!(
                "the manifest does not list list_resources, so it must answer -32601, got {}",
                describe(&other)
            )),
            (true, Err(e)) => Err(e.to_string()),
        },
    ));
    let unknown = supervisor.call("no_such_method", json!({})).await;
    checks.push(check(
        "unknown_method",
        match unknown {
            Err(CallError::Plugin { code: -32601, .. }) => Ok("-32601 method not found".into()),
            other => Err(format!("expected error -32601, got {}", describe(&other))),
        },
    ));
    let call = || supervisor.call(method::CHECK_HEALTH, params.clone());
    let (a, b, c, d) = tokio::join!(call(), call(), call(), call());
    let failures: Vec<String> = [a, b, c, d]
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    checks.push(check(
        "concurrent_calls",
        if failures.is_empty() {
            Ok("4 calls in flight, each answered under its own id".into())
        } else {
            Err(failures.join("; "))
        },
    ));
    checks.push(check(
        "no_restarts",
        match (supervisor.starts(), supervisor.failed_processes()) {
            (1, 0) => Ok("one process served every call".into()),
            (n, failed) => Err(format!(
                "{n} processes started, {failed} failed (crash, hang or protocol violation)"
            )),
        },
    ));
    drop(supervisor);
    checks.push(check(
        "exits_on_stdin_close",
        exits_on_stdin_close(&plugin, &options.settings).await,
    ));
    checks
}

/// A call's outcome for a report, without the (untrusted, possibly large) result body.
fn describe(outcome: &Result<Value, CallError>) -> String {
    match outcome {
        Ok(_) => "a result".into(),
        Err(e) => protocol::sanitize(&e.to_string(), None),
    }
}

/// Starts the plugin alone, initializes it, closes its stdin and waits for it to exit.
async fn exits_on_stdin_close(
    plugin: &DiscoveredPlugin,
    settings: &PluginSettings,
) -> Result<String, String> {
    let mut child = tokio::process::Command::new(&plugin.executable)
        .current_dir(&plugin.dir)
        .env_clear()
        .env("PATH", settings.path.as_deref().unwrap_or(DEFAULT_PATH))
        .env(ENV_PLUGIN_DIR, &plugin.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": method::INITIALIZE,
        "params": protocol::initialize_params(&plugin.manifest.id)});
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .map_err(|e| format!("writing initialize: {e}"))?;
    let mut line = String::new();
    let mut reader = BufReader::new(stdout).take(1024 * 1024);
    tokio::time::timeout(settings.start_timeout, reader.read_line(&mut line))
        .await
        .map_err(|_| "no answer to initialize".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&line).map_err(|e| format!("not JSON: {e}"))?;
    let version = answer["result"]["protocolVersion"].as_u64().unwrap_or(0);
    if !SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .any(|v| u64::from(*v) == version)
    {
        return Err(format!("initialize answered protocol version {version}"));
    }
    drop(stdin);
    let grace = Duration::from_secs(5);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => Ok(format!("exited ({status})")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("still running {grace:?} after its stdin closed")),
    }
}
