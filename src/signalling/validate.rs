//! Checking a session document written by a client, field by field, so that every mistake
//! comes back as a specific `error.code` with a message naming the field.

use std::collections::BTreeMap;

use serde_json::Value;

use super::protocol::{
    ErrorCode, MAX_DISPLAY_NAME_CHARS, MAX_TOKEN_BYTES, PROTOCOL_VERSION, SessionError,
};
use crate::media::offer::MAX_SDP_BYTES;
use crate::media::{TrackSource, Watch};

/// A client's offer, once its document passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRequest {
    pub display_name: String,
    pub uid: Option<String>,
    pub token: Option<String>,
    pub sdp: String,
    pub revision: i64,
    /// `sources`: what the offer's published m-lines carry (screen shares), by mid.
    pub sources: BTreeMap<String, TrackSource>,
    /// `watch`: a viewer session, receiving only this participant (or the presenter).
    pub watch: Option<Watch>,
}

/// Entries `sources` may have (one per m-line at most; the m-line limit is lower).
pub const MAX_SOURCES: usize = 64;

fn invalid(message: impl Into<String>) -> SessionError {
    SessionError::new(ErrorCode::InvalidDocument, message)
}

/// An integer field; Firestore clients may store whole numbers as doubles.
pub fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

pub fn validate_offer(doc: &Value, require_token: bool) -> Result<OfferRequest, SessionError> {
    let version = doc
        .get("v")
        .ok_or_else(|| invalid("field `v` (protocol version) is missing"))?;
    let version = as_integer(version).ok_or_else(|| invalid("field `v` must be an integer (1)"))?;
    if version != PROTOCOL_VERSION {
        return Err(SessionError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
            ),
        ));
    }

    let display_name = match doc.get("displayName") {
        Some(Value::String(s)) => crate::text::label("displayName", s, MAX_DISPLAY_NAME_CHARS)
            .map_err(|e| invalid(e.to_string()))?,
        Some(_) => return Err(invalid("field `displayName` must be a string")),
        None => return Err(invalid("field `displayName` is missing")),
    };

    let uid = match doc.get("uid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("field `uid` must be a string")),
    };

    let token = match doc.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_TOKEN_BYTES => {
            return Err(invalid(format!(
                "field `token` is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("field `token` must be a string or null")),
    };
    if require_token && token.is_none() {
        return Err(SessionError::new(
            ErrorCode::TokenRequired,
            "this server admits only sessions with a join token (field `token`)",
        ));
    }

    let offer = match doc.get("offer") {
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid("field `offer` must be a map {sdp, revision}")),
        None => return Err(invalid("field `offer` is missing")),
    };
    let sdp = match offer.get("sdp") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid("field `offer.sdp` must be a string")),
        None => return Err(invalid("field `offer.sdp` is missing")),
    };
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SessionError::new(
            ErrorCode::SdpTooLarge,
            format!(
                "`offer.sdp` is {} bytes; the limit is {MAX_SDP_BYTES}",
                sdp.len()
            ),
        ));
    }
    let revision = offer
        .get("revision")
        .ok_or_else(|| invalid("field `offer.revision` is missing"))?;
    let revision = as_integer(revision)
        .filter(|r| *r >= 1)
        .ok_or_else(|| invalid("field `offer.revision` must be an integer ≥ 1"))?;

    Ok(OfferRequest {
        display_name,
        uid,
        token,
        sdp: sdp.clone(),
        revision,
        sources: sources(doc.get("sources"))?,
        watch: watch(doc.get("watch"))?,
    })
}

/// `watch`: `"presenter"` or the session id of a participant of the room.
fn watch(value: Option<&Value>) -> Result<Option<Watch>, SessionError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= MAX_WATCH_BYTES && !s.contains('/') =>
        {
            Ok(Some(Watch::parse(s)))
        }
        Some(_) => Err(invalid(format!(
            "field `watch` must be \"presenter\" or a session id (1–{MAX_WATCH_BYTES} bytes, no `/`)"
        ))),
    }
}

/// The longest `watch` (a Firestore document id is at most 1500 bytes; ours are far shorter).
pub const MAX_WATCH_BYTES: usize = 128;

