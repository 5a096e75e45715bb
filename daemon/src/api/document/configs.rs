//! Each provider's `config` schema in the document.
//!
//! A connector declares its configuration as JSON Schema draft 2020-12
//! ([`connectors::ConnectorFactory::config_schema`]); the document is OpenAPI 3.0, whose schema
//! dialect is older. So each schema is converted ([`to_openapi`]) and named
//! `<Type>Config`, and the integration bodies become one variant per provider type, chosen by
//! `type` (a `oneOf` with a `discriminator`): `IntegrationCreate` is `GitlabIntegrationCreate`
//! or `HarborIntegrationCreate` or …, each with its own `config`. Generators (openapi-python-
//! client, openapi-typescript) then type `config` per provider, and a fuzzer generates
//! registrations a hub accepts.
//!
//! A plugin's schema that uses what OpenAPI 3.0 cannot state (`if`/`then`, `prefixItems`, …)
//! is described as a free-form object pointing at the plugin listing, which has it whole.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The keywords a converted schema keeps: OpenAPI 3.0's schema object, extensions aside.
const OPENAPI_KEYWORDS: [&str; 28] = [
    "type",
    "format",
    "description",
    "enum",
    "properties",
    "additionalProperties",
    "required",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "nullable",
    "example",
    "deprecated",
];

/// Keywords of JSON Schema that say nothing about valid values, dropped on conversion.
const ANNOTATIONS: [&str; 6] = [
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
];

/// How deep `$ref`s may nest when inlined (a recursive schema is not converted).
const MAX_DEPTH: usize = 32;

/// The schema names a provider type gets: `github_app` → `GithubApp`.
pub fn pascal(provider_type: &str) -> String {
    provider_type
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A JSON Schema 2020-12 document as an OpenAPI 3.0 schema: `$ref`s into `$defs` inlined,
/// `const` as a one-value `enum`, `[T, "null"]` types as `nullable`, a `oneOf` of constants as
/// one `enum`, Rust's unsigned integer formats as bounds, and annotations dropped.
///
/// # Errors
/// What OpenAPI 3.0 cannot state, named.
pub fn to_openapi(schema: &Value) -> Result<Value, String> {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    convert(schema, &defs, 0)
}

fn convert(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("references nest too deep (a recursive schema?)".into());
    }
    let object = match schema {
        Value::Bool(true) => return Ok(json!({})),
        Value::Object(object) => object,
        other => return Err(format!("a schema that is not an object: {other}")),
    };
    let mut out = Map::new();
    if let Some(reference) = object.get("$ref") {
        let name = reference
            .as_str()
            .and_then(|r| {
                r.strip_prefix("#/$defs/")
                    .or_else(|| r.strip_prefix("#/definitions/"))
            })
            .ok_or_else(|| format!("a reference outside $defs: {reference}"))?;
        let target = defs
            .get(name)
            .ok_or_else(|| format!("an unknown reference: {name}"))?;
        let Value::Object(inlined) = convert(target, defs, depth + 1)? else {
            return Err("a reference to a non-object schema".into());
        };
        out = inlined;
    }
    for (key, value) in object {
        if key == "$ref" || ANNOTATIONS.contains(&key.as_str()) {
            continue;
        }
        let converted = match key.as_str() {
            // Beside a reference, the referring description comes first, then the referred's.
            "description" if object.contains_key("$ref") => match out.get("description") {
                Some(Value::String(referred)) => Value::String(format!(
                    "{}\n\n{referred}",
                    value.as_str().unwrap_or_default()
                )),
                _ => value.clone(),
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
                continue;
            }
            // Stated in the description instead: openapi-typescript makes a property with a
            // `default` required, so a registration would have to spell out every default.
            "default" => continue,
            "examples" => {
                if let Some(first) = value.as_array().and_then(|a| a.first()) {
                    out.insert("example".into(), first.clone());
                }
                continue;
            }
            "type" => match value {
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    let [single] = non_null.as_slice() else {
                        return Err(format!("a type that is one of several: {value}"));
                    };
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    (*single).clone()
                }
                Value::String(t) if t == "null" => {
                    return Err("a type that is only null".into());
                }
                other => other.clone(),
            },
            "exclusiveMinimum" | "exclusiveMaximum" if value.is_number() => {
                let bound = if key == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                out.insert(bound.into(), value.clone());
                Value::Bool(true)
            }
            "properties" => {
                let mut properties = Map::new();
                for (name, property) in value.as_object().into_iter().flatten() {
                    properties.insert(name.clone(), convert(property, defs, depth + 1)?);
                }
                Value::Object(properties)
            }
            "items" | "not" => convert(value, defs, depth + 1)?,
            "additionalProperties" => match value {
                Value::Bool(b) => Value::Bool(*b),
                schema => convert(schema, defs, depth + 1)?,
            },
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .ok_or_else(|| format!("{key} that is not a list"))?
                    .iter()
                    .map(|s| convert(s, defs, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            "format" => match value.as_str() {
                Some(unsigned @ ("uint" | "uint8" | "uint16" | "uint32" | "uint64")) => {
                    let max: u64 = match unsigned {
                        "uint8" => u8::MAX.into(),
                        "uint16" => u16::MAX.into(),
                        "uint32" => u32::MAX.into(),
                        _ => u64::MAX,
                    };
                    out.entry("maximum").or_insert_with(|| json!(max));
                    out.entry("minimum").or_insert_with(|| json!(0));
                    continue;
                }
                _ => value.clone(),
            },
            k if k.starts_with("x-") || OPENAPI_KEYWORDS.contains(&k) => value.clone(),
            k => return Err(format!("the keyword `{k}`")),
        };
        out.insert(key.clone(), converted);
    }
    // A bound the schema states wins over one implied by the integer's width.
    for bound in ["minimum", "maximum"] {
        if let Some(stated) = object.get(bound) {
            out.insert(bound.into(), stated.clone());
        }
    }
    collapse_constants(&mut out);
    if let Some(default) = object.get("default").filter(|d| !d.is_null()) {
        let line = format!("Default: `{default}`.");
        let description = match out.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d} {line}"),
            None => line,
        };
        out.insert("description".into(), Value::String(description));
    }
    if out.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::Array(values)) = out.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    Ok(Value::Object(out))
}

