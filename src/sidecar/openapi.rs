//! The OpenAPI 3.1 document of the sidecar, served at `/openapi.json`, generated from the code:
//! each handler carries its `#[utoipa::path]`, each body type derives its schema (types that
//! refuse unknown fields say `additionalProperties: false`), and the router and the document
//! are built together from the same list (`super::api`), so neither can drift from the other.
//!
//! What every operation of a kind can answer is added here once rather than on each handler:
//! 401 where a bearer token is required, 400/413/415 where a JSON body is read, 404 where the
//! path names a resource, and 503 where PostgreSQL or Firestore is involved.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use super::problem::ProblemDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "firesfu sidecar",
        description = "Users, rooms, room images, IP cameras and join tokens for firesfu. Errors are RFC 9457 problem documents (`application/problem+json`) with a stable `type` (`urn:firesfu:problem:<slug>`)."
    ),
    components(schemas(ProblemDoc))
)]
pub struct ApiDoc;

/// Adds what every operation of a kind answers; run on the complete document (once every route
/// is in it).
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    Common.modify(doc);
    links(doc);
    room_change_needs_a_field(doc);
    labels_refuse_forbidden_characters(doc);
    camera_patterns(doc);
    webhook_patterns(doc);
}

/// A webhook endpoint's URL: http(s), a host, no credentials, no fragment (as far as a pattern
/// can say it: the URL parser checks the rest).
fn webhook_patterns(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in ["NewEndpoint", "EndpointChange"] {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(schema)
            && let Some(RefOr::T(Schema::Object(p))) = o.properties.get_mut("url")
        {
            p.pattern = Some(r"^https?://[^\s/?#@]+([/?][^\s#]*)?$".to_owned());
        }
    }
}

/// A camera's URL and credentials refuse what `camera_input` refuses (as far as a pattern can
/// say it: a host and a valid port are the URL parser's to check).
fn camera_patterns(doc: &mut utoipa::openapi::OpenApi) {
    use super::camera_input::{PASSWORD_PATTERN, URL_PATTERN, USERNAME_PATTERN};
    use utoipa::openapi::schema::Schema;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in ["NewCamera", "CameraChange"] {
        let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(schema) else {
            continue;
        };
        for (field, pattern) in [
            ("url", URL_PATTERN),
            ("username", USERNAME_PATTERN),
            ("password", PASSWORD_PATTERN),
        ] {
            if let Some(RefOr::T(Schema::Object(p))) = o.properties.get_mut(field) {
                p.pattern = Some(pattern.to_owned());
            }
        }
    }
}

/// Names people show each other refuse control and bidi characters (`crate::text`); the
/// pattern says so (utoipa takes only literals in attributes, this takes the one constant).
fn labels_refuse_forbidden_characters(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    let set = |schema: Option<&mut RefOr<Schema>>| {
        if let Some(RefOr::T(Schema::Object(o))) = schema {
            o.pattern = Some(crate::text::LABEL_PATTERN.to_owned());
        }
    };
    if let Some(components) = doc.components.as_mut() {
        for (schema, field) in [
            ("NewRoom", "name"),
            ("RoomChange", "name"),
            ("NewCamera", "name"),
            ("CameraChange", "name"),
            ("JoinRequest", "displayName"),
        ] {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(schema) {
                set(o.properties.get_mut(field));
            }
        }
    }
    if let Some(op) = doc
        .paths
        .paths
        .get_mut("/v1/images")
        .and_then(|i| i.post.as_mut())
    {
        for p in op.parameters.iter_mut().flatten() {
            if p.name == "name" {
                set(p.schema.as_mut());
            }
        }
    }
}

/// The document as served. utoipa 5 writes a link's `operationId` as `operation_id` (and
/// `operationRef`, `requestBody` likewise): renamed here to what OpenAPI reads.
pub fn to_json(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut json = serde_json::to_value(doc).unwrap_or_default();
    if let Some(paths) = json
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    {
        for op in paths
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|i| i.values_mut())
        {
            let responses = op
                .get_mut("responses")
                .and_then(serde_json::Value::as_object_mut);
            for response in responses.into_iter().flat_map(|r| r.values_mut()) {
                let links = response
                    .get_mut("links")
                    .and_then(serde_json::Value::as_object_mut);
                for link in links
                    .into_iter()
                    .flat_map(|l| l.values_mut())
                    .filter_map(serde_json::Value::as_object_mut)
                {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(v) = link.remove(from) {
                            link.insert(to.to_owned(), v);
                        }
                    }
                }
            }
        }
    }
    json
}

/// What a created room or image is reached by (clients and schemathesis's stateful phase follow
/// these instead of guessing which field is the id).
fn links(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    let link = |operation: &str| {
        LinkBuilder::new()
            .operation_id(operation)
            .parameter("id", "$response.body#/id")
            .build()
    };
    let created = |path: &str,
                   method: HttpMethod,
                   status: &str,
                   doc: &mut utoipa::openapi::OpenApi,
                   targets: &[&str]| {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            return;
        };
        let op = match method {
            HttpMethod::Post => item.post.as_mut(),
            _ => None,
        };
        if let Some(RefOr::T(response)) = op.and_then(|o| o.responses.responses.get_mut(status)) {
            for target in targets {
                response
                    .links
                    .insert((*target).to_owned(), RefOr::T(link(target)));
            }
        }
    };
    created(
        "/v1/rooms",
        HttpMethod::Post,
        "201",
        doc,
        &[
            "getRoom",
            "updateRoom",
            "deleteRoom",
            "joinRoom",
            "listCameras",
            "createCamera",
        ],
    );
    created("/v1/images", HttpMethod::Post, "201", doc, &["getImage"]);
    // A camera is reached by its room's id and its own.
    let camera = doc
        .paths
        .paths
        .get_mut("/v1/rooms/{id}/cameras")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.responses.responses.get_mut("201"));
    if let Some(RefOr::T(response)) = camera {
        for target in ["getCamera", "updateCamera", "deleteCamera"] {
            let link = LinkBuilder::new()
                .operation_id(target)
                .parameter("id", "$response.body#/room")
                .parameter("camera", "$response.body#/id")
                .build();
            response.links.insert(target.to_owned(), RefOr::T(link));
        }
    }
}

