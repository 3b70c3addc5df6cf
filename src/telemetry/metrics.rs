//! Metric instruments. Names follow OpenTelemetry semantic conventions where one exists
//! (`http.server.request.duration`); the rest are `firesfu.*`. With no meter provider set
//! (export off) every instrument is a no-op.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// The meter every firesfu instrument comes from.
pub fn meter() -> Meter {
    opentelemetry::global::meter("firesfu")
}

/// Signalling: join latency and how far behind Firestore the listener runs.
pub struct SignallingInstruments {
    join: Histogram<f64>,
    listener_lag: Histogram<f64>,
    pubsub_failures: Counter<u64>,
}

impl Default for SignallingInstruments {
    fn default() -> Self {
        let m = meter();
        SignallingInstruments {
            join: m
                .f64_histogram("firesfu.join.duration")
                .with_unit("s")
                .with_description("Offer seen by the listener → answer written")
                .with_boundaries(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
                .build(),
            listener_lag: m
                .f64_histogram("firesfu.firestore.listener.lag")
                .with_unit("s")
                .with_description("Document update time → event handled by the listener")
                .with_boundaries(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
                .build(),
            pubsub_failures: m
                .u64_counter("firesfu.pubsub.publish.failures")
                .with_description("Load reports that could not be published")
                .build(),
        }
    }
}

impl SignallingInstruments {
    pub fn join(&self, seconds: f64, outcome: &'static str) {
        self.join
            .record(seconds, &[KeyValue::new("outcome", outcome)]);
    }

    pub fn listener_lag(&self, seconds: f64) {
        self.listener_lag.record(seconds.max(0.0), &[]);
    }

    pub fn pubsub_failure(&self) {
        self.pubsub_failures.add(1, &[]);
    }
}

/// The monitor: placements of new rooms and reassignments of moved ones, by reason.
pub struct MonitorInstruments {
    placements: Counter<u64>,
    unplaceable: Counter<u64>,
}

impl Default for MonitorInstruments {
    fn default() -> Self {
        let m = meter();
        MonitorInstruments {
            placements: m
                .u64_counter("firesfu.monitor.placements")
                .with_description(
                    "Room assignments written (reason: new, instance-dead, instance-draining)",
                )
                .build(),
            unplaceable: m
                .u64_counter("firesfu.monitor.unplaceable")
                .with_description("Rooms no instance could take")
                .build(),
        }
    }
}

impl MonitorInstruments {
    pub fn placed(&self, reason: &'static str) {
        self.placements.add(1, &[KeyValue::new("reason", reason)]);
    }

    pub fn unplaceable(&self) {
        self.unplaceable.add(1, &[]);
    }
}

/// `http.server.request.duration` for the sidecar (semantic conventions).
#[derive(Clone)]
pub struct HttpInstruments {
    duration: Histogram<f64>,
}

impl Default for HttpInstruments {
    fn default() -> Self {
        HttpInstruments {
            duration: meter()
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                ])
                .build(),
        }
    }
}

/// Middleware recording every request's duration by method, route and status.
pub async fn record_http(
    instruments: axum::extract::State<HttpInstruments>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    let response = next.run(request).await;
    instruments.duration.record(
        started.elapsed().as_secs_f64(),
        &[
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
            KeyValue::new(
                "http.response.status_code",
                response.status().as_u16() as i64,
            ),
        ],
    );
    response
}