/// `oneOf: [{type: T, enum: [a], description: d}, …]` (how schemars writes a documented
/// Rust enum) as `{type: T, enum: [a, …]}`, its variants' descriptions listed: generators
/// make an enumeration of it rather than a union of one-value types.
fn collapse_constants(schema: &mut Map<String, Value>) {
    let Some(Value::Array(variants)) = schema.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut notes = Vec::new();
    let mut kind = None;
    for variant in variants {
        let Some(v) = variant.as_object() else { return };
        let only_constant = v
            .keys()
            .all(|k| matches!(k.as_str(), "type" | "enum" | "description"));
        let Some([value]) = v.get("enum").and_then(Value::as_array).map(Vec::as_slice) else {
            return;
        };
        if !only_constant || kind.is_some_and(|k| Some(k) != v.get("type")) {
            return;
        }
        kind = v.get("type");
        if let Some(d) = v.get("description").and_then(Value::as_str) {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            notes.push(format!("`{shown}`: {}", d.trim_end_matches('.')));
        }
        values.push(value.clone());
    }
    let kind = kind.cloned();
    schema.remove("oneOf");
    if let Some(kind) = kind {
        schema.insert("type".into(), kind);
    }
    schema.insert("enum".into(), Value::Array(values));
    if !notes.is_empty() {
        let listed = notes.join("; ");
        let description = match schema.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d} {listed}."),
            None => format!("{listed}."),
        };
        schema.insert("description".into(), Value::String(description));
    }
}

/// The `config` schema a provider's variant refers to: its converted schema, or a free-form
/// object when it cannot be converted.
fn config_schema(provider_type: &str, schema: &Value) -> Value {
    match to_openapi(schema) {
        Ok(mut converted) => {
            if converted.get("type").is_none() {
                converted["type"] = json!("object");
            }
            converted
        }
        Err(reason) => {
            tracing::debug!(
                message = "A provider's config schema is not expressible in OpenAPI 3.0.",
                provider_type,
                %reason
            );
            json!({
                "type": "object",
                "additionalProperties": true,
                "description": format!(
                    "The configuration of a `{provider_type}` integration. Its JSON Schema uses \
                     what OpenAPI 3.0 cannot state ({reason}): `GET \
                     /api/v1/integrations/plugins` lists it whole."
                ),
            })
        }
    }
}

