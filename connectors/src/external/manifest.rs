//! The plugin manifest, `<dir>/<plugin>/plugin.toml`.
//!
//! ```toml
//! id = "jenkins"                   # stable plugin id: [a-z0-9][a-z0-9_-]*, at most 64
//! provider_type = "jenkins"        # the integration type it provides: [a-z][a-z0-9_]*, at most 64
//! display_name = "Jenkins"
//! version = "1.0.0"
//! protocol_version = 1
//! executable = "jenkins_plugin.py" # relative to the plugin folder
//! capabilities = ["health_check", "list_resources"]
//! config_schema_file = "config.schema.json"   # or an inline [config_schema] table
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::ConfigError;
use crate::provider::Capability;

/// Largest accepted `plugin.toml`.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Largest accepted config schema file.
pub const MAX_SCHEMA_BYTES: u64 = 256 * 1024;
/// Longest id, provider type, display name or version.
pub const MAX_NAME_LEN: usize = 64;
/// The manifest's file name inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// `plugin.toml` as written by the plugin author. Unknown keys are refused, so a typo is
/// reported instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// Stable plugin id, the key of `plugin_metadata`.
    pub id: String,
    /// The integration type this plugin provides (`integrations.type`).
    pub provider_type: String,
    /// Human-readable name for forms and listings; defaults to the id.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The plugin's own version, shown to operators; a change is an update.
    pub version: String,
    /// The protocol version the plugin speaks; must be one the daemon supports.
    pub protocol_version: u32,
    /// The program to start, relative to the plugin folder.
    pub executable: String,
    /// What the plugin can do; `health_check` is required.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    /// The configuration's JSON Schema, inline.
    #[serde(default)]
    pub config_schema: Option<toml::Table>,
    /// The configuration's JSON Schema, as a JSON file relative to the plugin folder.
    #[serde(default)]
    pub config_schema_file: Option<String>,
}

fn default_capabilities() -> Vec<String> {
    vec![Capability::HealthCheck.as_str().to_owned()]
}

/// A checked manifest: names validated, capabilities typed, schema loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginManifest {
    pub id: String,
    pub provider_type: String,
    pub display_name: String,
    pub version: String,
    pub protocol_version: u32,
    /// As written: relative to the plugin folder.
    pub executable: String,
    /// Sorted, without duplicates.
    pub capabilities: Vec<Capability>,
    /// The configuration's JSON Schema (an object schema).
    pub config_schema: Value,
}

fn check_name(
    field: &str,
    value: &str,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
) -> Result<(), String> {
    let mut chars = value.chars();
    let ok = value.len() <= MAX_NAME_LEN && chars.next().is_some_and(first) && chars.all(rest);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: {value:?} is not a valid {field} (see docs/plugins.md)"
        ))
    }
}

/// Parses a capability's wire name.
pub fn parse_capability(name: &str) -> Option<Capability> {
    [
        Capability::HealthCheck,
        Capability::ListResources,
        Capability::SetupWebhook,
    ]
    .into_iter()
    .find(|c| c.as_str() == name)
}

impl RawManifest {
    /// Parses `plugin.toml` text.
    ///
    /// # Errors
    /// The TOML or serde message (naming the key).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())
    }

    /// Checks names and capabilities, and takes the schema (`load_schema_file` reads a
    /// `config_schema_file`, given the relative path).
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn check(
        self,
        load_schema_file: impl FnOnce(&str) -> Result<Value, String>,
    ) -> Result<PluginManifest, String> {
        check_name(
            "id",
            &self.id,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
        )?;
        check_name(
            "provider_type",
            &self.provider_type,
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        )?;
        if self.version.is_empty()
            || self.version.len() > MAX_NAME_LEN
            || self.version.chars().any(char::is_control)
        {
            return Err("version: must be 1 to 64 printable characters".into());
        }
        let display_name = self.display_name.unwrap_or_else(|| self.id.clone());
        if display_name.is_empty()
            || display_name.len() > 100
            || display_name.chars().any(char::is_control)
        {
            return Err("display_name: must be 1 to 100 printable characters".into());
        }
        if self.executable.is_empty() {
            return Err("executable: must not be empty".into());
        }
        let mut capabilities = Vec::new();
        for name in &self.capabilities {
            match parse_capability(name) {
                Some(Capability::SetupWebhook) => {
                    return Err(
                        "capabilities: setup_webhook is not offered to external plugins".into(),
                    );
                }
                Some(c) => capabilities.push(c),
                None => return Err(format!("capabilities: unknown capability {name:?}")),
            }
        }
        capabilities.sort();
        capabilities.dedup();
        if !capabilities.contains(&Capability::HealthCheck) {
            return Err("capabilities: health_check is required".into());
        }
        let config_schema = match (self.config_schema, self.config_schema_file) {
            (Some(table), None) => {
                serde_json::to_value(table).map_err(|e| format!("config_schema: {e}"))?
            }
            (None, Some(file)) => load_schema_file(&file)?,
            (None, None) => return Err("config_schema or config_schema_file is required".into()),
            (Some(_), Some(_)) => {
                return Err("config_schema and config_schema_file are exclusive".into());
            }
        };
        check_schema(&config_schema).map_err(|e| format!("config_schema: {e}"))?;
        Ok(PluginManifest {
            id: self.id,
            provider_type: self.provider_type,
            display_name,
            version: self.version,
            protocol_version: self.protocol_version,
            executable: self.executable,
            capabilities,
            config_schema,
        })
    }
}

