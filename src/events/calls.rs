//! A broadcast instance's view of the calls in its rooms (pure): it stamps each happening with
//! the room's next sequence number and puts `room_started` before a room's first join and
//! `room_finished` after its last leave.
//!
//! A move is not the end of a call: when a room's last participants leave because the room
//! moved (`room-moved`) or the instance shuts down (`server-shutdown`), no `room_finished` is
//! made; and the instance the room moved to makes no `room_started` when they join again there
//! (the caller says so: `moved_in`, from the room's assignment).

use std::collections::{HashMap, HashSet};

use super::proto::{Event, RoomFinished, RoomStarted};
use super::{Happening, Kind, unix_ms};

/// Leave reasons after which the call goes on elsewhere.
pub const CALL_GOES_ON: [&str; 2] = ["room-moved", "server-shutdown"];

struct RoomCall {
    participants: HashSet<String>,
    started_ms: i64,
    sequence: u64,
}

pub struct Calls {
    instance: String,
    rooms: HashMap<String, RoomCall>,
}

impl Calls {
    pub fn new(instance: &str) -> Calls {
        Calls {
            instance: instance.to_owned(),
            rooms: HashMap::new(),
        }
    }

    /// Whether applying `h` starts a call here: the caller then learns whether the room just
    /// moved in (and passes it to [`Calls::apply`]).
    pub fn starts_call(&self, h: &Happening) -> bool {
        matches!(h.kind, Kind::ParticipantJoined(_)) && !self.rooms.contains_key(&h.room)
    }

    /// The events `h` makes, in order (ids left empty for the publisher). An event outside
    /// any call here (a camera changing state in an empty room) has sequence 0.
    pub fn apply(&mut self, h: Happening, moved_in: bool) -> Vec<Event> {
        let at_ms = unix_ms(h.at);
        if !matches!(h.kind, Kind::ParticipantJoined(_)) && !self.rooms.contains_key(&h.room) {
            return vec![Event {
                id: String::new(),
                room_id: h.room,
                at_unix_ms: at_ms,
                source: self.instance.clone(),
                sequence: 0,
                kind: Some(h.kind),
            }];
        }
        let mut kinds = Vec::with_capacity(2);
        let call = self.rooms.entry(h.room.clone()).or_insert_with(|| {
            if matches!(h.kind, Kind::ParticipantJoined(_)) && !moved_in {
                kinds.push(Kind::RoomStarted(RoomStarted {
                    instance_id: self.instance.clone(),
                }));
            }
            RoomCall {
                participants: HashSet::new(),
                started_ms: at_ms,
                sequence: 0,
            }
        });
        let mut finished = None;
        match &h.kind {
            Kind::ParticipantJoined(j) => {
                if let Some(p) = &j.participant {
                    call.participants.insert(p.session_id.clone());
                }
            }
            Kind::ParticipantLeft(l) => {
                if let Some(p) = &l.participant {
                    call.participants.remove(&p.session_id);
                }
                if call.participants.is_empty() {
                    finished = Some(!CALL_GOES_ON.contains(&l.reason.as_str()));
                }
            }
            _ => {}
        }
        kinds.push(h.kind);
        if finished == Some(true) {
            kinds.push(Kind::RoomFinished(RoomFinished {
                instance_id: self.instance.clone(),
                duration_ms: (at_ms - call.started_ms).max(0),
            }));
        }
        let events = kinds
            .into_iter()
            .map(|kind| {
                call.sequence += 1;
                Event {
                    id: String::new(),
                    room_id: h.room.clone(),
                    at_unix_ms: at_ms,
                    source: self.instance.clone(),
                    sequence: call.sequence,
                    kind: Some(kind),
                }
            })
            .collect();
        if finished.is_some() || call.participants.is_empty() {
            self.rooms.remove(&h.room);
        }
        events
    }

