//! Whether a room's call began on another instance: a room the monitor moved here a moment
//! ago (its old instance died or drains) has people re-joining an ongoing call, which gets no
//! second `room_started` (see `events::calls`).

use std::time::SystemTime;

use serde_json::Value;

use super::Store;
use crate::docdb::{self, meter};
use crate::events::publish::RoomOrigin;
use crate::signalling::protocol::ROOMS;

/// How long after a move the room's first join here continues the call.
pub const MOVE_WINDOW_MS: i64 = 120_000;

/// Pure: the room document says it moved to `me` within [`MOVE_WINDOW_MS`] before `now_ms`.
pub fn moved_in_recently(room: &Value, me: &str, now_ms: i64) -> bool {
    let Some(a) = room.get("assignment") else {
        return false;
    };
    let moved = a
        .get("reason")
        .and_then(Value::as_str)
        .is_some_and(|r| r != "new");
    let at_ms = a
        .get("assignedAt")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    moved
        && a.get("instance").and_then(Value::as_str) == Some(me)
        && at_ms.is_some_and(|at| (0..MOVE_WINDOW_MS).contains(&(now_ms - at)))
}

impl RoomOrigin for std::sync::Arc<Store> {
    async fn moved_in(&self, room: &str) -> bool {
        if !self.placement() {
            return false;
        }
        let read = docdb::timed(
            self.db
                .fluent()
                .select()
                .by_id_in(ROOMS)
                .obj::<Value>()
                .one(room),
        )
        .await;
        meter::read(1);
        match read {
            Ok(Some(doc)) => moved_in_recently(
                &doc,
                &self.instance,
                crate::events::unix_ms(SystemTime::now()),
            ),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(
                    room,
                    "cannot read the room to tell a new call from a moved one: {e}"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_recent_move_to_this_instance_continues_a_call() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:01:00Z")
            .unwrap()
            .timestamp_millis();
        let room = |instance: &str, reason: &str, at: &str| json!({"assignment": {"instance": instance, "epoch": 2, "reason": reason, "assignedAt": at}});
        assert!(moved_in_recently(
            &room("b", "instance-dead", "2026-12-01T10:00:30Z"),
            "b",
            now
        ));
        assert!(!moved_in_recently(
            &room("b", "new", "2026-12-01T10:00:30Z"),
            "b",
            now
        ));
        assert!(!moved_in_recently(
            &room("a", "instance-draining", "2026-12-01T10:00:30Z"),
            "b",
            now
        ));
        assert!(!moved_in_recently(
            &room("b", "instance-draining", "2026-12-01T09:50:00Z"),
            "b",
            now
        ));
        assert!(!moved_in_recently(&json!({"name": "x"}), "b", now));
    }
}