/// Splits `IntegrationCreate` and `IntegrationUpdate` into one variant per provider type,
/// each with its `config` schema (`<Type>Config`), chosen by `type`.
pub fn complete(schemas: &mut Value, providers: &BTreeMap<String, Value>) {
    if providers.is_empty() {
        return;
    }
    let original: Vec<String> = schemas
        .as_object()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    for (body, verb) in [
        ("IntegrationCreate", "registration"),
        ("IntegrationUpdate", "replacement"),
    ] {
        let Some(base) = schemas.get(body).cloned() else {
            debug_assert!(false, "no schema {body}");
            continue;
        };
        let mut variants = Vec::new();
        let mut mapping = Map::new();
        for (provider_type, schema) in providers {
            let base_name = pascal(provider_type);
            let config_name = unused_name(&original, format!("{base_name}Config"));
            if schemas.get(&config_name).is_none() {
                let mut config = config_schema(provider_type, schema);
                if config.get("description").is_none() {
                    config["description"] = json!(format!(
                        "The configuration of a `{provider_type}` integration."
                    ));
                }
                schemas[&config_name] = config;
            }
            let variant_name = unused_name(&original, format!("{base_name}{body}"));
            let mut variant = base.clone();
            variant["title"] = json!(variant_name);
            variant["description"] =
                json!(format!("The {verb} of a `{provider_type}` integration."));
            variant["additionalProperties"] = json!(false);
            let properties = &mut variant["properties"];
            let type_description = properties["type"]["description"].clone();
            properties["type"] = json!({
                "type": "string",
                "enum": [provider_type],
                "description": type_description,
            });
            let config_description = properties["config"]["description"].clone();
            properties["config"] = json!({
                "allOf": [{ "$ref": format!("#/components/schemas/{config_name}") }],
                "description": config_description,
            });
            let mut required: Vec<Value> =
                variant["required"].as_array().cloned().unwrap_or_default();
            if !required.contains(&json!("type")) {
                required.insert(0, json!("type"));
            }
            // An absent `config` is an empty object: required when that is not a valid one.
            let config_required = schemas[&config_name]["required"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if config_required && !required.contains(&json!("config")) {
                required.push(json!("config"));
            }
            variant["required"] = Value::Array(required);
            let reference = format!("#/components/schemas/{variant_name}");
            variants.push(json!({ "$ref": reference }));
            mapping.insert(provider_type.clone(), Value::String(reference));
            schemas[&variant_name] = variant;
        }
        let description = base["description"].as_str().unwrap_or_default().to_owned();
        schemas[body] = json!({
            "description": format!(
                "{description} One variant per provider type, chosen by `type`, each with \
                 the `config` that provider takes."
            ),
            "oneOf": variants,
            "discriminator": { "propertyName": "type", "mapping": mapping },
        });
    }
}

/// `name`, or `name` with `Provider` before it when the generated document has a schema of
/// that name already.
fn unused_name(original: &[String], name: String) -> String {
    if original.contains(&name) {
        format!("Provider{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_types_become_schema_names() {
        assert_eq!(pascal("github_app"), "GithubApp");
        assert_eq!(pascal("inmemory"), "Inmemory");
        assert_eq!(pascal("my-ci.v2"), "MyCiV2");
    }

    #[test]
    fn a_2020_12_schema_converts_to_the_openapi_dialect() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Config",
            "type": "object",
            "additionalProperties": false,
            "$defs": {
                "Mode": {"oneOf": [
                    {"const": "a", "type": "string", "description": "First."},
                    {"const": "b", "type": "string", "description": "Second."}
                ]},
                "Level": {"enum": ["read", "write"], "type": "string"}
            },
            "properties": {
                "mode": {"$ref": "#/$defs/Mode", "description": "The mode."},
                "levels": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Level"}},
                "user": {"type": ["string", "null"], "pattern": "^[^:]*$"},
                "kind": {"const": "x"},
                "count": {"type": "integer", "format": "uint32", "minimum": 1},
                "percent": {"type": "integer", "format": "uint8", "maximum": 100},
                "ratio": {"type": "number", "exclusiveMinimum": 0},
                "choice": {"type": ["string", "null"], "enum": ["p", "q"]},
                "sample": {"type": "string", "examples": ["s"]},
                "days": {"type": "integer", "default": 14, "description": "Days."}
            },
            "required": ["mode"]
        });
        let converted = to_openapi(&schema).unwrap();
        assert_eq!(
            converted,
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "mode": {"type": "string", "enum": ["a", "b"],
                             "description": "The mode.\n\n`a`: First; `b`: Second."},
                    "levels": {"type": "object",
                               "additionalProperties": {"enum": ["read", "write"], "type": "string"}},
                    "user": {"type": "string", "nullable": true, "pattern": "^[^:]*$"},
                    "kind": {"enum": ["x"]},
                    "count": {"type": "integer", "minimum": 1, "maximum": 4_294_967_295_u64},
                    "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                    "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                    "choice": {"type": "string", "nullable": true, "enum": ["p", "q", null]},
                    "sample": {"type": "string", "example": "s"},
                    "days": {"type": "integer", "description": "Days. Default: `14`."}
                },
                "required": ["mode"]
            })
        );
    }

    #[test]
    fn what_openapi_3_0_cannot_state_is_refused_by_name() {
        for (schema, named) in [
            (json!({"type": "object", "if": {}}), "`if`"),
            (json!({"type": ["string", "integer"]}), "one of several"),
            (
                json!({"$ref": "https://example.com/s.json"}),
                "outside $defs",
            ),
            (
                json!({"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}),
                "too deep",
            ),
        ] {
            let error = to_openapi(&schema).unwrap_err();
            assert!(error.contains(named), "{error}");
        }
        let fallback = config_schema("odd", &json!({"type": "object", "prefixItems": []}));
        assert_eq!(fallback["additionalProperties"], true);
        assert!(
            fallback["description"]
                .as_str()
                .unwrap()
                .contains("/plugins")
        );
    }

    #[test]
    fn every_builtin_schema_converts() {
        for factory in connectors::registry::builtin() {
            let t = factory.provider_type();
            let converted =
                to_openapi(&factory.config_schema()).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(converted["type"], "object", "{t}");
            assert_eq!(converted["additionalProperties"], false, "{t}");
        }
    }
}
