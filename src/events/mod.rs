//! What happens in rooms, for applications: participants join and leave, tracks come and go,
//! calls start and finish, rooms move. Session tasks and the monitor report [`Happening`]s to an
//! [`Emitter`], which never blocks them (a full queue drops and counts); [`calls`] (pure) turns
//! a broadcast instance's happenings into events with the room's call around them; [`publish`]
//! puts them on the events topic (Pub/Sub, ordering key = room), where
//! `sidecar::webhooks` picks them up.

pub mod calls;
pub mod publish;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

/// The event messages (`proto/firesfu/events/v1/event.proto`).
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/firesfu.events.v1.rs"));
}

pub use proto::event::Kind;

/// Something that happened in a room, as its witness reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Happening {
    pub room: String,
    pub at: SystemTime,
    pub kind: Kind,
}

/// How many happenings wait for Pub/Sub at most before new ones are dropped (and counted).
pub const QUEUE: usize = 8192;

/// Where happenings go; a disabled emitter (events off) drops them silently.
#[derive(Clone, Default)]
pub struct Emitter {
    tx: Option<mpsc::Sender<Happening>>,
    dropped: Arc<AtomicU64>,
}

impl Emitter {
    pub fn disabled() -> Emitter {
        Emitter::default()
    }

    pub fn channel() -> (Emitter, mpsc::Receiver<Happening>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Emitter {
                tx: Some(tx),
                dropped: Arc::default(),
            },
            rx,
        )
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a happening; never waits.
    pub fn emit(&self, room: &str, kind: Kind) {
        let Some(tx) = &self.tx else { return };
        let happening = Happening {
            room: room.to_owned(),
            at: SystemTime::now(),
            kind,
        };
        if tx.try_send(happening).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = n,
                    "events are not published fast enough: an event was dropped"
                );
            }
        }
    }

    /// Happenings dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Every event type, as [`type_name`] names them.
pub const TYPES: [&str; 8] = [
    "room.started",
    "room.finished",
    "participant.joined",
    "participant.left",
    "track.published",
    "track.unpublished",
    "room.moved",
    "camera.changed",
];

/// The name of an event's kind in webhooks (`type`) and logs.
pub fn type_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::RoomStarted(_) => "room.started",
        Kind::RoomFinished(_) => "room.finished",
        Kind::ParticipantJoined(_) => "participant.joined",
        Kind::ParticipantLeft(_) => "participant.left",
        Kind::TrackPublished(_) => "track.published",
        Kind::TrackUnpublished(_) => "track.unpublished",
        Kind::RoomMoved(_) => "room.moved",
        Kind::CameraChanged(_) => "camera.changed",
    }
}

/// A new event id: 128 random bits, base32 (lower case, no padding).
pub fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits: u128 = rand::random();
    (0..26)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Pub/Sub attributes every event message carries, so that subscribers can filter on them
/// without decoding.
pub fn attributes(event: &proto::Event) -> [(&'static str, String); 2] {
    [
        (
            "type",
            event.kind.as_ref().map(type_name).unwrap_or("").to_owned(),
        ),
        ("room", event.room_id.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_26_url_safe_characters_and_differ() {
        let a = new_id();
        assert_eq!(a.len(), 26);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(a, new_id());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (emitter, mut rx) = Emitter::channel();
        for _ in 0..QUEUE + 3 {
            emitter.emit("r", Kind::RoomStarted(proto::RoomStarted::default()));
        }
        assert_eq!(emitter.dropped(), 3);
        assert_eq!(rx.recv().await.unwrap().room, "r");
        Emitter::disabled().emit("r", Kind::RoomStarted(proto::RoomStarted::default()));
    }
}
