//! What a plugin's stderr becomes in the daemon's logs: one event per line with the plugin id,
//! credentials sent to it scrubbed, long lines cut, and the rate capped.

mod external_support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::Reason;
use connectors::external::Credential;
use connectors::external::protocol::method;
use external_support::{eventually, fast_settings, fixture, obj, plugin};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A plugin that, on each health call, writes `lines` stderr lines of `width` characters,
/// waits `pause_ms`, writes one more line, then answers healthy.
fn noisy_plugin(dir: &Path, lines: usize, width: usize, pause_ms: u64) -> std::path::PathBuf {
    let folder = dir.join("noisy");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.toml"),
        "id = \"noisy\"\nprovider_type = \"noisy\"\nversion = \"1\"\nprotocol_version = 1\n\
         executable = \"noisy.py\"\n[config_schema]\ntype = \"object\"\n",
    )
    .unwrap();
    let script = format!(
        r#"#!/usr/bin/env python3
import json, sys, time
for line in sys.stdin:
    request = json.loads(line)
    if request["method"] != "initialize":
        for n in range({lines}):
            sys.stderr.write("noise-%d " % n + "x" * {width} + "\n")
        sys.stderr.flush()
        time.sleep({pause_ms} / 1000)
        sys.stderr.write("after the pause\n")
        sys.stderr.flush()
    result = {{"protocolVersion": 1}} if request["method"] == "initialize" else {{"health": "healthy"}}
    sys.stdout.write(json.dumps({{"jsonrpc": "2.0", "id": request["id"], "result": result}}) + "\n")
    sys.stdout.flush()
"#
    );
    let exe = folder.join("noisy.py");
    std::fs::write(&exe, script).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    folder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_stderr_is_logged_with_the_plugin_id_scrubbed_cut_and_rate_capped() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();

    // A plugin that logs its credential: the daemon's log shows [REDACTED].
    let secret = "hunter2-very-secret-token";
    let echo = plugin(&fixture("echo-secret"), fast_settings());
    let report = echo
        .health_call(
            method::CHECK_HEALTH,
            "e",
            &obj(json!({})),
            Some(&Credential::new(secret)),
        )
        .await;
    assert_eq!(report.reason, Some(Reason::AuthFailed));
    let logged = eventually(Duration::from_secs(5), || {
        capture.text().contains("echo-secret: got [REDACTED]")
    })
    .await;
    assert!(logged, "{}", capture.text());
    let text = capture.text();
    let line = text
        .lines()
        .find(|l| l.contains("echo-secret: got"))
        .unwrap();
    assert!(line.contains("plugin=fixture-echo-secret"), "{line}");
    assert!(!text.contains(secret), "{text}");

    // 500 lines of 1000 characters at once, then one more after a pause: long lines are cut
    // to max_stderr_line (256), at most 100 lines a second are logged, the rest counted.
    let dir = tempfile::tempdir().unwrap();
    let noisy = plugin(&noisy_plugin(dir.path(), 500, 1000, 1200), fast_settings());
    let report = noisy
        .health_call(method::CHECK_HEALTH, "n", &obj(json!({})), None)
        .await;
    assert_eq!(report.health, connectors::Health::Healthy, "{report:?}");
    let reported = eventually(Duration::from_secs(5), || {
        capture.text().contains("after the pause")
    })
    .await;
    assert!(reported, "the line after the pause was not logged");
    let text = capture.text();
    let noise: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("plugin=noisy") && l.contains("noise-"))
        .collect();
    // The burst may straddle one window boundary: at most two windows' worth is logged.
    assert!(
        (1..=200).contains(&noise.len()),
        "{} noise lines logged",
        noise.len()
    );
    assert!(
        noise
            .iter()
            .all(|l| l.len() < 600 && l.contains("truncated=true"))
    );
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Plugin stderr lines dropped") && l.contains("plugin=noisy"))
        .collect();
    assert!(!warnings.is_empty(), "no dropped-lines warning");
    let dropped: usize = warnings
        .iter()
        .map(|l| {
            let n = l.split("dropped=").nth(1).unwrap_or("0");
            n.split_whitespace()
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(noise.len() + dropped, 500, "{warnings:?}");
}
