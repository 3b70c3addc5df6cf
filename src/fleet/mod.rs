//! The fleet: load reports on Pub/Sub, the fleet table, room placement and `firesfu monitor`.
//!
//! Pure parts take `now` (Unix milliseconds) as an input and are tested with simulated time:
//! [`table`] (which instances are alive, serving, trusted), [`placement`] (which instance takes
//! a room), [`plan`] (what to change in the rooms' assignments), [`lease`] (which monitor
//! writes). I/O lives in [`reporter`] (broadcast side: publishes reports), [`store`] (room
//! assignments in Firestore) and [`monitor`] (the daemon).

pub mod lease;
pub mod monitor;
pub mod placement;
pub mod plan;
pub mod reporter;
pub mod store;
pub mod table;

/// The load-report messages (`proto/firesfu/fleet/v1/load_report.proto`).
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/firesfu.fleet.v1.rs"));
}

/// What an instance carries, in the units its limits are expressed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub rooms: u32,
    pub participants: u32,
    pub published_tracks: u32,
}

/// Per-instance limits; 0 = none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_rooms: u32,
    pub max_participants: u32,
    pub max_published_tracks: u32,
}

impl From<&proto::Capacity> for Limits {
    fn from(c: &proto::Capacity) -> Self {
        Limits {
            max_rooms: c.max_rooms,
            max_participants: c.max_participants,
            max_published_tracks: c.max_published_tracks,
        }
    }
}

pub use crate::signalling::protocol::Assignment;

pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
