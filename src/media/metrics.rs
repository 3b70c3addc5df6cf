//! The media engine's metric instruments: per-peer quality histograms sampled every second,
//! and the engine's counters as observable instruments (read at each export).

use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, ObservableCounter, ObservableGauge};

use super::MediaStats;
use crate::telemetry::metrics::meter;

/// Per-peer connection quality, sampled by the media engine every second.
pub struct MediaInstruments {
    rtt: Histogram<f64>,
    loss: Histogram<f64>,
}

impl Default for MediaInstruments {
    fn default() -> Self {
        let m = meter();
        MediaInstruments {
            rtt: m
                .f64_histogram("firesfu.peer.rtt")
                .with_unit("s")
                .with_description("ICE round-trip time of each peer connection")
                .with_boundaries(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
                .build(),
            loss: m
                .f64_histogram("firesfu.peer.loss")
                .with_unit("1")
                .with_description(
                    "Fraction of the peer's published packets lost before reaching us",
                )
                .with_boundaries(vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
                .build(),
        }
    }
}

impl MediaInstruments {
    pub fn peer_quality(&self, rtt_seconds: Option<f64>, loss: Option<f64>) {
        if let Some(rtt) = rtt_seconds {
            self.rtt.record(rtt, &[]);
        }
        if let Some(loss) = loss {
            self.loss.record(loss, &[]);
        }
    }
}

/// The engine's counters as observable instruments (read at each export).
pub struct MediaObservers {
    _gauges: Vec<ObservableGauge<u64>>,
    _counters: Vec<ObservableCounter<u64>>,
}

pub fn observe_media(stats: Arc<Mutex<MediaStats>>) -> MediaObservers {
    let m = meter();
    let read = move |f: fn(&MediaStats) -> u64| {
        let stats = stats.clone();
        move || stats.lock().map(|s| f(&s)).unwrap_or(0)
    };
    let gauge = |name: &'static str,
                 unit: &'static str,
                 description: &'static str,
                 f: fn(&MediaStats) -> u64| {
        let value = read(f);
        m.u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| o.observe(value(), &[]))
            .build()
    };
    let gauges = vec![
        gauge(
            "firesfu.rooms",
            "{room}",
            "Rooms with at least one peer on this instance",
            |s| s.rooms as u64,
        ),
        gauge(
            "firesfu.participants",
            "{participant}",
            "Peer connections on this instance",
            |s| s.peers as u64,
        ),
        gauge(
            "firesfu.tracks.published",
            "{track}",
            "Tracks published to this instance",
            |s| s.tracks_published,
        ),
        gauge(
            "firesfu.ice_tcp.connections",
            "{connection}",
            "Open ICE-TCP connections",
            |s| s.tcp_connections,
        ),
        gauge(
            "firesfu.ice_tcp.participants",
            "{participant}",
            "Connected peers whose media travels over ICE-TCP",
            |s| s.peers_over_tcp,
        ),
        gauge(
            "firesfu.tracks.forwarded",
            "{track}",
            "Subscriber slots currently fed a track",
            |s| s.tracks_forwarded,
        ),
        gauge(
            "firesfu.slots.constrained",
            "{slot}",
            "Video slots paused or held below the subscriber's wish for lack of downlink",
            |s| s.slots_constrained,
        ),
        gauge(
            "firesfu.slots.paused",
            "{slot}",
            "Video slots the subscriber paused (off-screen)",
            |s| s.slots_paused,
        ),
    ];
    let directed = |name: &'static str,
                    unit: &'static str,
                    description: &'static str,
                    inbound: fn(&MediaStats) -> u64,
                    outbound: fn(&MediaStats) -> u64| {
        let (i, o) = (read(inbound), read(outbound));
        m.u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |obs| {
                obs.observe(i(), &[KeyValue::new("direction", "in")]);
                obs.observe(o(), &[KeyValue::new("direction", "out")]);
            })
            .build()
    };
    let dropped = {
        let stats = read(|s| s.dropped_unknown_sender);
        let unauthenticated = read(|s| s.dropped_unauthenticated);
        let padding = read(|s| s.dropped_padding);
        let muted = read(|s| s.dropped_muted);
        let codec = read(|s| s.dropped_codec_mismatch);
        let stack = read(|s| s.dropped_by_stack);
        let kernel = read(|s| s.kernel_receive_drops.unwrap_or(0));
        let send = read(|s| s.send_errors);
        let tcp_full = read(|s| s.tcp_send_dropped);
        m.u64_observable_counter("firesfu.packets.dropped")
            .with_unit("{packet}")
            .with_description("Packets not forwarded, by reason")
            .with_callback(move |o| {
                for (reason, value) in [
                    ("unknown_sender", stats()),
                    ("unauthenticated", unauthenticated()),
                    ("padding", padding()),
                    ("muted", muted()),
                    ("codec_mismatch", codec()),
                    ("refused_by_stack", stack()),
                    ("kernel_receive_buffer", kernel()),
                    ("send_error", send()),
                    ("tcp_queue_full", tcp_full()),
                ] {
                    o.observe(value, &[KeyValue::new("reason", reason)]);
                }
            })
            .build()
    };
    let simple = |name: &'static str,
                  unit: &'static str,
                  description: &'static str,
                  f: fn(&MediaStats) -> u64| {
        let value = read(f);
        m.u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| o.observe(value(), &[]))
            .build()
    };
    let counters = vec![
        directed(
            "firesfu.rtp.packets",
            "{packet}",
            "RTP packets received from publishers and forwarded to subscribers",
            |s| s.rtp_in,
            |s| s.rtp_forwarded,
        ),
        directed(
            "firesfu.rtp.bytes",
            "By",
            "RTP payload bytes received and forwarded",
            |s| s.rtp_bytes_in,
            |s| s.rtp_bytes_forwarded,
        ),
        dropped,
        simple(
            "firesfu.ice_tcp.refused",
            "{connection}",
            "ICE-TCP connections refused (over the per-address or total limit)",
            |s| s.tcp_refused,
        ),
        simple(
            "firesfu.simulcast.switches",
            "{switch}",
            "Receive slots that changed simulcast layer (at a keyframe)",
            |s| s.layer_switches,
        ),
        simple(
            "firesfu.rtp.late",
            "{packet}",
            "Published packets that arrived after a later one of their stream (retransmissions, reordering)",
            |s| s.published_late,
        ),
        simple(
            "firesfu.rtcp.nacks",
            "{nack}",
            "NACK feedback received from subscribers",
            |s| s.nacks_received,
        ),
        simple(
            "firesfu.rtcp.plis",
            "{pli}",
            "Keyframe requests sent to publishers",
            |s| s.keyframe_requests,
        ),
    ];
    MediaObservers {
        _gauges: gauges,
        _counters: counters,
    }
}
