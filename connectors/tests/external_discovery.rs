//! Discovery of plugin folders: valid, updated, removed and invalid manifests; clashes; order.

mod external_support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connectors::Registry;
use connectors::external::{
    Discovery, ExternalPlugin, NoCredentials, Owner, PluginSettings, RejectReason, diff, discover,
};
use external_support::{fixture, obj, shipped};
use serde_json::json;

const BUILTINS: &[&str] = &["github_app", "gitlab", "harbor", "inmemory", "oci_registry"];

fn manifest(id: &str, provider_type: &str, version: &str) -> String {
    format!(
        r#"id = "{id}"
provider_type = "{provider_type}"
version = "{version}"
protocol_version = 1
executable = "run.sh"
capabilities = ["health_check"]
[config_schema]
type = "object"
"#
    )
}

fn write(dir: &Path, folder: &str, manifest: &str, exe: Option<(&str, u32)>) -> PathBuf {
    let path = dir.join(folder);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("plugin.toml"), manifest).unwrap();
    if let Some((body, mode)) = exe {
        let exe = path.join("run.sh");
        std::fs::write(&exe, body).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    path
}

const SCRIPT: &str = "#!/bin/sh\nexec cat >/dev/null\n";

fn codes(d: &Discovery) -> Vec<(String, &'static str)> {
    d.rejected
        .iter()
        .map(|r| {
            (
                r.dir.file_name().unwrap().to_string_lossy().into_owned(),
                r.reason.code(),
            )
        })
        .collect()
}

fn known(d: &Discovery) -> BTreeMap<String, String> {
    d.plugins
        .iter()
        .map(|p| (p.manifest.id.clone(), p.fingerprint.clone()))
        .collect()
}

#[test]
fn every_rejection_has_a_typed_reason_in_scan_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exe = Some((SCRIPT, 0o755));
    write(dir, "a-good", &manifest("good", "good_ci", "1"), exe);
    write(dir, "b-not-toml", "id = ", exe);
    let unknown_key = format!("colour = \"red\"\n{}", manifest("c", "c_ci", "1"));
    write(dir, "c-unknown-key", &unknown_key, exe);
    write(dir, "d-dup-type", &manifest("other", "good_ci", "1"), exe);
    write(dir, "e-builtin", &manifest("mygitlab", "gitlab", "1"), exe);
    let protocol_2 =
        manifest("f", "f_ci", "1").replace("protocol_version = 1", "protocol_version = 2");
    write(dir, "f-protocol", &protocol_2, exe);
    write(dir, "g-missing", &manifest("g", "g_ci", "1"), None);
    write(
        dir,
        "h-not-exec",
        &manifest("h", "h_ci", "1"),
        Some((SCRIPT, 0o644)),
    );
    let outside = manifest("i", "i_ci", "1").replace("run.sh", "../a-good/run.sh");
    write(dir, "i-outside", &outside, None);
    write(dir, "j-dup-id", &manifest("good", "j_ci", "1"), exe);
    let no_schema = manifest("k", "k_ci", "1").replace("[config_schema]\ntype = \"object\"\n", "");
    write(dir, "k-no-schema", &no_schema, exe);
    std::fs::create_dir_all(dir.join("l-no-manifest")).unwrap();
    write(dir, ".hidden", &manifest("hidden", "hidden_ci", "1"), exe);

    let found = discover(&[dir.to_path_buf()], BUILTINS);
    let ids: Vec<&str> = found
        .plugins
        .iter()
        .map(|p| p.manifest.id.as_str())
        .collect();
    assert_eq!(ids, ["good"]);
    assert_eq!(
        codes(&found),
        [
            ("b-not-toml".into(), "bad_manifest"),
            ("c-unknown-key".into(), "bad_manifest"),
            ("d-dup-type".into(), "duplicate_type"),
            ("e-builtin".into(), "duplicate_type"),
            ("f-protocol".into(), "incompatible_protocol"),
            ("g-missing".into(), "missing_executable"),
            ("h-not-exec".into(), "not_executable"),
            ("i-outside".into(), "missing_executable"),
            ("j-dup-id".into(), "duplicate_id"),
            ("k-no-schema".into(), "bad_manifest"),
        ]
    );
    let unknown = found.rejected[1].reason.to_string();
    assert!(unknown.contains("colour"), "{unknown}");
    assert!(matches!(
        &found.rejected[2].reason,
        RejectReason::DuplicateType { owner: Owner::Plugin { id, .. }, .. } if id == "good"
    ));
    let builtin = &found.rejected[3];
    assert_eq!(builtin.id.as_deref(), Some("mygitlab"));
    assert_eq!(
        builtin.reason,
        RejectReason::DuplicateType {
            provider_type: "gitlab".into(),
            owner: Owner::Builtin
        }
    );
    assert_eq!(
        found.rejected[4].reason,
        RejectReason::IncompatibleProtocol {
            found: 2,
            supported: vec![1]
        }
    );
    // The same tree scanned again gives the same answer.
    assert_eq!(discover(&[dir.to_path_buf()], BUILTINS), found);
}

