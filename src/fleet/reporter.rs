//! The broadcast side of the fleet: a load report on Pub/Sub every interval (and at once when
//! the instance starts draining).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::Message as _;
use tokio::sync::watch;

use super::proto::{Capacity, InstanceState, LoadReport, RoomLoad};
use crate::media::{EngineHandle, MediaStats};

pub struct ReporterConfig {
    pub instance: String,
    pub addresses: Vec<String>,
    pub capacity: Capacity,
    pub interval: Duration,
}

/// Builds reports from the engine's counters: bitrates and CPU are deltas since the last one.
pub struct ReportBuilder {
    config: ReporterConfig,
    sequence: u64,
    last: Option<(Instant, u64, u64, f64)>,
}

impl ReportBuilder {
    pub fn new(config: ReporterConfig) -> Self {
        ReportBuilder {
            config,
            sequence: 0,
            last: None,
        }
    }

    pub fn build(
        &mut self,
        stats: &MediaStats,
        draining: bool,
        cpu_seconds: Option<f64>,
        at: Instant,
    ) -> LoadReport {
        self.sequence += 1;
        let cpu_now = cpu_seconds.unwrap_or(0.0);
        let (bitrate_in, bitrate_out, cpu_cores) = match self.last {
            Some((then, bytes_in, bytes_out, cpu)) => {
                let secs = at.duration_since(then).as_secs_f64().max(1e-3);
                (
                    (stats.rtp_bytes_in.saturating_sub(bytes_in) as f64 * 8.0 / secs) as u64,
                    (stats.rtp_bytes_forwarded.saturating_sub(bytes_out) as f64 * 8.0 / secs)
                        as u64,
                    ((cpu_now - cpu) / secs).max(0.0),
                )
            }
            None => (0, 0, 0.0),
        };
        self.last = Some((at, stats.rtp_bytes_in, stats.rtp_bytes_forwarded, cpu_now));
        LoadReport {
            instance_id: self.config.instance.clone(),
            advertised_addresses: self.config.addresses.clone(),
            state: if draining {
                InstanceState::Draining
            } else {
                InstanceState::Serving
            } as i32,
            capacity: Some(self.config.capacity),
            rooms: stats
                .room_loads
                .iter()
                .map(|r| RoomLoad {
                    room_id: r.room.clone(),
                    participants: r.participants,
                    published_tracks: r.published_tracks,
                    forwarded_tracks: r.forwarded_tracks,
                })
                .collect(),
            bitrate_in_bps: bitrate_in,
            bitrate_out_bps: bitrate_out,
            packet_loss: f64::from(stats.loss_ppm) / 1e6,
            cpu_cores,
            sent_at_unix_ms: super::unix_ms(SystemTime::now()),
            sequence: self.sequence,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// This process's CPU time (user + system), seconds, from /proc.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

/// Publishes reports until `draining` closes; a change of `draining` publishes at once. A topic
/// that disappeared (a Pub/Sub emulator restart, a mistaken deletion) is created again. A
/// report is useless once the next one is due: a publish that takes longer is abandoned and
/// the client made anew (its connection retries back off for tens of seconds after Pub/Sub was
/// unreachable, and every later report would queue behind them).
pub async fn run(
    mut publisher: google_cloud_pubsub::client::Publisher,
    (project, pubsub): (String, crate::gcp::PubsubArgs),
    engine: Arc<EngineHandle>,
    mut builder: ReportBuilder,
    mut draining: watch::Receiver<bool>,
    instruments: Arc<crate::telemetry::metrics::SignallingInstruments>,
) {
    let patience = builder.config.interval.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(builder.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = draining.changed() => if changed.is_err() { return },
        }
        let stats = engine.stats();
        let report = builder.build(
            &stats,
            *draining.borrow(),
            process_cpu_seconds(),
            Instant::now(),
        );
        let message = google_cloud_pubsub::model::Message::new().set_data(report.encode_to_vec());
        let error = match tokio::time::timeout(patience, publisher.publish(message)).await {
            Ok(Ok(_)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("load reports are published again");
                }
                continue;
            }
            Ok(Err(e)) if crate::gcp::publish_not_found(&e) => {
                let made =
                    tokio::time::timeout(patience, crate::gcp::ensure_topic(&project, &pubsub));
                match made.await {
                    Ok(Ok(())) => tracing::info!("the load topic was gone; created again"),
                    Ok(Err(e)) => tracing::warn!("{e:#}"),
                    Err(_) => tracing::warn!("cannot create the load topic: no answer"),
                }
                e.to_string()
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                match crate::gcp::pubsub_publisher(&project, &pubsub).await {
                    Ok(fresh) => publisher = fresh,
                    Err(e) => tracing::warn!("cannot make a new publisher: {e:#}"),
                }
                format!("no answer within {patience:?}")
            }
        };
        instruments.pubsub_failure();
        if !std::mem::replace(&mut failing, true) {
            tracing::warn!("cannot publish a load report: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::RoomLoadStat;

    #[test]
    fn reports_carry_rooms_rates_and_increasing_sequences() {
        let mut b = ReportBuilder::new(ReporterConfig {
            instance: "i1".into(),
            addresses: vec!["10.0.0.1:4443".into()],
            capacity: Capacity {
                max_rooms: 3,
                ..Default::default()
            },
            interval: Duration::from_secs(2),
        });
        let t0 = Instant::now();
        let mut stats = MediaStats::default();
        let first = b.build(&stats, false, Some(1.0), t0);
        stats.rtp_bytes_in = 250_000;
        stats.rtp_bytes_forwarded = 500_000;
        stats.loss_ppm = 20_000;
        stats.room_loads = vec![RoomLoadStat {
            room: "r".into(),
            participants: 2,
            published_tracks: 4,
            forwarded_tracks: 4,
            viewers: 2,
        }];
        let second = b.build(&stats, true, Some(1.5), t0 + Duration::from_secs(2));
        assert_eq!((first.sequence, second.sequence), (1, 2));
        assert_eq!(second.bitrate_in_bps, 1_000_000);
        assert_eq!(second.bitrate_out_bps, 2_000_000);
        assert!((second.cpu_cores - 0.25).abs() < 1e-9);
        assert!((second.packet_loss - 0.02).abs() < 1e-9);
        assert_eq!(second.state(), InstanceState::Draining);
        assert_eq!(second.rooms[0].room_id, "r");
        // It survives the wire.
        let decoded = LoadReport::decode(second.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, second);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }
}
