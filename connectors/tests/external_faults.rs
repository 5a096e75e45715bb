//! Deliberately broken plugins (`tests/fixtures/plugins/`): each fails only its own calls, with
//! `connector_failed` and a message saying what happened, within its timeout, while a healthy
//! plugin called at the same time keeps answering.

mod external_support;

use std::sync::Arc;
use std::time::Duration;

use connectors::external::protocol::method;
use connectors::external::{Credential, ExternalPlugin, PluginSettings};
use connectors::{ConnectorEnv, ConnectorFactory, Health, HealthReport, Reason};
use external_support::{eventually, fast_settings, fixture, obj, plugin, process_gone, spec};
use serde_json::json;
use tokio::time::Instant;

async fn check(plugin: &ExternalPlugin, integration: &str) -> HealthReport {
    plugin
        .health_call(method::CHECK_HEALTH, integration, &obj(json!({})), None)
        .await
}

fn assert_failed(report: &HealthReport, expected: &str) {
    assert_eq!(report.health, Health::Unhealthy, "{report:?}");
    assert_eq!(report.reason, Some(Reason::ConnectorFailed), "{report:?}");
    let message = report.message.as_deref().unwrap_or_default();
    assert!(message.contains(expected), "{message:?} lacks {expected:?}");
}

/// Each broken plugin, the message its first call fails with, and the longest it may take.
const FAULTS: &[(&str, &str, u64)] = &[
    (
        "crash-on-start",
        "failed to start: plugin process exited (exit status: 3)",
        3,
    ),
    (
        "crash-mid-call",
        "plugin process exited (exit status: 7)",
        3,
    ),
    ("hang", "did not answer check_health within 2s", 4),
    ("invalid-json", "plugin wrote invalid JSON on stdout", 3),
    (
        "oversized",
        "plugin wrote a message larger than the limit of 65536 bytes",
        3,
    ),
    (
        "wrong-protocol",
        "plugin answered initialize with protocol version 2, but its manifest declares 1",
        3,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_broken_plugin_fails_only_its_own_calls_while_a_healthy_one_answers() {
    let healthy = plugin(&fixture("healthy"), fast_settings());
    let healthy_config = obj(json!({"delayMs": 50}));
    // A healthy plugin answers a steady stream of checks the whole time.
    let healthy_loop = async {
        let started = Instant::now();
        let mut answered = 0;
        while started.elapsed() < Duration::from_secs(4) && answered < 200 {
            let report = healthy
                .health_call(method::CHECK_HEALTH, "steady", &healthy_config, None)
                .await;
            assert_eq!(report.health, Health::Healthy, "{report:?}");
            answered += 1;
        }
        answered
    };
    let faulty = async {
        let mut set = tokio::task::JoinSet::new();
        for (name, expected, limit) in FAULTS {
            set.spawn(async move {
                let broken = plugin(&fixture(name), fast_settings());
                let started = Instant::now();
                let first = check(&broken, name).await;
                let took = started.elapsed();
                assert_failed(&first, expected);
                assert!(took < Duration::from_secs(*limit), "{name} took {took:?}");
                // Calls during the restart backoff fail at once, naming the cause.
                let started = Instant::now();
                let second = check(&broken, name).await;
                assert!(started.elapsed() < Duration::from_millis(500), "{name}");
                assert_failed(&second, "before restarting after a failure");
                assert_failed(&second, expected);
                assert_eq!(broken.supervisor().starts(), 1, "{name}");
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
    };
    let (answered, ()) = tokio::join!(healthy_loop, faulty);
    assert!(
        answered >= 10,
        "the healthy plugin answered only {answered} checks"
    );
    assert_eq!(healthy.supervisor().starts(), 1);
    assert_eq!(healthy.supervisor().failed_processes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_plugin_is_restarted_with_exponential_backoff() {
    let settings = PluginSettings {
        backoff_min: Duration::from_millis(500),
        backoff_max: Duration::from_secs(4),
        ..fast_settings()
    };
    let broken = plugin(&fixture("crash-mid-call"), settings);
    assert_failed(&check(&broken, "a").await, "exit status: 7");
    assert_eq!(broken.supervisor().backoff(1), Duration::from_millis(500));
    assert_eq!(broken.supervisor().backoff(2), Duration::from_secs(1));
    assert_eq!(broken.supervisor().backoff(9), Duration::from_secs(4));
    // Within the first backoff: refused without a start.
    assert_failed(&check(&broken, "b").await, "waiting");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // After it: restarted, and it crashes again.
    assert_failed(&check(&broken, "c").await, "exit status: 7");
    assert_eq!(broken.supervisor().starts(), 2);
    // The second failure in a row waits twice as long: refused after 300 ms...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_failed(&check(&broken, "d").await, "waiting");
    assert_eq!(broken.supervisor().starts(), 2);
    // ...restarted after 1.1 s.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let e = check(&broken, "e").await;
    assert_failed(&e, "exit status: 7");
    assert_eq!(broken.supervisor().starts(), 3);
    // The report tells the health engine how often in a row the process failed.
    assert_eq!(e.plugin_failures, Some(2));
    // The third failure is counted when the next call finds the process dead.
    assert_eq!(broken.supervisor().failed_processes(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plugin_is_killed_on_timeout_and_restarted() {
    let settings = PluginSettings {
        call_timeout: Duration::from_millis(500),
        ..fast_settings()
    };
    let hang = plugin(&fixture("hang"), settings);
    hang.supervisor().ensure_started().await.unwrap();
    let pid = hang.supervisor().pid().await.unwrap();
    let started = Instant::now();
    assert_failed(
        &check(&hang, "a").await,
        "did not answer check_health within 500ms",
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let gone = eventually(Duration::from_secs(5), || process_gone(pid)).await;
    assert!(gone, "pid {pid} survived");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_failed(&check(&hang, "b").await, "did not answer");
    assert_eq!(hang.supervisor().starts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fails_the_other_calls_in_flight_on_that_process_too() {
    let settings = PluginSettings {
        call_timeout: Duration::from_millis(500),
        ..fast_settings()
    };
    let healthy = plugin(&fixture("healthy"), settings);
    let slow = obj(json!({"delayMs": 5000}));
    let quick = obj(json!({"delayMs": 0}));
    let (a, b) = tokio::join!(
        healthy.health_call(method::CHECK_HEALTH, "slow", &slow, None),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            healthy
                .health_call(method::CHECK_HEALTH, "slow-too", &slow, None)
                .await
        }
    );
    assert_failed(&a, "did not answer check_health within 500ms");
    assert_failed(&b, "did not answer check_health within 500ms");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = healthy
        .health_call(method::CHECK_HEALTH, "quick", &quick, None)
        .await;
    assert_eq!(report.health, Health::Healthy, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_matched_to_calls_by_id_and_calls_are_limited() {
    let settings = PluginSettings {
        max_concurrent_calls: 2,
        ..fast_settings()
    };
    let healthy = plugin(&fixture("healthy"), settings);
    let slow = obj(json!({"delayMs": 300}));
    let quick = obj(json!({"delayMs": 0}));
    // The quick answer overtakes the slow one; each call gets its own.
    let (a, b) = tokio::join!(
        healthy.health_call(method::CHECK_HEALTH, "slow-one", &slow, None),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            healthy
                .health_call(method::CHECK_HEALTH, "quick-one", &quick, None)
                .await
        }
    );
    assert_eq!(a.message.as_deref(), Some("slow-one credential=False"));
    assert_eq!(b.message.as_deref(), Some("quick-one credential=False"));
    // Four 300 ms calls through two slots take two rounds.
    let started = Instant::now();
    let call = |id| healthy.health_call(method::CHECK_HEALTH, id, &slow, None);
    let all = tokio::join!(call("1"), call("2"), call("3"), call("4"));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    for report in [all.0, all.1, all.2, all.3] {
        assert_eq!(report.health, Health::Healthy);
    }
    assert_eq!(healthy.supervisor().starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_gets_a_minimal_environment_and_no_credential_outside_stdin() {
    let healthy = plugin(&fixture("healthy"), fast_settings());
    let secret = "s3cret-token-value";
    let credential = Credential::new(secret);
    let report = healthy
        .health_call(
            method::CHECK_HEALTH,
            "env",
            &obj(json!({})),
            Some(&credential),
        )
        .await;
    assert_eq!(report.message.as_deref(), Some("env credential=True"));
    let pid = healthy.supervisor().pid().await.unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut vars: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    vars.sort();
    let dir = fixture("healthy").canonicalize().unwrap();
    assert_eq!(vars.len(), 2, "{vars:?}");
    assert!(vars[0].starts_with("PATH="), "{vars:?}");
    assert_eq!(vars[1], format!("STELLA_PLUGIN_DIR={}", dir.display()));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(secret));
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), dir);
    assert_eq!(format!("{credential:?}"), "[REDACTED]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_echoing_the_credential_has_it_redacted() {
    let echo = plugin(&fixture("echo-secret"), fast_settings());
    let credential = Credential::new("hunter2-hunter2");
    let report = echo
        .health_call(
            method::CHECK_HEALTH,
            "e",
            &obj(json!({})),
            Some(&credential),
        )
        .await;
    assert_eq!(report.reason, Some(Reason::AuthFailed));
    assert_eq!(report.message.as_deref(), Some("token [REDACTED] refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_plugin_kills_its_process_and_connectors_share_one() {
    let healthy = Arc::new(plugin(&fixture("healthy"), fast_settings()));
    let env = ConnectorEnv::default();
    let one = healthy
        .build(&spec("one", "fixture_healthy", json!({})), &env)
        .unwrap();
    let two = healthy
        .build(
            &spec("two", "fixture_healthy", json!({"delayMs": 10})),
            &env,
        )
        .unwrap();
    let first = one.check_health().await;
    assert_eq!(first.message.as_deref(), Some("one credential=False"));
    let second = two.test_connection().await;
    assert_eq!(second.message.as_deref(), Some("two credential=False"));
    assert_eq!(healthy.supervisor().starts(), 1);
    let pid = healthy.supervisor().pid().await.unwrap();
    assert!(!process_gone(pid));
    drop((one, two, healthy));
    let gone = eventually(Duration::from_secs(5), || process_gone(pid)).await;
    assert!(gone, "pid {pid} survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_asks_the_plugin_after_the_local_checks() {
    let healthy = plugin(&fixture("healthy"), fast_settings());
    let good = obj(json!({"delayMs": 5}));
    assert!(healthy.validate_config_async(&good).await.is_ok());
    let refused = healthy
        .validate_config_async(&obj(json!({"delayMs": "slow"})))
        .await
        .unwrap_err();
    assert_eq!(refused.field(), "config.delayMs");
    // A raw secret is refused locally, before any process starts.
    let fresh = plugin(&fixture("hang"), fast_settings());
    let raw = fresh
        .validate_config_async(&obj(json!({"password": "x"})))
        .await
        .unwrap_err();
    assert_eq!(raw.field(), "config.password");
    assert_eq!(fresh.supervisor().starts(), 0);
    // A plugin that cannot answer makes validation fail, with a reason.
    let broken = plugin(&fixture("crash-on-start"), fast_settings());
    let e = broken
        .validate_config_async(&obj(json!({})))
        .await
        .unwrap_err();
    assert!(e.message().contains("could not validate"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_plugin_stops_its_process_and_refuses_later_calls() {
    let healthy = plugin(&fixture("healthy"), fast_settings());
    let slow = obj(json!({"delayMs": 3000}));
    let connector = healthy
        .build(
            &spec("kept", "fixture_healthy", json!({})),
            &ConnectorEnv::default(),
        )
        .unwrap();
    assert_eq!(connector.check_health().await.health, Health::Healthy);
    let pid = healthy.supervisor().pid().await.unwrap();
    let (in_flight, ()) = tokio::join!(
        healthy.health_call(method::CHECK_HEALTH, "slow", &slow, None),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            healthy.retire().await;
        }
    );
    assert_failed(&in_flight, "was removed or replaced");
    let gone = eventually(Duration::from_secs(5), || process_gone(pid)).await;
    assert!(gone, "pid {pid} survived");
    // A connector built before keeps failing clearly instead of restarting the process.
    assert_failed(&connector.check_health().await, "must be rebuilt");
    assert_eq!(healthy.supervisor().starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_flooding_stderr_keeps_answering() {
    // 2.4 MB of stderr per call: far more than a pipe holds, so this hangs unless the daemon
    // drains stderr (cutting long lines, capping the logged rate) while it serves calls.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("noisy");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.toml"),
        "id = \"noisy\"\nprovider_type = \"noisy\"\nversion = \"1\"\nprotocol_version = 1\nexecutable = \"noisy.py\"\n[config_schema]\ntype = \"object\"\n",
    )
    .unwrap();
    let script = r#"#!/usr/bin/env python3
import json, sys
for line in sys.stdin:
    request = json.loads(line)
    for _ in range(2000):
        sys.stderr.write("noise " * 200 + "\n")
    sys.stderr.flush()
    result = {"protocolVersion": 1} if request["method"] == "initialize" else {"health": "healthy"}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}) + "\n")
    sys.stdout.flush()
"#;
    let exe = folder.join("noisy.py");
    std::fs::write(&exe, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let noisy = plugin(&folder, fast_settings());
    for n in 0..3 {
        let report = check(&noisy, &format!("n{n}")).await;
        assert_eq!(report.health, Health::Healthy, "{report:?}");
    }
    assert_eq!(noisy.supervisor().starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plugin_is_killed_even_when_the_caller_stops_waiting_first() {
    // The health engine wraps each check in its own timeout; when that one is shorter, the
    // plugin's call timeout must still fire and kill the hung process.
    let settings = PluginSettings {
        call_timeout: Duration::from_millis(500),
        ..fast_settings()
    };
    let hang = plugin(&fixture("hang"), settings);
    hang.supervisor().ensure_started().await.unwrap();
    let pid = hang.supervisor().pid().await.unwrap();
    let impatient = tokio::time::timeout(Duration::from_millis(100), check(&hang, "a")).await;
    assert!(impatient.is_err());
    let gone = eventually(Duration::from_secs(5), || process_gone(pid)).await;
    assert!(gone, "pid {pid} survived the call timeout");
    assert_eq!(hang.supervisor().pid().await, None);
}