#[test]
fn new_updated_removed_and_invalid_manifests_and_idempotent_rediscovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = [tmp.path().to_path_buf()];
    let exe = Some((SCRIPT, 0o755));
    let empty = discover(&dirs, BUILTINS);
    assert!(empty.plugins.is_empty() && empty.rejected.is_empty());

    // New.
    let one = write(tmp.path(), "one", &manifest("one", "one_ci", "1.0"), exe);
    write(tmp.path(), "two", &manifest("two", "two_ci", "1.0"), exe);
    let first = discover(&dirs, BUILTINS);
    let changes = diff(&known(&empty), &first);
    assert_eq!(changes.added, ["one", "two"]);
    assert!(changes.updated.is_empty() && changes.removed.is_empty());

    // Rediscovery is idempotent: same result, nothing changed.
    let again = discover(&dirs, BUILTINS);
    assert_eq!(again, first);
    let changes = diff(&known(&first), &again);
    assert_eq!(changes.unchanged, ["one", "two"]);
    assert!(changes.added.is_empty() && changes.updated.is_empty() && changes.removed.is_empty());

    // Updated: a new version in the manifest, or a new executable.
    std::fs::write(one.join("plugin.toml"), manifest("one", "one_ci", "1.1")).unwrap();
    let bumped = discover(&dirs, BUILTINS);
    assert_eq!(diff(&known(&again), &bumped).updated, ["one"]);
    assert_eq!(bumped.plugin("one").unwrap().manifest.version, "1.1");
    std::fs::write(one.join("run.sh"), "#!/bin/sh\nexec cat\n").unwrap();
    let rebuilt = discover(&dirs, BUILTINS);
    assert_eq!(diff(&known(&bumped), &rebuilt).updated, ["one"]);
    assert_eq!(diff(&known(&bumped), &rebuilt).unchanged, ["two"]);

    // Invalid: a broken manifest is rejected, and the plugin it was counts as removed.
    std::fs::write(one.join("plugin.toml"), "id = 'one'\n").unwrap();
    let broken = discover(&dirs, BUILTINS);
    assert_eq!(diff(&known(&rebuilt), &broken).removed, ["one"]);
    assert_eq!(codes(&broken), [("one".into(), "bad_manifest")]);

    // Removed.
    std::fs::remove_dir_all(tmp.path().join("two")).unwrap();
    let gone = discover(&dirs, BUILTINS);
    assert_eq!(diff(&known(&broken), &gone).removed, ["two"]);
    assert!(gone.plugins.is_empty());
}

#[test]
fn earlier_directories_win_and_missing_directories_are_reported() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let exe = Some((SCRIPT, 0o755));
    write(a.path(), "ci", &manifest("ci-a", "ci", "1"), exe);
    write(b.path(), "ci", &manifest("ci-b", "ci", "1"), exe);
    let missing = a.path().join("nope");
    let ab = discover(
        &[a.path().into(), missing.clone(), b.path().into()],
        BUILTINS,
    );
    assert_eq!(ab.plugins[0].manifest.id, "ci-a");
    assert_eq!(ab.rejected[0].id.as_deref(), Some("ci-b"));
    assert_eq!(ab.rejected[0].reason.code(), "duplicate_type");
    assert_eq!(ab.dir_errors.len(), 1);
    assert_eq!(ab.dir_errors[0].0, missing);
    let ba = discover(&[b.path().into(), a.path().into()], BUILTINS);
    assert_eq!(ba.plugins[0].manifest.id, "ci-b");
    // A directory listed twice is scanned once.
    let twice = discover(&[a.path().into(), a.path().into()], BUILTINS);
    assert_eq!((twice.plugins.len(), twice.rejected.len()), (1, 0));
}

#[test]
fn shipped_plugin_and_fixtures_are_valid() {
    let found = discover(
        &[
            fixture("healthy").parent().unwrap().to_path_buf(),
            shipped("jenkins").parent().unwrap().to_path_buf(),
        ],
        BUILTINS,
    );
    assert!(found.rejected.is_empty(), "{:?}", found.rejected);
    assert_eq!(found.plugins.len(), 10);
    let jenkins = found.plugin("jenkins").unwrap();
    assert_eq!(jenkins.manifest.provider_type, "jenkins");
    assert_eq!(
        jenkins.manifest.config_schema["required"],
        json!(["baseUrl"])
    );
}

#[test]
fn a_discovered_plugin_is_registered_replaced_and_removed_at_run_time() {
    let found = discover(
        &[shipped("jenkins").parent().unwrap().to_path_buf()],
        BUILTINS,
    );
    let make = || {
        Arc::new(
            ExternalPlugin::new(found.plugins[0].clone(), PluginSettings::default())
                .with_credentials(Arc::new(NoCredentials)),
        )
    };
    let mut registry = Registry::with_builtins();
    let plugin = make();
    assert!(registry.insert(plugin.clone()).is_none());
    let factory = registry.get("jenkins").unwrap();
    assert_eq!(factory.display_name(), "Jenkins");
    assert_eq!(factory.capabilities().len(), 2);
    // Local validation follows the manifest's schema, without starting the process.
    let good = obj(json!({"baseUrl": "https://ci.example.com"}));
    assert!(factory.validate_config(&good).is_ok());
    let missing = factory.validate_config(&obj(json!({}))).unwrap_err();
    assert_eq!(missing.field(), "config.baseUrl");
    let raw = obj(json!({"baseUrl": "https://x", "token": "raw"}));
    assert_eq!(
        factory.validate_config(&raw).unwrap_err().field(),
        "config.token"
    );
    assert_eq!(plugin.supervisor().starts(), 0);
    // Rediscovery replaces the factory of the same type; removal takes the type away.
    assert!(registry.insert(make()).is_some());
    assert!(registry.remove("jenkins").is_some());
    assert!(registry.get("jenkins").is_none());
}
