//! What the leading monitor changes: every room gets exactly one serving instance; rooms of
//! dead or draining instances move (epoch + 1). Pure: the rooms as Firestore has them, the
//! fleet table and `now` in, a list of actions out.

use std::collections::HashMap;

use super::Assignment;
use super::placement::{Candidate, PlacementError, choose};
use super::table::FleetTable;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomState {
    pub id: String,
    pub assignment: Option<Assignment>,
    /// The room carries a placement error already (no need to write it again).
    pub unplaceable: bool,
    /// When the room last moved between instances (its assignment's `assignedAt` when the
    /// reason is not `new`), Unix milliseconds.
    pub moved_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The room had no instance.
    New,
    /// Its instance stopped reporting.
    InstanceDead,
    /// Its instance is draining.
    InstanceDraining,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::InstanceDead => "instance-dead",
            Reason::InstanceDraining => "instance-draining",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `to` (with `epoch`) if the room still has `previous`.
    Assign {
        room: String,
        to: Assignment,
        previous: Option<Assignment>,
        reason: Reason,
    },
    /// No instance can take the room.
    Unplaceable { room: String, error: PlacementError },
}

pub struct PlanInput<'a> {
    pub rooms: &'a [RoomState],
    pub fleet: &'a FleetTable,
    pub now_ms: i64,
    /// When this monitor started consuming reports: before a staleness has passed, an
    /// instance it has not heard from yet is not presumed dead.
    pub listening_since_ms: i64,
}

