//! What the schemas say beyond the Rust types: the enumerations kept as strings on the wire,
//! the bounds the handlers check, and examples of every request body and the main responses.
//! Each value comes from the constant or enum the handlers use, so they cannot drift apart.

use connectors::Reason;
use serde_json::{Value, json};

use crate::api::{keys, maintenance, validate, webhooks};

/// Every health-check reason, as the wire names it.
pub fn reasons() -> Vec<&'static str> {
    const ALL: [Reason; 13] = [
        Reason::AuthFailed,
        Reason::Forbidden,
        Reason::RateLimited,
        Reason::CredentialUnavailable,
        Reason::CredentialExpiring,
        Reason::CertificateExpiring,
        Reason::QuotaLow,
        Reason::Timeout,
        Reason::Network,
        Reason::Tls,
        Reason::ProviderDegraded,
        Reason::BadResponse,
        Reason::ConnectorFailed,
    ];
    // A reason added to the enum stops this match from compiling until it is listed above.
    const fn listed(reason: Reason) {
        match reason {
            Reason::AuthFailed
            | Reason::Forbidden
            | Reason::RateLimited
            | Reason::CredentialUnavailable
            | Reason::CredentialExpiring
            | Reason::CertificateExpiring
            | Reason::QuotaLow
            | Reason::Timeout
            | Reason::Network
            | Reason::Tls
            | Reason::ProviderDegraded
            | Reason::BadResponse
            | Reason::ConnectorFailed => {}
        }
    }
    ALL.iter()
        .map(|r| {
            listed(*r);
            r.as_str()
        })
        .collect()
}

/// A stored check's status: a health, or `rate_limited` for a check the provider asked to
/// pause (not counted as a failure).
pub fn recorded_statuses() -> Vec<&'static str> {
    let mut statuses: Vec<&str> = [
        connectors::Health::Healthy,
        connectors::Health::Degraded,
        connectors::Health::Unhealthy,
    ]
    .iter()
    .map(|h| h.as_str())
    .collect();
    statuses.push("rate_limited");
    statuses
}

/// Request bodies declared with `#[oai(deny_unknown_fields)]` (the integration bodies are
/// closed per provider type, in [`super::configs`]).
const CLOSED_INPUTS: [&str; 6] = [
    "ApiKeyCreate",
    "MaintenanceWindowCreate",
    "MonitoringSettings",
    "WebhookBatch",
    "WebhookCreate",
    "WebhookSubscriptionInput",
];