const JSON_TYPES: [&str; 7] = [
    "string", "integer", "number", "boolean", "object", "array", "null",
];

/// Checks that a schema is an object schema whose `properties`, `required` and
/// `additionalProperties` have the shapes [`check_config`] reads.
///
/// # Errors
/// What is malformed.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err("must be a JSON object".into());
    };
    if obj.get("type").is_some_and(|t| t != "object") {
        return Err("type must be \"object\": a configuration is an object".into());
    }
    if let Some(props) = obj.get("properties") {
        let Some(props) = props.as_object() else {
            return Err("properties must be an object".into());
        };
        for (name, prop) in props {
            let Some(prop) = prop.as_object() else {
                return Err(format!("properties.{name} must be an object"));
            };
            if let Some(t) = prop.get("type")
                && !t.as_str().is_some_and(|t| JSON_TYPES.contains(&t))
            {
                return Err(format!("properties.{name}.type must be one JSON type name"));
            }
        }
    }
    if let Some(required) = obj.get("required")
        && !required
            .as_array()
            .is_some_and(|r| r.iter().all(Value::is_string))
    {
        return Err("required must be an array of strings".into());
    }
    if let Some(extra) = obj.get("additionalProperties")
        && !extra.is_boolean()
        && !extra.is_object()
    {
        return Err("additionalProperties must be a boolean or a schema".into());
    }
    Ok(())
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// A first, local check of a configuration against the manifest's schema: the top-level
/// `required`, `additionalProperties: false`, each property's `type` and `enum`. The plugin's
/// own `validate_config` is the authority; this catches the obvious before a process starts.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the field.
pub fn check_config(schema: &Value, config: &Map<String, Value>) -> Result<(), ConfigError> {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !config.contains_key(name) {
                return Err(ConfigError::invalid(
                    format!("config.{name}"),
                    "is required",
                ));
            }
        }
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, value) in config {
        let field = format!("config.{name}");
        let Some(prop) = props.get(name) else {
            if closed {
                return Err(ConfigError::invalid(field, "unknown field"));
            }
            continue;
        };
        if let Some(t) = prop.get("type").and_then(Value::as_str)
            && !type_matches(t, value)
        {
            return Err(ConfigError::invalid(field, format!("must be of type {t}")));
        }
        if let Some(options) = prop.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            return Err(ConfigError::invalid(
                field,
                "is not one of the allowed values",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = r#"
        id = "jenkins"
        provider_type = "jenkins"
        version = "1.0.0"
        protocol_version = 1
        executable = "run.py"
        capabilities = ["list_resources", "health_check", "health_check"]
        [config_schema]
        type = "object"
        required = ["baseUrl"]
        additionalProperties = false
        properties.baseUrl = { type = "string" }
        properties.mode = { type = "string", enum = ["a", "b"] }
    "#;

    fn no_file(_: &str) -> Result<Value, String> {
        Err("no file".into())
    }

    #[test]
    fn parses_and_checks_a_good_manifest() {
        let m = RawManifest::parse(GOOD).unwrap().check(no_file).unwrap();
        assert_eq!(m.display_name, "jenkins");
        assert_eq!(
            m.capabilities,
            [Capability::HealthCheck, Capability::ListResources]
        );
        assert_eq!(m.config_schema["required"], json!(["baseUrl"]));
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused() {
        assert!(RawManifest::parse(&format!("extra = 1\n{GOOD}")).is_err());
        for (from, to) in [
            ("id = \"jenkins\"", "id = \"Jenkins!\""),
            ("provider_type = \"jenkins\"", "provider_type = \"9x\""),
            ("\"list_resources\"", "\"setup_webhook\""),
            (
                "\"list_resources\", \"health_check\", \"health_check\"",
                "\"list_resources\"",
            ),
            ("executable = \"run.py\"", "executable = \"\""),
            ("type = \"object\"", "type = \"array\""),
        ] {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD);
            let checked = RawManifest::parse(&text).and_then(|m| m.check(no_file));
            assert!(checked.is_err(), "{to}");
        }
    }

    #[test]
    fn local_config_check_follows_the_schema() {
        let m = RawManifest::parse(GOOD).unwrap().check(no_file).unwrap();
        let check = |v: Value| check_config(&m.config_schema, v.as_object().unwrap());
        assert!(check(json!({"baseUrl": "https://x"})).is_ok());
        assert!(check(json!({"baseUrl": "https://x", "mode": "a"})).is_ok());
        assert_eq!(check(json!({})).unwrap_err().field(), "config.baseUrl");
        assert_eq!(
            check(json!({"baseUrl": 1})).unwrap_err().field(),
            "config.baseUrl"
        );
        assert_eq!(
            check(json!({"baseUrl": "x", "mode": "c"}))
                .unwrap_err()
                .field(),
            "config.mode"
        );
        assert_eq!(
            check(json!({"baseUrl": "x", "other": 1}))
                .unwrap_err()
                .field(),
            "config.other"
        );
    }
}
