//! The fleet table: the latest report of every instance, and from it which instances are
//! alive (a report younger than the staleness), serving and trusted with new rooms. Pure.

use std::collections::HashMap;

use super::proto::{InstanceState, LoadReport};
use super::{Limits, Load};

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub draining: bool,
    pub limits: Limits,
    /// Reported load (rooms with peers, participants, published tracks).
    pub load: Load,
    pub addresses: Vec<String>,
    last_seen_ms: i64,
    sequence: u64,
    sent_at_ms: i64,
    /// Start of the current run of fresh reports.
    alive_since_ms: i64,
    /// It went stale at least once: it must prove itself before taking new rooms again.
    returned: bool,
}

#[derive(Debug, Clone)]
pub struct FleetTable {
    instances: HashMap<String, Instance>,
    /// When any report last arrived.
    last_report_ms: Option<i64>,
    /// When reports arrived again after a silence longer than the staleness: the silence was
    /// this monitor's (its subscription, Pub/Sub), so no instance is presumed dead for it.
    resumed_ms: Option<i64>,
    /// An instance is alive while its last report is younger than this.
    pub staleness_ms: i64,
    /// An instance that went stale and came back takes no new rooms for this long (a flapping
    /// instance must not keep attracting rooms that are then moved away again).
    pub probation_ms: i64,
}

impl FleetTable {
    pub fn new(staleness_ms: i64) -> Self {
        FleetTable {
            instances: HashMap::new(),
            last_report_ms: None,
            resumed_ms: None,
            staleness_ms,
            probation_ms: 2 * staleness_ms,
        }
    }

    /// Records a report received at `now_ms`. Reports of one process carry increasing
    /// sequence numbers; a late, older one is ignored. A restarted process (sequence back to
    /// a low number but a newer send time) replaces the old entry.
    pub fn observe(&mut self, report: &LoadReport, now_ms: i64) {
        let load = Load {
            rooms: report.rooms.len() as u32,
            participants: report.rooms.iter().map(|r| r.participants).sum(),
            published_tracks: report.rooms.iter().map(|r| r.published_tracks).sum(),
        };
        let limits = report
            .capacity
            .as_ref()
            .map(Limits::from)
            .unwrap_or_default();
        let draining = report.state() == InstanceState::Draining;
        let staleness = self.staleness_ms;
        // A report that spent longer than a staleness on the way (a backlog replayed to a
        // restarted monitor, a stuck queue) says nothing about the instance now. (Clocks of
        // instances and monitors are NTP-synchronised; skew is far below a staleness.)
        if now_ms - report.sent_at_unix_ms > staleness {
            return;
        }
        if self
            .last_report_ms
            .is_some_and(|last| now_ms - last > staleness)
        {
            self.resumed_ms = Some(now_ms);
        }
        self.last_report_ms = Some(now_ms);
        // Stale only because nothing reached this monitor: no flapping, no probation.
        let deaf = self.just_resumed(now_ms);
        match self.instances.get_mut(&report.instance_id) {
            Some(i) => {
                let older = report.sequence <= i.sequence && report.sent_at_unix_ms <= i.sent_at_ms;
                if older {
                    return;
                }
                if now_ms - i.last_seen_ms > staleness {
                    i.alive_since_ms = now_ms;
                    i.returned = !deaf;
                }
                i.draining = draining;
                i.limits = limits;
                i.load = load;
                i.addresses = report.advertised_addresses.clone();
                i.last_seen_ms = now_ms;
                i.sequence = report.sequence;
                i.sent_at_ms = report.sent_at_unix_ms;
            }
            None => {
                self.instances.insert(
                    report.instance_id.clone(),
                    Instance {
                        id: report.instance_id.clone(),
                        draining,
                        limits,
                        load,
                        addresses: report.advertised_addresses.clone(),
                        last_seen_ms: now_ms,
                        sequence: report.sequence,
                        sent_at_ms: report.sent_at_unix_ms,
                        alive_since_ms: now_ms,
                        returned: false,
                    },
                );
            }
        }
    }

