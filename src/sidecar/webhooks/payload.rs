//! The JSON body of a webhook (pure), in the Standard Webhooks shape: `type`, `timestamp`
//! (RFC 3339, when it happened) and `data` (the room, who saw it, its per-source sequence and
//! the event's own fields, camelCase). docs/sidecar.md lists every type and field.

use serde_json::{Value, json};

use crate::events::proto::{Event, Participant, Track};
use crate::events::{Kind, type_name};

fn participant(p: &Option<Participant>) -> Value {
    let p = p.clone().unwrap_or_default();
    json!({
        "sessionId": p.session_id,
        "displayName": p.display_name,
        "uid": (!p.uid.is_empty()).then_some(p.uid),
        "instance": p.instance_id,
    })
}

fn track(t: &Option<Track>) -> Value {
    let t = t.clone().unwrap_or_default();
    json!({"mid": t.mid, "kind": t.kind, "source": t.source})
}

/// `None` for an event without a kind (a newer sender's kind this build does not know).
pub fn body(event: &Event) -> Option<(&'static str, String)> {
    let kind = event.kind.as_ref()?;
    let mut data = json!({
        "eventId": event.id,
        "room": event.room_id,
        "source": event.source,
        "sequence": event.sequence,
    });
    let fields = match kind {
        Kind::RoomStarted(k) => json!({"instance": k.instance_id}),
        Kind::RoomFinished(k) => json!({"instance": k.instance_id, "durationMs": k.duration_ms}),
        Kind::ParticipantJoined(k) => json!({"participant": participant(&k.participant)}),
        Kind::ParticipantLeft(k) => json!({
            "participant": participant(&k.participant),
            "reason": k.reason,
            "durationMs": k.duration_ms,
        }),
        Kind::TrackPublished(k) => json!({
            "participant": participant(&k.participant),
            "track": track(&k.track),
        }),
        Kind::TrackUnpublished(k) => json!({
            "participant": participant(&k.participant),
            "track": track(&k.track),
        }),
        Kind::CameraChanged(k) => json!({
            "camera": {"id": k.camera_id, "name": k.name},
            "state": k.state,
            "error": (!k.error_code.is_empty())
                .then(|| json!({"code": k.error_code, "message": k.error_message})),
            "instance": k.instance_id,
        }),
        Kind::RoomMoved(k) => json!({
            "from": k.from_instance_id,
            "to": k.to_instance_id,
            "reason": k.reason,
            "epoch": k.epoch,
        }),
    };
    if let (Some(data), Value::Object(fields)) = (data.as_object_mut(), fields) {
        data.extend(fields);
    }
    let timestamp = chrono::DateTime::from_timestamp_millis(event.at_unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = json!({"type": type_name(kind), "timestamp": timestamp, "data": data});
    Some((type_name(kind), body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::proto::ParticipantLeft;

    #[test]
    fn a_leave_reads_as_documented() {
        let event = Event {
            id: "abc".into(),
            room_id: "r1".into(),
            at_unix_ms: 1_764_000_000_123,
            source: "i1".into(),
            sequence: 4,
            kind: Some(Kind::ParticipantLeft(ParticipantLeft {
                participant: Some(Participant {
                    session_id: "s1".into(),
                    display_name: "Ann".into(),
                    uid: String::new(),
                    instance_id: "i1".into(),
                }),
                reason: "peer-timeout".into(),
                duration_ms: 61_000,
            })),
        };
        let (kind, body) = body(&event).unwrap();
        assert_eq!(kind, "participant.left");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"type": "participant.left", "timestamp": "2025-11-24T16:00:00.123Z",
                   "data": {"eventId": "abc", "room": "r1", "source": "i1", "sequence": 4,
                            "participant": {"sessionId": "s1", "displayName": "Ann", "uid": null, "instance": "i1"},
                            "reason": "peer-timeout", "durationMs": 61_000}})
        );
        assert!(super::body(&Event::default()).is_none());
    }
}