/// PATCH needs at least one field (utoipa 5 writes `min_properties` as `maxProperties`).
fn room_change_needs_a_field(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    for change in ["RoomChange", "CameraChange"] {
        if let Some(RefOr::T(Schema::Object(o))) = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut(change))
        {
            o.max_properties = None;
            o.min_properties = Some(1);
        }
    }
}

/// Paths that touch neither PostgreSQL nor Firestore (no 503).
const STATIC_PATHS: [&str; 4] = [
    "/healthz",
    "/openapi.json",
    "/.well-known/jwks.json",
    "/v1/config",
];

struct Common;

fn problem(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn add(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| problem(description));
}

fn reads_json(body: Option<&RequestBody>) -> bool {
    body.is_some_and(|b| b.content.contains_key("application/json"))
}

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fsk_… (an API key from `firesfu apikey create`)")
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            for method in [
                HttpMethod::Get,
                HttpMethod::Post,
                HttpMethod::Put,
                HttpMethod::Patch,
                HttpMethod::Delete,
            ] {
                let op = match method {
                    HttpMethod::Get => item.get.as_mut(),
                    HttpMethod::Post => item.post.as_mut(),
                    HttpMethod::Put => item.put.as_mut(),
                    HttpMethod::Patch => item.patch.as_mut(),
                    HttpMethod::Delete => item.delete.as_mut(),
                    _ => None,
                };
                let Some(op) = op else { continue };
                let by_key = op.security.as_ref().is_some_and(|s| {
                    serde_json::to_value(s).is_ok_and(|v| v.to_string().contains("apiKey"))
                });
                if by_key {
                    add(op, 401, "No API key, or one unknown or revoked");
                    add(op, 403, "The API key lacks the scope (`missing-scope`)");
                } else if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(op, 401, "No valid access token");
                }
                if reads_json(op.request_body.as_ref()) {
                    add(op, 400, "A field is missing, unknown, or not valid");
                    add(op, 413, "The body is too large");
                    add(op, 415, "The body is not `application/json`");
                }
                if path.contains('{') {
                    add(op, 404, "No such resource");
                }
                if !STATIC_PATHS.contains(&path.as_str()) {
                    add(
                        op,
                        503,
                        "PostgreSQL or Firestore is unreachable, or the server is at capacity; see `Retry-After`",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[test]
    fn every_referenced_schema_exists_and_bodies_refuse_unknown_fields() {
        let (_, doc) = super::super::api_router_for_docs();
        let doc: Value = super::to_json(&doc);
        assert_eq!(
            doc["paths"]["/v1/rooms"]["post"]["responses"]["201"]["links"]["getRoom"]["operationId"],
            "getRoom"
        );
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"].get(&name).is_some(),
                "{name} missing"
            );
        }
        for body in [
            "Credentials",
            "NewRoom",
            "RoomChange",
            "NewCamera",
            "CameraChange",
            "JoinRequest",
            "BridgeRequest",
        ] {
            assert_eq!(
                doc["components"]["schemas"][body]["additionalProperties"],
                Value::Bool(false),
                "{body}"
            );
        }
        // Bearer routes document 401; JSON bodies 400, 413 and 415.
        let create = &doc["paths"]["/v1/rooms"]["post"]["responses"];
        for status in ["201", "400", "401", "413", "415", "503"] {
            assert!(
                create.get(status).is_some(),
                "POST /v1/rooms lacks {status}"
            );
        }
        assert!(
            doc["paths"]["/healthz"]["get"]["responses"]
                .get("503")
                .is_none()
        );
        // Cameras: reached from their room, their fields say what is refused.
        let created = &doc["paths"]["/v1/rooms/{id}/cameras"]["post"]["responses"];
        let link = &created["201"]["links"]["updateCamera"]["parameters"];
        assert_eq!(link["camera"], "$response.body#/id");
        assert_eq!(link["id"], "$response.body#/room");
        assert!(created.get("409").is_some() && created.get("403").is_some());
        let schemas = &doc["components"]["schemas"];
        let new = &schemas["NewCamera"]["properties"];
        assert_eq!(
            new["url"]["pattern"],
            super::super::camera_input::URL_PATTERN
        );
        assert_eq!(new["url"]["maxLength"], 2048);
        assert!(new["name"]["pattern"].is_string());
        assert_eq!(schemas["CameraChange"]["minProperties"], 1);
        let change = &schemas["CameraChange"]["properties"];
        for field in ["username", "password"] {
            assert!(
                change[field]["type"].to_string().contains("null"),
                "{field}"
            );
        }
        for field in ["name", "url", "enabled"] {
            assert!(
                !change[field].to_string().contains("null"),
                "{field}: {}",
                change[field]
            );
        }
        let shown = schemas["Camera"]["properties"].as_object().unwrap();
        assert!(
            !shown.contains_key("password") && !shown.contains_key("username"),
            "a camera never shows its credentials"
        );
    }
}