/// Applies the enumerations, bounds and examples to `doc`'s component schemas and request
/// bodies. `provider_types` are the types `type` may name when registering.
pub fn complete(doc: &mut Value, provider_types: &[String]) {
    let schemas = &mut doc["components"]["schemas"];
    let reasons = reasons();
    for (schema, property, nullable) in [
        ("HealthCheckResult", "reason", true),
        ("HealthHistoryEntry", "reason", true),
        ("Integration", "statusReason", true),
        ("IntegrationHealth", "statusReason", true),
    ] {
        set_enum(schemas, schema, property, &reasons, nullable);
    }
    set_enum(
        schemas,
        "HealthHistoryEntry",
        "status",
        &recorded_statuses(),
        false,
    );
    let mut types: Vec<&str> = provider_types.iter().map(String::as_str).collect();
    types.sort_unstable();
    set_enum(schemas, "IntegrationCreate", "type", &types, false);
    set_enum(
        schemas,
        "AuditEntry",
        "action",
        &actors::store::audit_action::ALL,
        false,
    );
    // Absent or null both mean one event per POST.
    merge(
        schemas,
        "WebhookSubscriptionInput",
        "batch",
        &json!({ "nullable": true }),
    );

    let name = json!({
        "minLength": 1,
        "maxLength": validate::MAX_NAME_CHARS,
        "pattern": validate::NAME_PATTERN,
    });
    for schema in [
        "IntegrationCreate",
        "IntegrationUpdate",
        "WebhookSubscriptionInput",
    ] {
        merge(schemas, schema, "name", &name);
    }
    for schema in ["IntegrationCreate", "IntegrationUpdate"] {
        merge(schemas, schema, "config", &json!({ "type": "object" }));
        for field in ["authRef", "authRefUri"] {
            merge(
                schemas,
                schema,
                field,
                &json!({
                    "pattern": connectors::authref::PATTERN,
                    "maxLength": connectors::authref::MAX_LEN,
                }),
            );
        }
    }
    merge(
        schemas,
        "MonitoringSettings",
        "intervalSeconds",
        &json!({
            "minimum": validate::MIN_INTERVAL_SECONDS,
            "maximum": validate::MAX_INTERVAL_SECONDS,
        }),
    );
    merge(
        schemas,
        "MaintenanceWindowCreate",
        "reason",
        &json!({ "maxLength": maintenance::MAX_REASON_CHARS }),
    );
    merge(
        schemas,
        "ApiKeyCreate",
        "name",
        &json!({ "maxLength": keys::MAX_NAME_CHARS, "pattern": "\\S" }),
    );
    merge(schemas, "ApiKeyCreate", "scopes", &json!({ "minItems": 1 }));
    merge(
        schemas,
        "WebhookSubscriptionInput",
        "eventTypes",
        &json!({ "maxItems": webhooks::MAX_EVENT_TYPES }),
    );
    merge(
        schemas,
        "WebhookSubscriptionInput",
        "integrationIds",
        &json!({ "maxItems": webhooks::MAX_INTEGRATION_IDS }),
    );
    for field in ["secretAuthRef", "secretAuthRefUri"] {
        merge(
            schemas,
            "WebhookSubscriptionInput",
            field,
            &json!({
                "pattern": connectors::authref::PATTERN,
                "maxLength": connectors::authref::MAX_LEN,
            }),
        );
    }
    let url = json!({
        "pattern": connectors::config::HTTP_URL_PATTERN,
        "maxLength": actors::sinks::webhooks::target::MAX_URL_CHARS,
    });
    merge(schemas, "WebhookSubscriptionInput", "targetUrl", &url);
    // Passed to the provider after `check_http_url`, which bounds no length.
    merge(
        schemas,
        "WebhookCreate",
        "url",
        &json!({ "pattern": connectors::config::HTTP_URL_PATTERN }),
    );
    for field in ["secretAuthRef", "secretAuthRefUri"] {
        merge(
            schemas,
            "WebhookCreate",
            field,
            &json!({
                "pattern": connectors::authref::PATTERN,
                "maxLength": connectors::authref::MAX_LEN,
            }),
        );
    }
    merge(
        schemas,
        "WebhookBatch",
        "maxEvents",
        &json!({ "minimum": 1, "maximum": webhooks::MAX_BATCH_EVENTS }),
    );
    merge(
        schemas,
        "WebhookBatch",
        "maxDelayMs",
        &json!({ "minimum": 0, "maximum": webhooks::MAX_BATCH_DELAY_MS }),
    );

    // A subscription names its signing secret: under `secretAuthRef`, or (until the former
    // name is retired) `secretAuthRefUri`, which the document lists as deprecated.
    if let Some(required) = schemas
        .pointer_mut("/WebhookSubscriptionInput/required")
        .and_then(Value::as_array_mut)
    {
        required.push(json!("secretAuthRef"));
    }

    // The request bodies refuse unknown fields (`deny_unknown_fields`), which poem-openapi
    // does not write down.
    for schema in CLOSED_INPUTS {
        match schemas.get_mut(schema).and_then(Value::as_object_mut) {
            Some(s) => {
                s.insert("additionalProperties".into(), Value::Bool(false));
            }
            None => debug_assert!(false, "no schema {schema}"),
        }
    }

    // The provider type of `by-type/{type}`: the same enumeration as a registration's.
    super::for_each_operation(doc, |_, _, op| {
        if op["operationId"] != "integration_list_by_type" {
            return;
        }
        for parameter in op["parameters"].as_array_mut().into_iter().flatten() {
            if parameter["in"] == "path" && parameter["name"] == "type" {
                parameter["schema"]["enum"] = json!(types);
            }
        }
    });
    let schemas = &mut doc["components"]["schemas"];

    for (schema, example) in response_examples() {
        if let Some(s) = schemas.get_mut(schema).and_then(Value::as_object_mut) {
            s.insert("example".into(), example);
        }
    }
    for (operation, example) in request_examples() {
        super::for_each_operation(doc, |_, _, op| {
            if op["operationId"] != operation {
                return;
            }
            let media_types = op
                .pointer_mut("/requestBody/content")
                .and_then(Value::as_object_mut);
            for media_type in media_types.into_iter().flat_map(|m| m.values_mut()) {
                media_type["example"] = example.clone();
            }
        });
    }
}

