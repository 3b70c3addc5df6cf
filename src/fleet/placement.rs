//! Which instance takes a room: the least loaded one that stays within its limits. Pure.
//!
//! An instance's load is what it reported (participants, published tracks), with the rooms
//! count taken from the assignments (an empty room occupies its instance too), plus whatever
//! this planning pass already gave it — so a burst of new rooms spreads instead of piling onto
//! the instance that looked emptiest a moment ago.

use super::{Limits, Load};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub limits: Limits,
    pub load: Load,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no broadcast instance is alive and serving")]
    NoInstances,
    #[error("every serving instance is at its limits ({0} considered)")]
    FleetFull(usize),
}

/// Whether one more room fits: rooms strictly below their limit; participants and tracks
/// below theirs (a full instance takes no new room even though an empty room adds neither).
pub fn fits(limits: &Limits, load: &Load) -> bool {
    let under = |value: u32, max: u32| max == 0 || value < max;
    under(load.rooms, limits.max_rooms)
        && under(load.participants, limits.max_participants)
        && under(load.published_tracks, limits.max_published_tracks)
}

/// How full an instance is, 0..1, by its most constrained limit; instances without limits
/// compare by rooms and then participants.
fn fullness(c: &Candidate) -> (u64, u32, u32) {
    let ratio = |value: u32, max: u32| {
        if max == 0 {
            0
        } else {
            (u64::from(value) * 1_000_000) / u64::from(max)
        }
    };
    let most = ratio(c.load.rooms, c.limits.max_rooms)
        .max(ratio(c.load.participants, c.limits.max_participants))
        .max(ratio(
            c.load.published_tracks,
            c.limits.max_published_tracks,
        ));
    (most, c.load.rooms, c.load.participants)
}

/// Picks the instance for a new room. `candidates` must be in a stable order (ties go to the
/// first).
pub fn choose(candidates: &[Candidate]) -> Result<&Candidate, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoInstances);
    }
    candidates
        .iter()
        .filter(|c| fits(&c.limits, &c.load))
        .min_by_key(|c| fullness(c))
        .ok_or(PlacementError::FleetFull(candidates.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, max_rooms: u32, rooms: u32, participants: u32) -> Candidate {
        Candidate {
            id: id.into(),
            limits: Limits {
                max_rooms,
                ..Default::default()
            },
            load: Load {
                rooms,
                participants,
                published_tracks: 0,
            },
        }
    }

    #[test]
    fn placement_table() {
        struct Case {
            name: &'static str,
            candidates: Vec<Candidate>,
            want: Result<&'static str, PlacementError>,
        }
        let tracks = |id: &str, max: u32, have: u32| Candidate {
            id: id.into(),
            limits: Limits {
                max_published_tracks: max,
                ..Default::default()
            },
            load: Load {
                rooms: 1,
                participants: 1,
                published_tracks: have,
            },
        };
        let cases = [
            Case {
                name: "no instances",
                candidates: vec![],
                want: Err(PlacementError::NoInstances),
            },
            Case {
                name: "least rooms wins",
                candidates: vec![c("a", 0, 3, 0), c("b", 0, 1, 9)],
                want: Ok("b"),
            },
            Case {
                name: "ties go to the first",
                candidates: vec![c("a", 0, 1, 1), c("b", 0, 1, 1)],
                want: Ok("a"),
            },
            Case {
                name: "relative fullness beats absolute counts",
                candidates: vec![c("small", 2, 1, 0), c("big", 10, 3, 0)],
                want: Ok("big"),
            },
            Case {
                name: "at most 3 rooms per instance",
                candidates: vec![c("a", 3, 3, 0), c("b", 3, 2, 0)],
                want: Ok("b"),
            },
            Case {
                name: "full fleet",
                candidates: vec![c("a", 3, 3, 0), c("b", 1, 1, 0)],
                want: Err(PlacementError::FleetFull(2)),
            },
            Case {
                name: "published-track limit",
                candidates: vec![tracks("a", 4, 4), tracks("b", 4, 3)],
                want: Ok("b"),
            },
            Case {
                name: "participant limit",
                candidates: vec![Candidate {
                    id: "a".into(),
                    limits: Limits {
                        max_participants: 10,
                        ..Default::default()
                    },
                    load: Load {
                        rooms: 1,
                        participants: 10,
                        published_tracks: 0,
                    },
                }],
                want: Err(PlacementError::FleetFull(1)),
            },
        ];
        for case in cases {
            let got = choose(&case.candidates).map(|c| c.id.as_str());
            assert_eq!(got, case.want, "{}", case.name);
        }
    }
}
