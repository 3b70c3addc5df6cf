//! The OpenAPI 3 description of every route, served at `/openapi.json`. `ROUTES` is the one
//! list of routes; the tests call each of them on a live sidecar (and check that a path not in
//! it is a 404 problem), so the document cannot drift from the router unnoticed.

use axum::Json;
use serde_json::{Map, Value, json};

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: bool,
    pub request: Option<&'static str>,
    /// (status, schema or "" for no body)
    pub responses: &'static [(u16, &'static str)],
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    request: Option<&'static str>,
    responses: &'static [(u16, &'static str)],
) -> Route {
    Route {
        method,
        path,
        summary,
        auth,
        request,
        responses,
    }
}

pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/healthz",
        "The process is up",
        false,
        None,
        &[(200, "")],
    ),
    route(
        "get",
        "/readyz",
        "The database is reachable",
        false,
        None,
        &[(200, ""), (503, "Problem")],
    ),
    route(
        "get",
        "/openapi.json",
        "This document",
        false,
        None,
        &[(200, "")],
    ),
    route(
        "get",
        "/.well-known/jwks.json",
        "Public keys verifying join tokens",
        false,
        None,
        &[(200, "Jwks")],
    ),
    route(
        "post",
        "/v1/accounts",
        "Register",
        false,
        Some("Credentials"),
        &[(201, "User"), (400, "Problem"), (409, "Problem")],
    ),
    route(
        "post",
        "/v1/sessions",
        "Log in (returns an access token)",
        false,
        Some("Credentials"),
        &[(200, "Login"), (401, "Problem"), (429, "Problem")],
    ),
    route(
        "delete",
        "/v1/sessions/current",
        "Log out (revokes the access token)",
        true,
        None,
        &[(204, ""), (401, "Problem")],
    ),
    route(
        "get",
        "/v1/me",
        "The logged-in user",
        true,
        None,
        &[(200, "User"), (401, "Problem")],
    ),
    route(
        "delete",
        "/v1/me",
        "Erase the account, its rooms and its Firestore documents",
        true,
        None,
        &[(204, ""), (401, "Problem"), (503, "Problem")],
    ),
    route(
        "get",
        "/v1/images",
        "Seeded images and your uploads",
        true,
        None,
        &[(200, "ImageList"), (401, "Problem")],
    ),
    route(
        "post",
        "/v1/images",
        "Upload an image (raw PNG, JPEG or WebP body, ≤ 512 KiB, `?name=`)",
        true,
        Some("Binary"),
        &[(201, "Image"), (413, "Problem"), (415, "Problem")],
    ),
    route(
        "get",
        "/v1/images/{id}",
        "An image's bytes",
        false,
        None,
        &[(200, ""), (404, "Problem")],
    ),
    route(
        "get",
        "/v1/rooms",
        "Every room with its live participant count",
        true,
        None,
        &[(200, "RoomList"), (401, "Problem")],
    ),
    route(
        "post",
        "/v1/rooms",
        "Create a room",
        true,
        Some("NewRoom"),
        &[(201, "Room"), (400, "Problem")],
    ),
    route(
        "get",
        "/v1/rooms/{id}",
        "A room",
        true,
        None,
        &[(200, "Room"), (404, "Problem")],
    ),
    route(
        "patch",
        "/v1/rooms/{id}",
        "Rename a room or change its image (owner only)",
        true,
        Some("RoomChange"),
        &[(200, "Room"), (403, "Problem"), (404, "Problem")],
    ),
    route(
        "delete",
        "/v1/rooms/{id}",
        "Delete a room (owner only)",
        true,
        None,
        &[(204, ""), (403, "Problem"), (404, "Problem")],
    ),
    route(
        "post",
        "/v1/rooms/{id}/join",
        "A join token for the room",
        true,
        Some("JoinRequest"),
        &[(200, "Join"), (404, "Problem")],
    ),
    route(
        "post",
        "/v1/bridge/join",
        "Join through an external identity token",
        false,
        Some("BridgeRequest"),
        &[(200, "Join"), (401, "Problem"), (404, "Problem")],
    ),
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    json!({
        "Problem": {"type": "object", "description": "RFC 9457 problem details; `type` is `urn:firesfu:problem:<slug>`",
            "properties": {"type": string, "title": string, "status": {"type": "integer"}, "detail": string},
            "required": ["type", "title", "status"]},
        "Credentials": {"type": "object", "properties": {"username": {"type": "string", "minLength": 3, "maxLength": 32},
            "password": {"type": "string", "minLength": 10, "maxLength": 256}}, "required": ["username", "password"]},
        "User": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "username": string, "firebaseUid": string}},
        "Login": {"type": "object", "properties": {"accessToken": string, "tokenType": {"const": "Bearer"},
            "expiresIn": {"type": "integer"}, "user": schema_ref("User")}},
        "Image": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "name": string,
            "contentType": string, "seeded": {"type": "boolean"}, "url": string}},
        "ImageList": {"type": "object", "properties": {"images": {"type": "array", "items": schema_ref("Image")}}},
        "Binary": {"type": "string", "format": "binary"},
        "Room": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "name": string,
            "imageId": {"type": ["string", "null"]}, "imageUrl": {"type": ["string", "null"]},
            "owner": {"type": "object", "properties": {"id": string, "username": string}},
            "participants": {"type": "integer"}, "createdAt": {"type": "string", "format": "date-time"}}},
        "RoomList": {"type": "object", "properties": {"rooms": {"type": "array", "items": schema_ref("Room")}}},
        "NewRoom": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 64},
            "imageId": {"type": ["string", "null"], "format": "uuid"}}, "required": ["name"]},
        "RoomChange": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 64},
            "imageId": {"type": ["string", "null"], "format": "uuid"}}},
        "JoinRequest": {"type": "object", "properties": {"displayName": string, "publish": {"type": "boolean"}, "subscribe": {"type": "boolean"}}},
        "Join": {"type": "object", "description": "Write `token` into the session document (docs/signalling.md).",
            "properties": {"roomId": string, "token": string, "expiresAt": {"type": "integer"}, "displayName": string,
            "grants": {"type": "object", "properties": {"publish": {"type": "boolean"}, "subscribe": {"type": "boolean"}}},
            "sessions": string,
            "firebase": {"type": "object", "description": "`customToken` for signInWithCustomToken, or `emulator: true` with the mock-token uid",
                "properties": {"uid": string, "customToken": string, "emulator": {"type": "boolean"}}}}},
        "BridgeRequest": {"type": "object", "properties": {"token": string}, "required": ["token"]},
        "Jwks": {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}},
        "PublicConfig": {"type": "object", "properties": {
            "firebase": {"type": "object", "properties": {"projectId": string, "apiKey": string, "authDomain": {"type": ["string", "null"]}}},
            "firestoreEmulator": {"type": ["string", "null"], "description": "host:port of the Firestore emulator (development)"}}},
    })
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut responses = Map::new();
        for (status, schema) in r.responses {
            let mut response = json!({"description": status.to_string()});
            if !schema.is_empty() {
                let media = if *schema == "Problem" {
                    "application/problem+json"
                } else {
                    "application/json"
                };
                response["content"] = json!({ media: {"schema": schema_ref(schema)} });
            }
            responses.insert(status.to_string(), response);
        }
        let mut op = json!({"summary": r.summary, "responses": responses});
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        }
        if r.path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        if let Some(request) = r.request {
            let media = if request == "Binary" {
                "image/png"
            } else {
                "application/json"
            };
            op["requestBody"] = json!({"content": { media: {"schema": schema_ref(request)} }});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "firesfu sidecar", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Users, rooms, room images and join tokens for firesfu."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_schema_exists() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"].get(&name).is_some(),
                "{name} missing"
            );
        }
        assert_eq!(doc["paths"]["/v1/rooms/{id}"].as_object().unwrap().len(), 3);
    }
}
