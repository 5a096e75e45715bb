//! The supervisor of one plugin's process: lazy start, the `initialize` handshake, per-call
//! timeouts, the concurrency limit, and restarts with exponential backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::discovery::DiscoveredPlugin;
use super::process::{Process, RecentSecrets};
use super::protocol::Credential;
use super::protocol::{self, InitializeResult, method};
use super::{CallError, PluginSettings};

/// Environment variable naming the plugin folder in the child's (otherwise empty) environment.
pub const ENV_PLUGIN_DIR: &str = "STELLA_PLUGIN_DIR";

/// The PATH given to plugins when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Default)]
struct Slot {
    process: Option<Arc<Process>>,
    /// No start before this instant (the backoff after a failure).
    not_before: Option<Instant>,
    /// Why the last process failed, for calls refused during the backoff.
    last_failure: Option<String>,
}

/// Keeps at most one process of a plugin running, shared by all its integrations.
pub struct Supervisor {
    plugin: DiscoveredPlugin,
    id: Arc<str>,
    settings: PluginSettings,
    slot: Mutex<Slot>,
    /// Credentials recently sent, scrubbed from the plugin's stderr.
    secrets: Arc<RecentSecrets>,
    permits: Semaphore,
    /// Failures since the last successful call; drives the backoff.
    failures: AtomicU32,
    /// Processes started so far (for tests and metrics).
    starts: AtomicU32,
    /// Processes that failed so far (crash, timeout, protocol violation, failed start).
    failed: AtomicU32,
    /// Set by [`Supervisor::retire`]: no process starts any more.
    retired: AtomicBool,
}

impl Supervisor {
    pub fn new(plugin: DiscoveredPlugin, settings: PluginSettings) -> Self {
        Self {
            id: Arc::from(plugin.manifest.id.as_str()),
            permits: Semaphore::new(settings.max_concurrent_calls.max(1)),
            plugin,
            settings,
            slot: Mutex::new(Slot::default()),
            secrets: Arc::default(),
            failures: AtomicU32::new(0),
            starts: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// How many processes were started so far.
    pub fn starts(&self) -> u32 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Notes a credential about to be sent, so the plugin's stderr is scrubbed of it.
    pub fn remember_secret(&self, credential: &Credential) {
        self.secrets.remember(credential);
    }

    /// Process failures since the last successful call.
    pub fn failures_in_a_row(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How many process failures were recorded so far (crash, timeout, protocol violation,
    /// failed start). A crash is recorded when the next call finds the process dead.
    pub fn failed_processes(&self) -> u32 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Starts the process now if none runs (and the backoff allows), without a call.
    ///
    /// # Errors
    /// [`CallError::Failed`] when it cannot be started or does not complete `initialize`.
    pub async fn ensure_started(&self) -> Result<(), CallError> {
        self.ensure().await.map(|_| ())
    }

    /// The pid of the running process, if one runs.
    pub async fn pid(&self) -> Option<u32> {
        let slot = self.slot.lock().await;
        slot.process
            .as_ref()
            .filter(|p| p.death().is_none())
            .and_then(|p| p.pid())
    }

    /// The delay before the `n`th restart in a row (n ≥ 1): `min · 2^(n-1)`, at most `max`.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(30);
        self.settings
            .backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.settings.backoff_max)
    }

    fn record_failure(&self, slot: &mut Slot, reason: String, at: Instant) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let delay = self.backoff(n);
        tracing::warn!(
            message = "Plugin process failed.",
            plugin = %self.id,
            reason = %reason,
            failures = n,
            restart_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        );
        slot.not_before = Some(at + delay);
        slot.last_failure = Some(reason);
    }

    /// The running process, starting one if none runs and the backoff allows.
    /// Stops the process for good (the plugin was removed or replaced): calls in flight and
    /// every later call fail with `connector_failed`, and no process starts again. Connectors
    /// built from this plugin must be rebuilt from the new registration.
    pub async fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        let mut slot = self.slot.lock().await;
        if let Some(process) = slot.process.take() {
            process.kill(format!("plugin {} was removed or replaced", self.id));
        }
    }

    async fn ensure(&self) -> Result<Arc<Process>, CallError> {
        let mut slot = self.slot.lock().await;
        if self.retired.load(Ordering::Relaxed) {
            return Err(CallError::Failed(format!(
                "plugin {} was removed or replaced; its integrations must be rebuilt",
                self.id
            )));
        }
        if let Some(process) = &slot.process {
            match process.death() {
                None => return Ok(process.clone()),
                Some((reason, at)) => {
                    slot.process = None;
                    self.record_failure(&mut slot, reason, at);
                }
            }
        }
        if let Some(not_before) = slot.not_before {
            let now = Instant::now();
            if now < not_before {
                return Err(CallError::Failed(format!(
                    "plugin {} is waiting {:.1}s before restarting after a failure: {}",
                    self.id,
                    (not_before - now).as_secs_f64(),
                    slot.last_failure.as_deref().unwrap_or("unknown"),
                )));
            }
        }
        let reason = match tokio::time::timeout(self.settings.start_timeout, self.start()).await {
            Ok(Ok(process)) => {
                slot.process = Some(process.clone());
                return Ok(process);
            }
            Ok(Err(reason)) => reason,
            Err(_) => format!(
                "no answer to initialize within {:?}",
                self.settings.start_timeout
            ),
        };
        let reason = format!("plugin {} failed to start: {reason}", self.id);
        self.record_failure(&mut slot, reason.clone(), Instant::now());
        Err(CallError::Failed(reason))
    }