    /// Rooms with a call on this instance.
    pub fn active(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::events::proto::{
        Participant, ParticipantJoined, ParticipantLeft, Track, TrackPublished,
    };
    use crate::events::type_name;

    fn person(session: &str) -> Option<Participant> {
        Some(Participant {
            session_id: session.into(),
            display_name: session.to_uppercase(),
            ..Default::default()
        })
    }

    fn at(room: &str, secs: u64, kind: Kind) -> Happening {
        Happening {
            room: room.into(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + secs),
            kind,
        }
    }

    fn joined(room: &str, secs: u64, s: &str) -> Happening {
        at(
            room,
            secs,
            Kind::ParticipantJoined(ParticipantJoined {
                participant: person(s),
            }),
        )
    }

    fn left(room: &str, secs: u64, s: &str, reason: &str) -> Happening {
        at(
            room,
            secs,
            Kind::ParticipantLeft(ParticipantLeft {
                participant: person(s),
                reason: reason.into(),
                duration_ms: 0,
            }),
        )
    }

    fn names(events: &[Event]) -> Vec<(&'static str, u64)> {
        events
            .iter()
            .map(|e| (type_name(e.kind.as_ref().unwrap()), e.sequence))
            .collect()
    }

    #[test]
    fn a_call_starts_with_the_first_join_and_finishes_with_the_last_leave() {
        let mut calls = Calls::new("i1");
        let mut all = vec![];
        assert!(calls.starts_call(&joined("r", 0, "a")));
        all.extend(calls.apply(joined("r", 0, "a"), false));
        assert!(!calls.starts_call(&joined("r", 1, "b")));
        all.extend(calls.apply(joined("r", 1, "b"), false));
        let track = Kind::TrackPublished(TrackPublished {
            participant: person("b"),
            track: Some(Track {
                mid: "0".into(),
                kind: "audio".into(),
                source: "microphone".into(),
            }),
        });
        all.extend(calls.apply(at("r", 1, track), false));
        all.extend(calls.apply(left("r", 5, "a", "left"), false));
        all.extend(calls.apply(left("r", 9, "b", "peer-timeout"), false));
        assert_eq!(
            names(&all),
            [
                ("room.started", 1),
                ("participant.joined", 2),
                ("participant.joined", 3),
                ("track.published", 4),
                ("participant.left", 5),
                ("participant.left", 6),
                ("room.finished", 7),
            ]
        );
        let Some(Kind::RoomFinished(f)) = &all[6].kind else {
            panic!()
        };
        assert_eq!((f.duration_ms, f.instance_id.as_str()), (9_000, "i1"));
        assert_eq!(calls.active(), 0);
        // The next call starts again from 1.
        assert_eq!(
            names(&calls.apply(joined("r", 60, "c"), false)),
            [("room.started", 1), ("participant.joined", 2)]
        );
    }

    #[test]
    fn a_move_neither_finishes_nor_starts_the_call() {
        let mut old = Calls::new("i1");
        old.apply(joined("r", 0, "a"), false);
        old.apply(joined("r", 0, "b"), false);
        let out = [
            old.apply(left("r", 5, "a", "room-moved"), false),
            old.apply(left("r", 5, "b", "room-moved"), false),
        ]
        .concat();
        assert_eq!(
            names(&out),
            [("participant.left", 4), ("participant.left", 5)]
        );
        assert_eq!(old.active(), 0);
        let mut new = Calls::new("i2");
        assert_eq!(
            names(&new.apply(joined("r", 6, "a2"), true)),
            [("participant.joined", 1)]
        );
        // Shutting down ends no call either.
        let mut other = Calls::new("i3");
        other.apply(joined("s", 0, "a"), false);
        assert_eq!(
            names(&other.apply(left("s", 1, "a", "server-shutdown"), false)),
            [("participant.left", 3)]
        );
    }

    #[test]
    fn an_event_outside_a_call_has_sequence_0_and_starts_nothing() {
        let mut calls = Calls::new("i1");
        let camera = Kind::CameraChanged(crate::events::proto::CameraChanged {
            camera_id: "c1".into(),
            state: "live".into(),
            ..Default::default()
        });
        let out = calls.apply(at("r", 0, camera), false);
        assert_eq!(names(&out), [("camera.changed", 0)]);
        assert_eq!(calls.active(), 0);
    }

    #[test]
    fn rooms_keep_their_own_sequences() {
        let mut calls = Calls::new("i1");
        calls.apply(joined("r", 0, "a"), false);
        let s = calls.apply(joined("s", 0, "b"), false);
        assert_eq!(s[0].room_id, "s");
        assert_eq!(names(&s), [("room.started", 1), ("participant.joined", 2)]);
        assert_eq!(calls.active(), 2);
    }
}