    /// Whether reports are reaching this monitor at all. When none has arrived for a
    /// staleness, the monitor's own feed is more likely broken than the whole fleet dead: no
    /// instance is declared dead then (and no room could move anywhere anyway).
    pub fn feed_is_fresh(&self, now_ms: i64) -> bool {
        self.last_report_ms
            .is_some_and(|t| now_ms - t <= self.staleness_ms)
    }

    /// Reports resumed after a silence less than a staleness ago: an instance not heard since
    /// may simply not have reported yet, and is not presumed dead.
    pub fn just_resumed(&self, now_ms: i64) -> bool {
        self.resumed_ms
            .is_some_and(|t| now_ms - t < self.staleness_ms)
    }

    /// A known instance is presumed dead once a report from another one arrived more than a
    /// staleness after its last: the feed worked while it stayed silent. When the feed itself
    /// goes silent (this monitor's subscription, Pub/Sub down) nobody dies of it, and after
    /// it resumes everyone gets a staleness to be heard.
    pub fn presumed_dead(&self, id: &str, now_ms: i64) -> bool {
        let Some(i) = self.get(id) else { return false };
        !self.is_alive(id, now_ms)
            && !self.just_resumed(now_ms)
            && self
                .last_report_ms
                .is_some_and(|t| t - i.last_seen_ms > self.staleness_ms)
    }

    pub fn get(&self, id: &str) -> Option<&Instance> {
        self.instances.get(id)
    }

    pub fn is_alive(&self, id: &str, now_ms: i64) -> bool {
        self.get(id)
            .is_some_and(|i| now_ms - i.last_seen_ms <= self.staleness_ms)
    }

    /// Alive, serving and not on probation: may take new rooms.
    pub fn accepts_rooms(&self, id: &str, now_ms: i64) -> bool {
        self.is_alive(id, now_ms)
            && self.get(id).is_some_and(|i| {
                !i.draining && (!i.returned || now_ms - i.alive_since_ms >= self.probation_ms)
            })
    }