pub fn plan(input: &PlanInput<'_>) -> Vec<Action> {
    let PlanInput {
        rooms,
        fleet,
        now_ms,
        listening_since_ms,
    } = *input;
    if !fleet.feed_is_fresh(now_ms) {
        return Vec::new();
    }
    let warmed_up = now_ms - listening_since_ms >= fleet.staleness_ms;
    // Rooms per instance, as assigned (an empty room occupies its instance too).
    let mut assigned: HashMap<&str, u32> = HashMap::new();
    for a in rooms.iter().filter_map(|r| r.assignment.as_ref()) {
        *assigned.entry(a.instance.as_str()).or_default() += 1;
    }
    let mut candidates: Vec<Candidate> = fleet
        .candidates(now_ms)
        .into_iter()
        .map(|i| {
            let mut load = i.load;
            load.rooms = load
                .rooms
                .max(assigned.get(i.id.as_str()).copied().unwrap_or(0));
            Candidate {
                id: i.id.clone(),
                limits: i.limits,
                load,
            }
        })
        .collect();

    let mut actions = Vec::new();
    let mut ordered: Vec<&RoomState> = rooms.iter().collect();
    ordered.sort_by(|a, b| a.id.cmp(&b.id));
    for room in ordered {
        let reason = match &room.assignment {
            None => Reason::New,
            Some(a) => {
                let known = fleet.get(&a.instance).is_some();
                if fleet.is_alive(&a.instance, now_ms) {
                    if fleet.get(&a.instance).is_some_and(|i| i.draining) {
                        Reason::InstanceDraining
                    } else {
                        continue;
                    }
                } else if known {
                    if !fleet.presumed_dead(&a.instance, now_ms) {
                        continue;
                    }
                    Reason::InstanceDead
                } else if warmed_up && !fleet.just_resumed(now_ms) {
                    Reason::InstanceDead
                } else {
                    continue;
                }
            }
        };
        match choose(&candidates) {
            Ok(target) => {
                let id = target.id.clone();
                let epoch = room.assignment.as_ref().map(|a| a.epoch + 1).unwrap_or(1);
                if let Some(c) = candidates.iter_mut().find(|c| c.id == id) {
                    c.load.rooms += 1;
                }
                actions.push(Action::Assign {
                    room: room.id.clone(),
                    to: Assignment {
                        instance: id,
                        epoch,
                    },
                    previous: room.assignment.clone(),
                    reason,
                });
            }
            // A draining instance keeps its rooms until somewhere else can take them.
            Err(_) if reason == Reason::InstanceDraining => {}
            Err(error) => {
                if !room.unplaceable {
                    actions.push(Action::Unplaceable {
                        room: room.id.clone(),
                        error,
                    });
                }
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::proto::Capacity;
    use crate::fleet::table::tests::{report, seen};

    fn room(id: &str, on: Option<(&str, i64)>) -> RoomState {
        RoomState {
            id: id.into(),
            assignment: on.map(|(i, e)| Assignment {
                instance: i.into(),
                epoch: e,
            }),
            unplaceable: false,
            moved_at_ms: None,
        }
    }

    fn targets(actions: &[Action]) -> Vec<(String, String, i64, Reason)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Assign {
                    room, to, reason, ..
                } => Some((room.clone(), to.instance.clone(), to.epoch, *reason)),
                _ => None,
            })
            .collect()
    }

    fn fleet(reports: &[(&str, bool)], at: i64) -> FleetTable {
        let mut t = FleetTable::new(5000);
        for (id, draining) in reports {
            seen(&mut t, report(id, 1, *draining, &[]), at);
        }
        t
    }

    #[test]
    fn new_rooms_spread_over_the_fleet() {
        let t = fleet(&[("a", false), ("b", false)], 0);
        let rooms: Vec<RoomState> = (0..4).map(|i| room(&format!("r{i}"), None)).collect();
        let got = targets(&plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 100,
            listening_since_ms: 0,
        }));
        let on_a = got.iter().filter(|g| g.1 == "a").count();
        assert_eq!((got.len(), on_a), (4, 2), "{got:?}");
        assert!(got.iter().all(|g| g.2 == 1 && g.3 == Reason::New));
    }

    #[test]
    fn rooms_already_placed_count_and_stay_put() {
        let t = fleet(&[("a", false), ("b", false)], 0);
        let rooms = [
            room("r1", Some(("a", 3))),
            room("r2", Some(("a", 1))),
            room("r3", None),
        ];
        let got = targets(&plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 100,
            listening_since_ms: 0,
        }));
        assert_eq!(got, [("r3".to_string(), "b".to_string(), 1, Reason::New)]);
    }

    #[test]
    fn rooms_of_a_dead_instance_move_with_a_new_epoch() {
        let mut t = fleet(&[("a", false), ("b", false)], 0);
        seen(&mut t, report("b", 2, false, &[]), 4000);
        let rooms = [room("r1", Some(("a", 2))), room("r2", Some(("b", 1)))];
        // At 5 s "a" is still alive; at 5.001 s it is not: "b" proves the feed works.
        seen(&mut t, report("b", 3, false, &[]), 5001);
        assert!(
            plan(&PlanInput {
                rooms: &rooms,
                fleet: &t,
                now_ms: 5000,
                listening_since_ms: 0
            })
            .is_empty()
        );
        let got = targets(&plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 5001,
            listening_since_ms: 0,
        }));
        assert_eq!(
            got,
            [("r1".to_string(), "b".to_string(), 3, Reason::InstanceDead)]
        );
    }

    #[test]
    fn a_silence_of_the_feed_kills_nobody_who_reports_again_within_a_staleness() {
        let mut t = fleet(&[("a", false), ("b", false)], 0);
        // The feed goes silent at 0: nobody dies of it, even once the feed is stale.
        assert!(!t.presumed_dead("a", 4_000) && !t.presumed_dead("a", 6_000));
        // After 10 s `b` is heard first; `a` may report a little later.
        seen(&mut t, report("b", 2, false, &[]), 10_000);
        let rooms = [room("r1", Some(("a", 1)))];
        let at = |t: &FleetTable, now_ms| {
            targets(&plan(&PlanInput {
                rooms: &rooms,
                fleet: t,
                now_ms,
                listening_since_ms: 0,
            }))
        };
        assert!(at(&t, 10_100).is_empty(), "{:?}", at(&t, 10_100));
        // Had `a` died meanwhile, a staleness after the feed resumed says so.
        seen(&mut t, report("b", 3, false, &[]), 15_000);
        assert_eq!(
            at(&t, 15_000),
            [("r1".to_string(), "b".to_string(), 2, Reason::InstanceDead)]
        );
    }

    #[test]
    fn an_unknown_instance_is_presumed_dead_only_after_a_staleness_of_listening() {
        let t = fleet(&[("b", false)], 0);
        let rooms = [room("r1", Some(("gone", 1)))];
        let early = PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 4000,
            listening_since_ms: 0,
        };
        assert!(
            plan(&early).is_empty(),
            "a monitor that just started has not heard everyone yet"
        );
        let later = PlanInput {
            now_ms: 5000,
            ..early
        };
        assert_eq!(targets(&plan(&later))[0].3, Reason::InstanceDead);
    }

    #[test]
    fn a_draining_instance_hands_its_rooms_over_or_keeps_them_when_nobody_can_take_them() {
        let t = fleet(&[("a", true), ("b", false)], 0);
        let rooms = [room("r1", Some(("a", 1)))];
        let got = targets(&plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 10,
            listening_since_ms: 0,
        }));
        assert_eq!(
            got,
            [(
                "r1".to_string(),
                "b".to_string(),
                2,
                Reason::InstanceDraining
            )]
        );
        let alone = fleet(&[("a", true)], 0);
        assert!(
            plan(&PlanInput {
                rooms: &rooms,
                fleet: &alone,
                now_ms: 10,
                listening_since_ms: 0
            })
            .is_empty()
        );
    }

    #[test]
    fn a_full_fleet_marks_rooms_unplaceable_once() {
        let mut t = FleetTable::new(5000);
        let mut r = report("a", 1, false, &[]);
        r.capacity = Some(Capacity {
            max_rooms: 1,
            ..Default::default()
        });
        t.observe(&r, 0);
        let mut rooms = vec![room("r1", Some(("a", 1))), room("r2", None)];
        let actions = plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 10,
            listening_since_ms: 0,
        });
        assert_eq!(
            actions,
            [Action::Unplaceable {
                room: "r2".into(),
                error: PlacementError::FleetFull(1)
            }]
        );
        rooms[1].unplaceable = true;
        assert!(
            plan(&PlanInput {
                rooms: &rooms,
                fleet: &t,
                now_ms: 10,
                listening_since_ms: 0
            })
            .is_empty()
        );
    }

    #[test]
    fn no_serving_instance_at_all() {
        let t = fleet(&[("a", true)], 0);
        let rooms = [room("r1", None)];
        let actions = plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 10,
            listening_since_ms: 0,
        });
        assert_eq!(
            actions,
            [Action::Unplaceable {
                room: "r1".into(),
                error: PlacementError::NoInstances
            }]
        );
    }

    #[test]
    fn nothing_moves_while_no_report_arrives_at_all() {
        // Every instance looks stale at 9 s, but so does the feed: the monitor's subscription
        // stalled, not the fleet. Nothing moves, nothing is declared unplaceable.
        let t = fleet(&[("a", false), ("b", false)], 0);
        let rooms = [room("r1", Some(("a", 1))), room("r2", None)];
        assert!(
            plan(&PlanInput {
                rooms: &rooms,
                fleet: &t,
                now_ms: 9000,
                listening_since_ms: 0
            })
            .is_empty()
        );
    }

    #[test]
    fn a_flapping_instance_does_not_get_rooms_back_while_on_probation() {
        let mut t = fleet(&[("a", false), ("b", false)], 0);
        // "a" goes silent; at 6 s its room moves to "b".
        seen(&mut t, report("b", 2, false, &[]), 3000);
        seen(&mut t, report("b", 3, false, &[]), 6000);
        let rooms = [room("r1", Some(("a", 1)))];
        let moved = targets(&plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 6000,
            listening_since_ms: 0,
        }));
        assert_eq!(moved[0].1, "b");
        // "a" is back at 7 s: new rooms still go to "b" until "a" has been up for 10 s.
        seen(&mut t, report("a", 2, false, &[]), 7000);
        seen(&mut t, report("b", 4, false, &[]), 7000);
        let rooms = [room("r1", Some(("b", 2))), room("r2", None)];
        let got = targets(&plan(&PlanInput {
            rooms: &rooms,
            fleet: &t,
            now_ms: 7000,
            listening_since_ms: 0,
        }));
        assert_eq!(got[0].1, "b");
    }
}
