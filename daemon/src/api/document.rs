//! The OpenAPI document: what poem-openapi generates from the operations, completed with what
//! it cannot express, in one pass applied both to the served `/openapi.json` (and Swagger UI)
//! and to the checked-in `openapi.json`.
//!
//! - **Scopes.** Each operation names its scope on its `BearerAuth` argument
//!   (`#[oai(scope = "Scope::Read")]`); poem-openapi would put it on the bearer requirement,
//!   which OpenAPI 3.0 forbids for `http` schemes. Here each requirement becomes two
//!   alternatives: `BearerAuth` (an API key or a JWT, as Swagger UI's "Authorize" takes it)
//!   and `OpenIdConnect` with the scope, so that generators and Swagger UI show it. The scope
//!   is also stated in the operation's description and in `x-required-scopes`.
//! - **Servers.** `http.public_url` when set, else `/` (relative to where the document was
//!   read).
//! - **Links.** From each creating operation's 201 to the operations taking the new object's
//!   id, so that clients and stateful fuzzers can follow them.
//! - **Preconditions.** `If-Match` is described by its grammar (`*` or entity tags), which
//!   the handlers enforce with 400.
//! - **Schemas** ([`schemas`]): enumerations kept as strings on the wire, the bounds the
//!   handlers check, examples. The provider types `type` may name are the built-in ones in
//!   the checked-in document, and those registered now (plugins included) in a hub's.
//! - **Provider configurations** ([`configs`]): the integration bodies as one variant per
//!   provider type, each with that provider's `config` schema, converted from JSON Schema
//!   2020-12.
//! - **Optional lists.** A repeatable query parameter is never required: absent, it is an
//!   empty list.

mod configs;
mod schemas;

use std::collections::BTreeMap;

use std::sync::{Arc, PoisonError};

use serde_json::{Map, Value, json};

/// The example authority named when no `[auth.jwt] issuer` is configured.
pub const EXAMPLE_ISSUER: &str = "https://authority.example.com";

/// `If-Match` as [`super::precondition`] parses it (RFC 9110 §13.1.1): `*`, or a
/// comma-separated list of strong or weak entity tags of visible ASCII characters.
pub const IF_MATCH_PATTERN: &str =
    r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)[ \t]*$"#;

/// The deployment-specific parts of the document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Site {
    /// `http.public_url`, without a trailing `/`.
    pub public_url: Option<String>,
    /// `[auth.jwt] issuer`, without a trailing `/`.
    pub issuer: Option<String>,
    /// The provider types registered now, plugins included, with the JSON Schema of each
    /// one's `config`; the built-in connectors' when `None`.
    pub providers: Option<BTreeMap<String, Value>>,
}

/// The document for `site`, as pretty JSON.
pub fn render(site: &Site) -> String {
    let raw: Value =
        serde_json::from_str(&super::service().spec()).expect("poem-openapi writes JSON");
    serde_json::to_string_pretty(&complete(raw, site)).expect("a JSON value serialises")
}

/// The document last rendered and the site it was rendered for. A site changes only when
/// plugins are discovered, so `/openapi.json` and `/docs` do not build the document again on
/// every request.
#[derive(Debug, Default)]
pub struct Rendered(std::sync::Mutex<Option<(Site, Arc<str>)>>);

impl Rendered {
    /// The document for `site`, rendered again only when `site` differs from the last one's.
    pub fn for_site(&self, site: Site) -> Arc<str> {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((rendered_for, document)) = last.as_ref()
            && *rendered_for == site
        {
            return document.clone();
        }
        let document: Arc<str> = render(&site).into();
        *last = Some((site, document.clone()));
        document
    }
}