    async fn start(&self) -> Result<Arc<Process>, String> {
        let path = self
            .settings
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_PATH.to_owned());
        let mut cmd = tokio::process::Command::new(&self.plugin.executable);
        cmd.current_dir(&self.plugin.dir)
            .env_clear()
            .env("PATH", path)
            .env(ENV_PLUGIN_DIR, &self.plugin.dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not run {}: {e}", self.plugin.executable.display()))?;
        self.starts.fetch_add(1, Ordering::Relaxed);
        let process = Arc::new(Process::start(
            self.id.clone(),
            child,
            self.settings.max_message_bytes,
            self.settings.max_stderr_line,
            self.secrets.clone(),
        ));
        let init = process
            .request(method::INITIALIZE, protocol::initialize_params(&self.id))
            .await
            .map_err(|e| e.to_string())?;
        let init: InitializeResult = serde_json::from_value(init)
            .map_err(|e| format!("malformed initialize result: {e}"))?;
        let wanted = self.plugin.manifest.protocol_version;
        if init.protocol_version != wanted
            || !protocol::SUPPORTED_PROTOCOL_VERSIONS.contains(&init.protocol_version)
        {
            let reason = format!(
                "plugin answered initialize with protocol version {}, but its manifest declares {wanted} and this daemon speaks {:?}",
                init.protocol_version,
                protocol::SUPPORTED_PROTOCOL_VERSIONS
            );
            process.kill(reason.clone());
            return Err(reason);
        }
        tracing::info!(message = "Plugin process started.", plugin = %self.id, pid = process.pid());
        Ok(process)
    }

    /// Calls `method` with `params`, starting the process if needed.
    ///
    /// Waiting for a free call slot and the answer are each bounded by the call timeout, a
    /// (re)start by the start timeout. A call that times out kills the process (its other
    /// pending calls fail too); the next call restarts it after the backoff.
    ///
    /// The call runs in its own task, so its timeout fires even when the caller stops
    /// waiting first (the health engine's own check timeout): a hung plugin is always killed.
    ///
    /// # Errors
    /// [`CallError`]; never panics on anything the plugin does.
    /// Each call has a span, `plugin_call`, at the level of its caller's: INFO under a traced
    /// caller (an API request, an on-demand check), DEBUG under a scheduled check (whose own
    /// span is DEBUG), so that a large fleet's routine is traced only when asked for.
    pub async fn call(self: &Arc<Self>, method: &str, params: Value) -> Result<Value, CallError> {
        let this = self.clone();
        let span = if tracing::Span::current().is_disabled() {
            tracing::debug_span!(
                "plugin_call",
                plugin = %self.id,
                rpc.system = "jsonrpc",
                rpc.method = method,
                outcome = tracing::field::Empty,
            )
        } else {
            tracing::info_span!(
                "plugin_call",
                plugin = %self.id,
                rpc.system = "jsonrpc",
                rpc.method = method,
                outcome = tracing::field::Empty,
            )
        };
        let method = method.to_owned();
        let traced = span.clone();
        let result =
            tokio::spawn(async move { this.call_here(&method, params).await }.instrument(span))
                .await
                .unwrap_or_else(|e| Err(CallError::Failed(format!("the call task failed: {e}"))));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CallError::Plugin { .. }) => "plugin_error",
            Err(_) => "failed",
        };
        traced.record("outcome", outcome);
        result
    }

    async fn call_here(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let timeout = self.settings.call_timeout;
        let _permit = match tokio::time::timeout(timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(CallError::Failed(format!(
                    "plugin {} has {} calls in flight; no slot freed within {timeout:?}",
                    self.id, self.settings.max_concurrent_calls
                )));
            }
        };
        let process = self.ensure().await?;
        match tokio::time::timeout(timeout, process.request(method, params)).await {
            Ok(Ok(value)) => {
                self.failures.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e @ CallError::Plugin { .. })) => {
                self.failures.store(0, Ordering::Relaxed);
                Err(e)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let reason = format!(
                    "plugin {} did not answer {method} within {timeout:?}; its process was killed and will be restarted",
                    self.id
                );
                process.kill(reason.clone());
                Err(CallError::Failed(reason))
            }
        }
    }
}
