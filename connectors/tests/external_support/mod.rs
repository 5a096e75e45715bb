//! Helpers shared by the external plugin tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connectors::IntegrationSpec;
use connectors::external::{
    DiscoveredPlugin, ExternalPlugin, NoCredentials, PluginSettings, discovery,
};
use serde_json::{Map, Value};

/// `connectors/tests/fixtures/plugins/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plugins")
        .join(name)
}

/// The repository's `plugins/<name>`.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name)
}

/// Short limits, so fault tests run in seconds.
pub fn fast_settings() -> PluginSettings {
    PluginSettings {
        call_timeout: Duration::from_secs(2),
        start_timeout: Duration::from_secs(5),
        max_message_bytes: 64 * 1024,
        max_concurrent_calls: 8,
        // Long enough that "a call right after a failure is refused" holds on a loaded machine.
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(2),
        max_stderr_line: 256,
        path: None,
    }
}

pub fn load(dir: &Path) -> DiscoveredPlugin {
    discovery::load(&dir.canonicalize().unwrap())
        .unwrap_or_else(|e| panic!("{}: {}", dir.display(), e.1))
}

pub fn plugin(dir: &Path, settings: PluginSettings) -> ExternalPlugin {
    ExternalPlugin::new(load(dir), settings).with_credentials(Arc::new(NoCredentials))
}

pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

pub fn spec(id: &str, provider_type: &str, config: Value) -> IntegrationSpec {
    IntegrationSpec {
        id: id.into(),
        tenant: "acme".into(),
        provider_type: provider_type.into(),
        config: obj(config),
        auth_ref: None,
    }
}

/// True once the process is gone or a zombie (killed, waiting to be reaped).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Polls `cond` every 20 ms for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