/// Applies every completion listed in the module's documentation.
pub fn complete(mut doc: Value, site: &Site) -> Value {
    doc["servers"] = json!([{
        "url": site.public_url.clone().unwrap_or_else(|| "/".to_owned()),
        "description": if site.public_url.is_some() {
            "This hub (`http.public_url`)."
        } else {
            "The hub serving this document."
        },
    }]);
    let issuer = site.issuer.as_deref().unwrap_or(EXAMPLE_ISSUER);
    doc["components"]["securitySchemes"]["OpenIdConnect"] = json!({
        "type": "openIdConnect",
        "openIdConnectUrl": format!("{issuer}/.well-known/openid-configuration"),
        "description": "A JWT from the authority configured under `[auth.jwt]`, whose `scope` \
            (or `scp`) claim holds the scope each operation names. Send it as a bearer token \
            (`BearerAuth`) like an API key; this scheme states the scopes. The document served \
            by a hub names its own authority; the checked-in copy names an example one.",
    });
    scopes(&mut doc);
    header_names(&mut doc);
    optional_lists(&mut doc);
    event_streams(&mut doc);
    let providers = site.providers.clone().unwrap_or_else(|| {
        connectors::registry::builtin()
            .iter()
            .map(|f| (f.provider_type().to_owned(), f.config_schema()))
            .collect()
    });
    let provider_types: Vec<String> = providers.keys().cloned().collect();
    schemas::complete(&mut doc, &provider_types);
    configs::complete(&mut doc["components"]["schemas"], &providers);
    for schema in doc["components"]["schemas"]
        .as_object_mut()
        .into_iter()
        .flat_map(|schemas| schemas.values_mut())
    {
        schemas::for_generators(schema);
    }
    response_descriptions(&mut doc);
    links(&mut doc);
    list_links(&mut doc);
    doc
}

/// Links from a list's first item to the operation taking its id, where no operation creates
/// the objects listed: incidents are opened by the hub, deliveries by events. A client (or a
/// fuzzer) follows them when the list is not empty.
/// A list's path and method, the operation taking one of its items, and that operation's
/// parameters (name, runtime expression).
type ListLink = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const LIST_LINKS: [ListLink; 2] = [
    (
        "/api/v1/incidents",
        "get",
        "incident_get",
        &[("id", "$response.body#/items/0/id")],
    ),
    (
        "/api/v1/webhook-subscriptions/{id}/deliveries",
        "get",
        "webhook_delivery_retry",
        &[
            ("id", "$request.path.id"),
            ("deliveryId", "$response.body#/items/0/id"),
        ],
    ),
];

fn list_links(doc: &mut Value) {
    for (path, method, target, parameters) in LIST_LINKS {
        let pointer = format!(
            "/paths/{}/{method}/responses/200",
            path.replace('~', "~0").replace('/', "~1")
        );
        let Some(response) = doc.pointer_mut(&pointer) else {
            debug_assert!(false, "no 200 answer of {method} {path}");
            continue;
        };
        let parameters: Map<String, Value> = parameters
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::String((*value).to_owned())))
            .collect();
        response["links"][target] = json!({
            "operationId": target,
            "parameters": parameters,
            "description": format!("The first listed object's id to `{target}`."),
        });
    }
}

/// The bearer requirement's scopes move to an `OpenIdConnect` alternative.
fn scopes(doc: &mut Value) {
    for_each_operation(doc, |_, _, operation| {
        let Some(requirements) = operation.get("security").and_then(Value::as_array) else {
            return;
        };
        let scopes: Vec<Value> = requirements
            .iter()
            .filter_map(|r| r.get("BearerAuth").and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect();
        if scopes.is_empty() {
            return;
        }
        operation["security"] = json!([{ "BearerAuth": [] }, { "OpenIdConnect": scopes }]);
        operation["x-required-scopes"] = Value::Array(scopes.clone());
        let names: Vec<String> = scopes
            .iter()
            .filter_map(Value::as_str)
            .map(|s| format!("`{s}`"))
            .collect();
        let line = format!(
            "Requires the {} scope (an API key or a JWT holding it).",
            names.join(", ")
        );
        let description = match operation.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d}\n\n{line}"),
            None => line,
        };
        operation["description"] = Value::String(description);
    });
}