    /// Instances that may take new rooms, in id order (placement is deterministic).
    pub fn candidates(&self, now_ms: i64) -> Vec<&Instance> {
        let mut out: Vec<&Instance> = self
            .instances
            .values()
            .filter(|i| self.accepts_rooms(&i.id, now_ms))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn alive_count(&self, now_ms: i64) -> usize {
        self.instances
            .keys()
            .filter(|id| self.is_alive(id, now_ms))
            .count()
    }

    /// Forgets instances silent for ten stalenesses (their rooms moved long ago).
    pub fn prune(&mut self, now_ms: i64) {
        let horizon = 10 * self.staleness_ms;
        self.instances
            .retain(|_, i| now_ms - i.last_seen_ms <= horizon);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fleet::proto::{Capacity, RoomLoad};

    pub fn report(id: &str, seq: u64, draining: bool, rooms: &[(&str, u32)]) -> LoadReport {
        LoadReport {
            instance_id: id.into(),
            state: if draining {
                InstanceState::Draining
            } else {
                InstanceState::Serving
            } as i32,
            capacity: Some(Capacity {
                max_rooms: 0,
                max_participants: 0,
                max_published_tracks: 0,
            }),
            rooms: rooms
                .iter()
                .map(|(r, p)| RoomLoad {
                    room_id: (*r).into(),
                    participants: *p,
                    published_tracks: 2 * p,
                    forwarded_tracks: 0,
                })
                .collect(),
            sequence: seq,
            sent_at_unix_ms: seq as i64 * 2000,
            ..Default::default()
        }
    }

    /// A report received `now_ms`, sent at the same moment.
    pub fn seen(t: &mut FleetTable, mut r: LoadReport, now_ms: i64) {
        r.sent_at_unix_ms = now_ms;
        t.observe(&r, now_ms);
    }

    #[test]
    fn a_report_that_took_longer_than_a_staleness_is_ignored() {
        let mut t = FleetTable::new(5000);
        let mut r = report("a", 1, false, &[]);
        r.sent_at_unix_ms = 1000;
        t.observe(&r, 6001);
        assert!(t.get("a").is_none());
        t.observe(&r, 6000);
        assert!(t.is_alive("a", 6000));
    }

    #[test]
    fn an_instance_is_alive_while_its_last_report_is_younger_than_the_staleness() {
        let mut t = FleetTable::new(5000);
        seen(&mut t, report("a", 1, false, &[("r", 2)]), 1000);
        for (now, alive) in [(1000, true), (6000, true), (6001, false), (60_000, false)] {
            assert_eq!(t.is_alive("a", now), alive, "at {now}");
        }
        assert!(!t.is_alive("unknown", 1000));
        assert_eq!(
            t.get("a").unwrap().load,
            Load {
                rooms: 1,
                participants: 2,
                published_tracks: 4
            }
        );
    }

    #[test]
    fn the_feed_is_fresh_while_any_report_arrives() {
        let mut t = FleetTable::new(5000);
        assert!(!t.feed_is_fresh(0));
        seen(&mut t, report("a", 1, false, &[]), 1000);
        seen(&mut t, report("b", 1, false, &[]), 4000);
        assert!(t.feed_is_fresh(9000));
        assert!(!t.feed_is_fresh(9001));
    }

    #[test]
    fn after_a_silence_of_the_feed_instances_get_a_staleness_to_be_heard() {
        let mut t = FleetTable::new(5000);
        seen(&mut t, report("a", 1, false, &[]), 1000);
        seen(&mut t, report("b", 1, false, &[]), 1000);
        assert!(!t.just_resumed(1000));
        // Nothing for 10 s (the subscription was gone), then `a` is heard first.
        seen(&mut t, report("a", 2, false, &[]), 11_000);
        assert!(!t.is_alive("b", 11_000));
        assert!(t.just_resumed(11_000));
        assert!(!t.presumed_dead("b", 11_000));
        assert!(t.just_resumed(15_999));
        assert!(!t.just_resumed(16_000));
        // Reports that keep coming are no resumption.
        seen(&mut t, report("a", 3, false, &[]), 12_000);
        assert!(!t.just_resumed(17_000));
        // Heard again after the feed's silence, not theirs: no probation.
        seen(&mut t, report("b", 2, false, &[]), 12_000);
        assert!(t.accepts_rooms("a", 12_000) && t.accepts_rooms("b", 12_000));
    }

    #[test]
    fn late_reports_do_not_replace_newer_ones() {
        let mut t = FleetTable::new(5000);
        t.observe(&report("a", 5, true, &[]), 1000);
        t.observe(&report("a", 4, false, &[]), 1100);
        assert!(
            t.get("a").unwrap().draining,
            "the older serving report was ignored"
        );
        assert!(!t.accepts_rooms("a", 1100));
    }

    #[test]
    fn a_flapping_instance_takes_no_new_rooms_until_it_stays_up() {
        let mut t = FleetTable::new(5000);
        seen(&mut t, report("a", 1, false, &[]), 0);
        assert!(t.accepts_rooms("a", 0), "a new instance is trusted at once");
        // Silent for 8 s (dead) while "b" keeps reporting, then back.
        seen(&mut t, report("b", 1, false, &[]), 4000);
        seen(&mut t, report("a", 2, false, &[]), 8000);
        assert!(t.is_alive("a", 8000));
        assert!(!t.accepts_rooms("a", 8000), "on probation");
        seen(&mut t, report("a", 3, false, &[]), 12_000);
        seen(&mut t, report("a", 4, false, &[]), 16_000);
        assert!(!t.accepts_rooms("a", 16_000));
        seen(&mut t, report("a", 5, false, &[]), 18_000);
        assert!(t.accepts_rooms("a", 18_000), "10 s of fresh reports");
    }

    #[test]
    fn candidates_are_alive_serving_instances_in_id_order_and_old_ones_are_forgotten() {
        let mut t = FleetTable::new(5000);
        seen(&mut t, report("c", 1, false, &[]), 0);
        seen(&mut t, report("a", 1, false, &[]), 0);
        seen(&mut t, report("b", 1, true, &[]), 0);
        let ids: Vec<&str> = t.candidates(0).iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(t.alive_count(0), 3);
        t.prune(50_000);
        assert!(t.get("a").is_some());
        t.prune(50_001);
        assert!(t.get("a").is_none());
    }
}