/// `sources`: a map from mid to one of `camera`, `microphone`, `screen`, `screen-audio`.
fn sources(value: Option<&Value>) -> Result<BTreeMap<String, TrackSource>, SessionError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid("field `sources` must be a map from mid to source")),
    };
    if map.len() > MAX_SOURCES {
        return Err(invalid(format!(
            "field `sources` has {} entries; the limit is {MAX_SOURCES}",
            map.len()
        )));
    }
    let names = || {
        TrackSource::ALL
            .iter()
            .map(|s| format!("\"{}\"", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    map.iter()
        .map(|(mid, source)| {
            let parsed = source
                .as_str()
                .and_then(TrackSource::parse)
                .ok_or_else(|| {
                    invalid(format!(
                        "`sources[{:?}]` must be one of {}",
                        mid.chars().take(32).collect::<String>(),
                        names()
                    ))
                })?;
            Ok((mid.clone(), parsed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "v": 1,
            "displayName": " Ada ",
            "uid": "u1",
            "token": null,
            "offer": {"sdp": "v=0\r\n", "revision": 1},
            "state": "offered"
        })
    }

    fn code(doc: Value) -> ErrorCode {
        validate_offer(&doc, false).unwrap_err().code
    }

    #[test]
    fn reads_whom_a_viewer_watches() {
        assert_eq!(validate_offer(&good(), false).unwrap().watch, None);
        let mut doc = good();
        doc["watch"] = json!("presenter");
        assert_eq!(
            validate_offer(&doc, false).unwrap().watch,
            Some(Watch::Presenter)
        );
        doc["watch"] = json!("AbC123");
        let watch = validate_offer(&doc, false).unwrap().watch;
        assert_eq!(watch, Some(Watch::Session("AbC123".into())));
        for bad in [json!(""), json!(3), json!("a/b"), json!("x".repeat(129))] {
            doc["watch"] = bad;
            let e = validate_offer(&doc, false).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidDocument);
            assert!(e.message.contains("`watch`"), "{}", e.message);
        }
    }

    #[test]
    fn reads_the_sources_of_published_tracks() {
        let mut doc = good();
        doc["sources"] = json!({"2": "screen", "3": "screen-audio"});
        let req = validate_offer(&doc, false).unwrap();
        assert_eq!(req.sources.get("2"), Some(&TrackSource::Screen));
        assert_eq!(req.sources.get("3"), Some(&TrackSource::ScreenAudio));
        assert!(validate_offer(&good(), false).unwrap().sources.is_empty());
        for bad in [json!("screen"), json!({"2": "window"}), json!({"2": 1})] {
            let mut doc = good();
            doc["sources"] = bad;
            assert_eq!(code(doc), ErrorCode::InvalidDocument);
        }
        let mut doc = good();
        doc["sources"] = Value::Object((0..65).map(|i| (i.to_string(), json!("camera"))).collect());
        assert_eq!(code(doc), ErrorCode::InvalidDocument);
    }

    #[test]
    fn accepts_a_well_formed_document() {
        let req = validate_offer(&good(), false).unwrap();
        assert_eq!(req.display_name, "Ada");
        assert_eq!(req.revision, 1);
        assert_eq!(req.token, None);
        assert_eq!(req.uid.as_deref(), Some("u1"));
    }

    #[test]
    fn whole_doubles_count_as_integers() {
        let mut doc = good();
        doc["offer"]["revision"] = json!(2.0);
        doc["v"] = json!(1.0);
        assert_eq!(validate_offer(&doc, false).unwrap().revision, 2);
    }

    #[test]
    fn names_each_missing_or_mistyped_field() {
        for (field, value) in [
            ("v", Value::Null),
            ("displayName", json!(42)),
            ("displayName", json!("   ")),
            ("token", json!(7)),
            ("offer", json!("v=0")),
            ("uid", json!(false)),
        ] {
            let mut doc = good();
            doc[field] = value;
            let err = validate_offer(&doc, false).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidDocument, "{field}");
            assert!(err.message.contains(field), "{field}: {}", err.message);
        }
        let mut doc = good();
        doc.as_object_mut().unwrap().remove("offer");
        assert_eq!(code(doc), ErrorCode::InvalidDocument);
        let mut doc = good();
        doc["offer"]["revision"] = json!(0);
        assert_eq!(code(doc), ErrorCode::InvalidDocument);
        let mut doc = good();
        doc["offer"]["revision"] = json!(1.5);
        assert_eq!(code(doc), ErrorCode::InvalidDocument);
        let mut doc = good();
        doc["offer"]["sdp"] = json!(["v=0"]);
        assert_eq!(code(doc), ErrorCode::InvalidDocument);
        let mut doc = good();
        doc["displayName"] = json!("x".repeat(65));
        assert_eq!(code(doc), ErrorCode::InvalidDocument);
    }

    #[test]
    fn refuses_display_names_that_would_spoof_other_interfaces() {
        for name in [
            "Ada\u{0}",
            "bell\u{7}",
            "\u{202E}nimda",
            "\u{FEFF}Bob",
            "a\u{2067}b",
        ] {
            let mut doc = good();
            doc["displayName"] = json!(name);
            let err = validate_offer(&doc, false).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidDocument, "{name:?}");
            assert!(err.message.contains("displayName"), "{}", err.message);
        }
        let mut doc = good();
        doc["displayName"] = json!("Zoë 👩🏽‍💻");
        assert_eq!(validate_offer(&doc, false).unwrap().display_name, "Zoë 👩🏽‍💻");
    }

    #[test]
    fn distinguishes_version_size_and_token_errors() {
        let mut doc = good();
        doc["v"] = json!(2);
        assert_eq!(code(doc), ErrorCode::UnsupportedVersion);
        let mut doc = good();
        doc["offer"]["sdp"] = json!("v".repeat(MAX_SDP_BYTES + 1));
        assert_eq!(code(doc), ErrorCode::SdpTooLarge);
        assert_eq!(
            validate_offer(&good(), true).unwrap_err().code,
            ErrorCode::TokenRequired
        );
        let mut doc = good();
        doc["token"] = json!("abc");
        assert_eq!(
            validate_offer(&doc, true).unwrap().token.as_deref(),
            Some("abc")
        );
    }
}