/// A response header's conventional spelling (`ETag`, `Location`, `WWW-Authenticate`):
/// poem-openapi writes them in capitals, which generators copy into their types. HTTP header
/// names are case-insensitive, so only the document changes.
pub fn conventional_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| match part.to_ascii_lowercase().as_str() {
            "etag" => "ETag".to_owned(),
            "www" => "WWW".to_owned(),
            lower => {
                let mut chars = lower.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Response headers named as [`conventional_header_name`] spells them.
fn header_names(doc: &mut Value) {
    for_each_response(doc, |response| {
        let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) else {
            return;
        };
        let renamed: Map<String, Value> = std::mem::take(headers)
            .into_iter()
            .map(|(name, header)| (conventional_header_name(&name), header))
            .collect();
        *headers = renamed;
    });
}

/// A success response without a description of its own is described by its body's schema.
fn response_descriptions(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let described = |reference: &Value| -> Option<String> {
        let name = reference.as_str()?.rsplit('/').next()?;
        schemas[name]["description"].as_str().map(str::to_owned)
    };
    for_each_response(doc, |response| {
        if response["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
        {
            return;
        }
        let Some((media_type, content)) = response
            .get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.iter().next())
        else {
            return;
        };
        let schema = &content["schema"];
        let description = if media_type == "text/event-stream" {
            Some("A stream of server-sent events: one CloudEvent per message, comment lines while idle.".to_owned())
        } else if let Some(d) = described(&schema["$ref"]) {
            Some(d)
        } else {
            described(&schema["items"]["$ref"]).map(|d| format!("A list; each item: {d}"))
        };
        if let Some(description) = description {
            response["description"] = Value::String(description);
        }
    });
}

/// An event stream's schema describes one event, as SSE clients (and schemathesis) read it:
/// poem-openapi describes the stream as an array of its items, which no event matches.
fn event_streams(doc: &mut Value) {
    for_each_response(doc, |response| {
        let Some(stream) = response.pointer_mut("/content/text~1event-stream") else {
            return;
        };
        let item = stream["schema"]["items"].clone();
        stream["schema"] = json!({
            "type": "object",
            "description": "One server-sent event: one of the tenant's events, a CloudEvent. \
                The hub sends no `retry` field, so a client keeps its own reconnection delay.",
            "properties": {
                "id": {
                    "type": "string",
                    "pattern": "^[0-9]+$",
                    "description": "The event's position in the tenant's event log: send \
                        it back as `Last-Event-ID` (or `after`) to resume.",
                },
                "event": { "type": "string", "enum": ["message"] },
                "data": {
                    "type": "string",
                    "description": "The CloudEvent, as JSON (`x-data-schema`).",
                },
                "retry": { "type": "integer", "minimum": 0 },
            },
            "x-data-schema": item,
        });
    });
}

/// Repeatable query parameters are optional.
fn optional_lists(doc: &mut Value) {
    for_each_operation(doc, |_, _, operation| {
        let Some(parameters) = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for parameter in parameters {
            if parameter["in"] == "query" && parameter["schema"]["type"] == "array" {
                parameter["required"] = Value::Bool(false);
            }
            if parameter["in"] == "header" && parameter["name"] == "If-Match" {
                parameter["schema"]["pattern"] = json!(IF_MATCH_PATTERN);
                parameter["example"] = json!("\"3\"");
            }
        }
    });
}

/// One operation as the link builder sees it.
struct Operation {
    path: String,
    method: String,
    id: String,
    path_parameters: Vec<String>,
    /// Takes an `If-Match` header.
    if_match: bool,
    /// Answers its 201 with an `ETag` header.
    created_etag: bool,
}

/// Links from creating operations (201) to the operations that take the created object's id
/// in the next path segment.
fn links(doc: &mut Value) {
    let mut operations = Vec::new();
    for_each_operation(doc, |path, method, operation| {
        operations.push(Operation {
            path: path.to_owned(),
            method: method.to_owned(),
            id: operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            path_parameters: path_parameters(path),
            if_match: operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "header" && p["name"] == "If-Match"),
            created_etag: operation.pointer("/responses/201/headers/ETag").is_some(),
        });
    });
    let mut found: Vec<(String, String, &'static str, Map<String, Value>)> = Vec::new();
    for source in &operations {
        // Only creations: a link from a list's first item is unusable whenever the list is
        // empty, which is where a client (or a stateful fuzzer) starts.
        let (status, pointer) = match source.method.as_str() {
            "post" => ("201", "$response.body#/id"),
            _ => continue,
        };
        let mut source_links = Map::new();
        for target in &operations {
            let Some(rest) = target.path.strip_prefix(&format!("{}/{{", source.path)) else {
                continue;
            };
            let Some(new_parameter) = rest.split('}').next() else {
                continue;
            };
            let mut parameters = Map::new();
            for name in &target.path_parameters {
                let value = if name == new_parameter {
                    pointer.to_owned()
                } else if source.path_parameters.contains(name) {
                    format!("$request.path.{name}")
                } else {
                    continue;
                };
                parameters.insert(name.clone(), Value::String(value));
            }
            if parameters.len() != target.path_parameters.len() {
                continue;
            }
            // The created object's version, so that a conditional change can follow at once.
            if target.if_match && source.created_etag && new_parameter == "id" {
                parameters.insert(
                    "header.If-Match".into(),
                    Value::String("$response.header.ETag".into()),
                );
            }
            source_links.insert(
                target.id.clone(),
                json!({
                    "operationId": target.id,
                    "parameters": parameters,
                    "description": format!("`{new_parameter}` of the created object to `{}`.",
                        target.id),
                }),
            );
        }
        if !source_links.is_empty() {
            found.push((
                source.path.clone(),
                source.method.clone(),
                status,
                source_links,
            ));
        }
    }
    for (path, method, status, source_links) in found {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        let Some(response) = doc.pointer_mut(&pointer) else {
            continue;
        };
        let has_body = response
            .get("content")
            .and_then(Value::as_object)
            .is_some_and(|c| !c.is_empty());
        if has_body {
            response["links"] = Value::Object(source_links);
        }
    }
}

fn path_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

/// Calls `f` with every response of every operation.
fn for_each_response(doc: &mut Value, mut f: impl FnMut(&mut Value)) {
    for_each_operation(doc, |_, _, operation| {
        if let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        {
            responses.values_mut().for_each(&mut f);
        }
    });
}

fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Value)) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            f(path, method, operation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(site: &Site) -> Value {
        serde_json::from_str(&render(site)).unwrap()
    }

    #[test]
    fn the_if_match_pattern_admits_only_what_the_parser_accepts() {
        let pattern = regex::Regex::new(IF_MATCH_PATTERN).unwrap();
        for accepted in ["*", "\"3\"", "W/\"3\"", " \"1\", \"2\" ", "\"abc\",W/\"x\""] {
            assert!(pattern.is_match(accepted), "{accepted}");
            assert!(crate::api::precondition::Precondition::parse(accepted.as_bytes()).is_ok());
        }
        for refused in ["3", "\"3", "3; drop", "\"a b\""] {
            assert!(!pattern.is_match(refused), "{refused}");
        }
    }

    #[test]
    fn a_document_is_rendered_again_only_for_another_site() {
        let rendered = Rendered::default();
        let first = rendered.for_site(Site::default());
        assert!(Arc::ptr_eq(&first, &rendered.for_site(Site::default())));
        let plugins = Site {
            providers: Some(BTreeMap::from([
                ("inmemory".into(), json!({"type": "object"})),
                ("my_plugin".into(), json!({"type": "object"})),
            ])),
            ..Site::default()
        };
        let second = rendered.for_site(plugins.clone());
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(second.contains("my_plugin") && !first.contains("my_plugin"));
        assert!(Arc::ptr_eq(&second, &rendered.for_site(plugins)));
    }

    #[test]
    fn servers_follow_the_public_url() {
        assert_eq!(doc(&Site::default())["servers"][0]["url"], "/");
        let site = Site {
            public_url: Some("https://hub.example.org".into()),
            issuer: Some("https://login.example.org".into()),
            providers: None,
        };
        let d = doc(&site);
        assert_eq!(d["servers"][0]["url"], "https://hub.example.org");
        assert_eq!(
            d["components"]["securitySchemes"]["OpenIdConnect"]["openIdConnectUrl"],
            "https://login.example.org/.well-known/openid-configuration"
        );
    }

    #[test]
    fn each_provider_type_registers_with_its_own_config_schema() {
        let plugin = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"url": {"type": "string"}, "depth": {"type": ["integer", "null"]}},
            "required": ["url"],
        });
        let site = Site {
            providers: Some(BTreeMap::from([
                (
                    "inmemory".into(),
                    connectors::provider::schema_of::<connectors::memory::Config>(),
                ),
                ("my_ci".into(), plugin),
            ])),
            ..Site::default()
        };
        let d = doc(&site);
        let schemas = &d["components"]["schemas"];
        for body in ["IntegrationCreate", "IntegrationUpdate"] {
            assert_eq!(
                schemas[body]["discriminator"]["mapping"],
                json!({
                    "inmemory": format!("#/components/schemas/Inmemory{body}"),
                    "my_ci": format!("#/components/schemas/MyCi{body}"),
                }),
                "{body}"
            );
            let variant = &schemas[format!("MyCi{body}")];
            assert_eq!(variant["properties"]["type"]["enum"], json!(["my_ci"]));
            assert_eq!(
                variant["properties"]["config"]["allOf"][0]["$ref"],
                "#/components/schemas/MyCiConfig"
            );
            // The plugin's config has a required field, so an absent config is refused.
            assert_eq!(variant["required"], json!(["type", "name", "config"]));
            assert_eq!(
                schemas[format!("Inmemory{body}")]["required"],
                json!(["type", "name"])
            );
        }
        assert_eq!(
            schemas["MyCiConfig"]["properties"]["depth"],
            json!({"type": "integer", "nullable": true})
        );
        assert_eq!(
            schemas["InmemoryConfig"]["properties"]["behaviour"]["enum"],
            json!([
                "healthy",
                "unhealthy",
                "flapping",
                "hang",
                "panic",
                "rate_limited"
            ])
        );
    }

    #[test]
    fn bearer_requirements_carry_no_scopes_and_oidc_ones_do() {
        let d = doc(&Site::default());
        let op = &d["paths"]["/api/v1/integrations"]["post"];
        assert_eq!(
            op["security"],
            json!([{ "BearerAuth": [] }, { "OpenIdConnect": ["integrations:write"] }])
        );
        assert!(op["description"].as_str().unwrap().ends_with(
            "Requires the `integrations:write` scope (an API key or a JWT holding it)."
        ));
    }

    #[test]
    fn lists_of_objects_nothing_creates_link_to_their_items() {
        let d = doc(&Site::default());
        let ids: Vec<&str> = d["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|ops| ops.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        for (path, method, target, _) in LIST_LINKS {
            assert!(ids.contains(&target), "{target}");
            let link = &d["paths"][path][method]["responses"]["200"]["links"][target];
            assert_eq!(link["operationId"], target, "{method} {path}");
        }
        assert_eq!(
            d["paths"]["/api/v1/webhook-subscriptions/{id}/deliveries"]["get"]["responses"]["200"]
                ["links"]["webhook_delivery_retry"]["parameters"],
            json!({ "id": "$request.path.id", "deliveryId": "$response.body#/items/0/id" })
        );
    }

    #[test]
    fn response_headers_have_their_conventional_names() {
        for (written, conventional) in [
            ("ETAG", "ETag"),
            ("LOCATION", "Location"),
            ("WWW-AUTHENTICATE", "WWW-Authenticate"),
            ("RETRY-AFTER", "Retry-After"),
            ("CACHE-CONTROL", "Cache-Control"),
        ] {
            assert_eq!(conventional_header_name(written), conventional);
        }
        let d = doc(&Site::default());
        let created = &d["paths"]["/api/v1/integrations"]["post"]["responses"]["201"]["headers"];
        assert!(created.get("ETag").is_some() && created.get("Location").is_some());
        assert!(created.get("ETAG").is_none());
    }

    #[test]
    fn created_objects_link_to_the_operations_taking_their_id() {
        let d = doc(&Site::default());
        let links = &d["paths"]["/api/v1/integrations/{id}/maintenance-windows"]["post"]["responses"]
            ["201"]["links"];
        assert_eq!(
            links["maintenance_window_delete"]["parameters"],
            json!({ "id": "$request.path.id", "windowId": "$response.body#/id" })
        );
        let links = &d["paths"]["/api/v1/integrations"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            links["integration_get"]["parameters"],
            json!({ "id": "$response.body#/id" })
        );
        assert_eq!(
            links["integration_update"]["parameters"],
            json!({ "id": "$response.body#/id", "header.If-Match": "$response.header.ETag" })
        );
    }
}