/// Rewrites what poem-openapi writes in forms client generators misread, recursively:
/// - `allOf: [{$ref}, {description, nullable}]` (a described or optional reference) becomes
///   `{description, nullable, allOf: [{$ref}]}`: openapi-python-client drops a property whose
///   `allOf` mixes a reference with a schema that has no type, and openapi-typescript makes it
///   `T & unknown`;
/// - an object with neither `properties` nor `additionalProperties` (a free-form JSON object,
///   such as a provider's `config`) states `additionalProperties: true`, or openapi-typescript
///   types it `Record<string, never>` and nothing can be sent in it.
pub fn for_generators(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(parts)) = map.get_mut("allOf")
                && parts.len() > 1
                && parts[0].get("$ref").is_some()
                && parts[1..]
                    .iter()
                    .all(|p| p.get("$ref").is_none() && p.get("type").is_none())
            {
                let extra: Vec<Value> = parts.drain(1..).collect();
                for part in extra {
                    for (k, v) in part.as_object().into_iter().flatten() {
                        map.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            if map.get("type") == Some(&json!("object"))
                && !map.contains_key("properties")
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(true));
            }
            for value in map.values_mut() {
                for_generators(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(for_generators),
        _ => {}
    }
}

/// Sets `enum` on a string property (with `null` among the values when it is nullable).
fn set_enum(schemas: &mut Value, schema: &str, property: &str, values: &[&str], nullable: bool) {
    let mut values: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    if nullable {
        values.push(Value::Null);
    }
    merge(schemas, schema, property, &json!({ "enum": values }));
}

/// Adds `extra`'s keys to a property's schema. A property that is not there is a mistake in
/// this table, caught by the unit test below rather than silently skipped in the document.
fn merge(schemas: &mut Value, schema: &str, property: &str, extra: &Value) {
    let Some(target) = schemas
        .pointer_mut(&format!("/{schema}/properties/{property}"))
        .and_then(Value::as_object_mut)
    else {
        debug_assert!(false, "no property {schema}.{property}");
        return;
    };
    // A `$ref` cannot have siblings in OpenAPI 3.0: wrap it.
    if let Some(reference) = target.remove("$ref") {
        target.insert("allOf".into(), json!([{ "$ref": reference }]));
    }
    for (k, v) in extra.as_object().into_iter().flatten() {
        target.insert(k.clone(), v.clone());
    }
}

/// An example of each request body, by operation.
fn request_examples() -> Vec<(&'static str, Value)> {
    let integration = json!({
        "type": "gitlab",
        "name": "gitlab-main",
        "config": { "baseUrl": "https://gitlab.example.com" },
        "authRef": "authref://vault/secret/tenants/acme/gitlab-main#token",
    });
    let update = integration.clone();
    let subscription = json!({
        "name": "ops-alerts",
        // The documentation network (RFC 5737): a hub refuses it unless its
        // `allow_private_networks` lists it, like every target that does not resolve to a
        // public address; a name that resolves nowhere would be refused everywhere.
        "targetUrl": "https://192.0.2.10/stella",
        "eventTypes": ["dev.stellaops.integration.health.*"],
        "secretAuthRef": "authref://vault/secret/tenants/acme/webhooks/ops#secret",
        "enabled": true,
        "incidentMembers": "suppress",
        "batch": { "maxEvents": 50, "maxDelayMs": 2000 },
    });
    vec![
        ("integration_create", integration),
        ("integration_update", update),
        (
            "integration_monitoring_set",
            json!({ "paused": false, "intervalSeconds": 300 }),
        ),
        (
            "maintenance_window_create",
            json!({
                "startsAt": "2030-01-04T22:00:00Z",
                "endsAt": "2030-01-05T02:00:00Z",
                "recurrence": "weekly",
                "until": "2030-06-30T00:00:00Z",
                "reason": "Weekly registry upgrade",
            }),
        ),
        (
            "integration_webhook_create",
            json!({
                "target": "octo-org/hello-world",
                "url": "https://hub.example.com/hooks/github",
                "events": ["push"],
                "secretAuthRef": "authref://vault/secret/tenants/acme/github/hooks#secret",
            }),
        ),
        ("webhook_subscription_create", subscription.clone()),
        ("webhook_subscription_update", subscription),
        (
            "api_key_create",
            json!({
                "name": "ci-scanner",
                "scopes": ["integrations:read"],
                "expiresAt": "2030-01-01T00:00:00Z",
            }),
        ),
    ]
}

/// Examples of the main response bodies, by schema.
fn response_examples() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Integration",
            json!({
                "id": "01933b8e-8f9c-7c3e-9f41-2b6c0d1e5a77",
                "tenantId": "acme",
                "type": "gitlab",
                "name": "gitlab-main",
                "config": { "baseUrl": "https://gitlab.example.com" },
                "authRef": "authref://vault/secret/tenants/acme/gitlab-main#token",
                "status": "unhealthy",
                "statusReason": "auth_failed",
                "lastCheckedAt": "2030-01-05T10:15:00Z",
                "monitoringPaused": false,
                "checkIntervalSeconds": 300,
                "version": 3,
                "createdAt": "2030-01-01T09:00:00Z",
                "updatedAt": "2030-01-05T10:15:00Z",
            }),
        ),
        (
            "HealthCheckResult",
            json!({
                "status": "degraded",
                "reason": "credential_expiring",
                "message": "the token expires in 5 days",
                "latencyMs": 182,
                "checkedAt": "2030-01-05T10:15:00Z",
                "expiresAt": "2030-01-10T00:00:00Z",
                "certificateExpiresAt": "2030-09-01T00:00:00Z",
                "quotaRemaining": 4870,
                "quotaLimit": 5000,
                "quotaResetAt": "2030-01-05T11:00:00Z",
            }),
        ),
        (
            "Problem",
            json!({
                "type": "urn:stellaops:problem:validation_failed",
                "title": "Unprocessable Entity",
                "status": 422,
                "detail": "name: must not be empty",
                "code": "validation_failed",
                "errors": [{ "field": "name", "message": "must not be empty" }],
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_references_and_free_form_objects_read_as_generators_expect() {
        let mut schema = json!({
            "properties": {
                "batch": {"allOf": [{"$ref": "#/components/schemas/B"},
                                    {"description": "d", "nullable": true}]},
                "config": {"type": "object", "description": "c"},
                "typed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "both": {"allOf": [{"$ref": "#/components/schemas/A"},
                                   {"$ref": "#/components/schemas/B"}]},
            }
        });
        for_generators(&mut schema);
        assert_eq!(
            schema["properties"]["batch"],
            json!({"allOf": [{"$ref": "#/components/schemas/B"}], "description": "d",
                   "nullable": true})
        );
        assert_eq!(schema["properties"]["config"]["additionalProperties"], true);
        assert!(
            schema["properties"]["typed"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(
            schema["properties"]["both"]["allOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn every_listed_property_exists() {
        // `merge` asserts in debug builds; completing the generated document runs them all.
        let mut doc: Value = serde_json::from_str(&crate::api::service().spec()).unwrap();
        complete(&mut doc, &["gitlab".to_owned()]);
        assert_eq!(
            doc["components"]["schemas"]["IntegrationCreate"]["properties"]["type"]["enum"],
            json!(["gitlab"])
        );
    }
}
