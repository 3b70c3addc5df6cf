//! The engine's sender reports toward subscribers: every [`REPORT_EVERY`], each receive slot
//! that has forwarded something gets an SR translated from its publisher's
//! ([`crate::media::sync`]), or, until the publisher has reported that stream, one made from
//! forwarding times (what rtc's own sender reports would say).

use std::time::{Duration, Instant};

use super::Engine;
use crate::media::PeerId;
use crate::media::peer::ReportInput;
use crate::media::sync;

/// How often each slot gets a sender report (browsers send one about every second).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

impl Engine {
    pub(super) fn send_reports(&mut self, now: Instant) {
        let wall_now = self.wall.ntp(now);
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        let mut inputs: Vec<ReportInput> = Vec::new();
        for id in ids {
            inputs.clear();
            if let Some(p) = self.peers.get(&id).filter(|p| p.connected) {
                p.report_inputs(&mut inputs);
            }
            if inputs.is_empty() {
                continue;
            }
            for input in inputs.drain(..) {
                let translated = input.source.and_then(|(ssrc, ts_offset)| {
                    let publisher = self.peers.get(&input.publisher)?;
                    sync::translate(
                        &publisher.clock,
                        ssrc,
                        ts_offset,
                        input.clock_rate,
                        wall_now,
                    )
                });
                let report = match translated {
                    Some(report) => {
                        self.stats.sender_reports_translated += 1;
                        report
                    }
                    None => {
                        let (ts, sent_at) = input.last_sent;
                        sync::from_forwarding(
                            ts,
                            self.wall.ntp(sent_at),
                            input.clock_rate,
                            wall_now,
                        )
                    }
                };
                if let Some(p) = self.peers.get_mut(&id) {
                    p.send_report(now, &input.mid, report);
                    self.stats.sender_reports += 1;
                }
            }
            self.dirty.push(id);
        }
    }
}
