//! The engine's once-a-second upkeep: closing peers that went silent, expiring learned paths,
//! quality per peer (told to signalling every few seconds), and the counters telemetry and the
//! fleet's load reports read.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Engine, QUALITY_REPORT_EVERY};
use crate::media::peer::TransportProtocol;
use crate::media::socket::DropCounter;
use crate::media::{CloseReason, PeerId, SessionEvent};

impl Engine {
    pub(super) fn housekeeping(&mut self, now: Instant) {
        let silent: Vec<(PeerId, CloseReason)> = self
            .peers
            .values()
            .filter(|p| now.saturating_duration_since(p.last_heard) > self.config.peer_timeout)
            .map(|p| {
                // A peer that never connected failed to: say what it tried.
                let reason = if p.connected {
                    CloseReason::Timeout
                } else {
                    CloseReason::ConnectFailed(p.attempt)
                };
                (p.id, reason)
            })
            .collect();
        for (id, reason) in silent {
            tracing::info!(peer = id.0, ?reason, "closing a peer that went silent");
            self.close_peer(now, id, reason);
        }
        self.demux.expire(now);
        self.housekeeping_ticks += 1;
        let report = self.housekeeping_ticks.is_multiple_of(QUALITY_REPORT_EVERY);
        let mut qualities = Vec::new();
        let (mut loss_sum, mut loss_count) = (0.0, 0u32);
        for peer in self.peers.values_mut().filter(|p| p.connected) {
            let (rtt, loss) = peer.quality(now);
            self.instruments.peer_quality(rtt, loss);
            if let Some(l) = loss {
                loss_sum += l;
                loss_count += 1;
            }
            if report {
                qualities.push((peer.id, rtt.map(|r| r * 1000.0), loss));
            }
        }
        self.stats.loss_ppm = if loss_count > 0 {
            (loss_sum / f64::from(loss_count) * 1e6) as u32
        } else {
            0
        };
        for (id, rtt_ms, loss) in qualities {
            self.emit(id, SessionEvent::Quality { rtt_ms, loss });
        }
        self.publish_stats();
    }

    pub(super) fn publish_stats(&mut self) {
        self.stats.peers = self.peers.len();
        self.stats.rooms = self.rooms.len();
        self.stats.tracks_published = self
            .peers
            .values()
            .map(|p| p.published_count() as u64)
            .sum();
        self.stats.tracks_forwarded = self
            .peers
            .values()
            .map(|p| p.slot_sources().count() as u64)
            .sum();
        self.stats.kernel_receive_drops = self.drops.as_ref().and_then(DropCounter::read);
        self.stats.tcp_refused = self.tcp_refused.load(Ordering::Relaxed);
        self.stats.tcp_connections = self.io.tcp_connections() as u64;
        self.stats.peers_over_tcp = self
            .peers
            .values()
            .filter(|p| p.connected && p.transport == TransportProtocol::TCP)
            .count() as u64;
        self.stats.sessions = self.sessions.iter().map(|(k, p)| (k.clone(), *p)).collect();
        self.stats.tables = [
            ("peers", self.peers.len()),
            ("sessions", self.sessions.len()),
            ("rooms", self.rooms.len()),
            ("speakers", self.speakers.len()),
        ]
        .into_iter()
        .chain(self.demux.sizes())
        .chain(self.forwards.sizes())
        .collect();
        self.stats.downlinks = self
            .peers
            .values()
            .filter(|p| p.connected)
            .map(|p| (p.key.clone(), p.downlink_estimate()))
            .collect();
        // Once a second (housekeeping), a few rooms: not on the packet path.
        self.stats.room_loads = self
            .rooms
            .iter()
            .map(|(name, room)| {
                let (mut published, mut forwarded, mut viewers) = (0, 0, 0);
                for id in room.peers() {
                    if let Some(p) = self.peers.get(&id) {
                        published += p.published_count() as u32;
                        forwarded += p.slot_sources().count() as u32;
                        viewers += u32::from(room.receives(id));
                    }
                }
                crate::media::RoomLoadStat {
                    room: name.clone(),
                    participants: room.len() as u32,
                    published_tracks: published,
                    forwarded_tracks: forwarded,
                    viewers,
                }
            })
            .collect();
        if let Ok(mut shared) = self.shared.lock() {
            *shared = self.stats.clone();
        }
    }
}
