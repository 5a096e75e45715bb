//! `stella-integrations check-config`: validates a configuration as start-up does, without
//! starting anything, and prints it without its secrets.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_stella-integrations");

fn check_config(dir: &std::path::Path, text: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env_remove("STELLA_CONFIG")
        .env_remove("DATABASE_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn a_valid_configuration_prints_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "metrics-token-value\n").unwrap();
    let digest = "ab".repeat(32);
    let out = check_config(
        dir.path(),
        &format!(
            r#"
[database]
url = "postgres://stella_app:db-pass-w0rd@127.0.0.1:1/stella"

[[auth.api_keys]]
id = "ci"
tenant = "acme"
scopes = ["integrations:read"]
sha256 = "{digest}"

[telemetry]
metrics_bearer_token_file = {token_file:?}

[events.nats]
url = "nats://127.0.0.1:4222"
credentials = "authref://vault/nats/hub#token"
"#
        ),
        &[("STELLA__HEALTH__INTERVAL_SECONDS", "60")],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("db-pass-w0rd") && !stderr.contains("db-pass-w0rd"));
    assert!(!stdout.contains("metrics-token-value"));
    assert!(stdout.contains("stella_app:REDACTED@127.0.0.1"), "{stdout}");
    assert!(
        stdout.contains("authref://vault/nats/hub#token"),
        "{stdout}"
    );
    assert!(stdout.contains(&digest), "{stdout}");
    // The environment is applied, and what is printed is itself a valid configuration.
    let printed: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(printed["health"]["interval_seconds"].as_integer(), Some(60));
    // Nothing was started: the database above does not exist, and no SQLite file appeared.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn an_invalid_configuration_exits_non_zero_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    /// The file, the environment, and what the error must name.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "[health]\nintervall_seconds = 5\n",
            &[],
            "intervall_seconds",
        ),
        (
            "",
            &[("STELLA__HEALTH__INTERVALL_SECONDS", "hunter2")],
            "STELLA__HEALTH__INTERVALL_SECONDS",
        ),
        (
            "[events.webhooks]\nconcurrency = 0\n",
            &[],
            "[events.webhooks]",
        ),
        ("[cluster]\nenabled = true\n", &[], "PostgreSQL"),
        (
            "[[auth.api_keys]]\nid = \"k\"\ntenant = \"t\"\nscopes = []\nsha256 = \"zz\"\n",
            &[],
            "api key k",
        ),
        (
            "[telemetry]\nmetrics_bearer_token_file = \"/nonexistent/token\"\n",
            &[],
            "metrics_bearer_token_file",
        ),
        (
            "[events.nats]\nurl = \"nats://user:pw@127.0.0.1:4222\"\n",
            &[],
            "[events.nats]",
        ),
    ];
    for (text, env, expected) in cases {
        let out = check_config(dir.path(), text, env);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{text} was accepted");
        assert!(out.stdout.is_empty(), "{text}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
