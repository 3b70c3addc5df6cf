//! The broadcast instance's small HTTP endpoint: `/healthz` for probes, `/stats` (JSON media
//! counters) for operators, benchmarks and tests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::media::EngineHandle;

#[derive(Clone)]
struct Ops {
    engine: Arc<EngineHandle>,
    instance: String,
}

/// Healthy while the media thread runs: a dead engine must fail the liveness probe.
async fn healthz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.engine.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the media engine stopped\n",
        )
    }
}

async fn stats(State(ops): State<Ops>) -> Json<Value> {
    let s = ops.engine.stats();
    Json(json!({
        "instance": ops.instance,
        "peers": s.peers,
        "rooms": s.rooms,
        "negotiations": s.negotiations,
        "datagramsIn": s.datagrams_in,
        "datagramsOut": s.datagrams_out,
        "rtpIn": s.rtp_in,
        "rtpForwarded": s.rtp_forwarded,
        "droppedUnknownSender": s.dropped_unknown_sender,
        "droppedPadding": s.dropped_padding,
        "droppedCodecMismatch": s.dropped_codec_mismatch,
        "droppedByStack": s.dropped_by_stack,
        "sendErrors": s.send_errors,
        "keyframeRequests": s.keyframe_requests,
        "kernelReceiveDrops": s.kernel_receive_drops,
        "droppedUnauthenticated": s.dropped_unauthenticated,
        "tcpConnections": s.tcp_connections,
        "tcpRefused": s.tcp_refused,
        "tcpFramesIn": s.tcp_frames_in,
        "tcpFramesOut": s.tcp_frames_out,
        "tcpSendDropped": s.tcp_send_dropped,
        "peersOverTcp": s.peers_over_tcp,
        "droppedOtherLayer": s.dropped_other_layer,
        "layerSwitches": s.layer_switches,
        "publishedLate": s.published_late,
        "senderReports": s.sender_reports,
        "senderReportsTranslated": s.sender_reports_translated,
        "slotsConstrained": s.slots_constrained,
        "slotsPaused": s.slots_paused,
        "downlinks": s.downlinks.iter().map(|(key, bps)| json!({
            "room": key.room, "session": key.session, "estimateBps": bps,
        })).collect::<Vec<_>>(),
        "firestore": crate::docdb::meter::counts(),
        "tables": s.tables.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "memory": {
            "residentKib": crate::process::resident_kib(std::process::id()),
            "heapInUseKib": crate::process::heap_kib().map(|h| h.0),
            "heapFreeKib": crate::process::heap_kib().map(|h| h.1),
        },
    }))
}

/// Starts serving; returns the bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    engine: Arc<EngineHandle>,
    instance: String,
) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/stats", get(stats));
    #[cfg(feature = "fault-injection")]
    let app = app.route(
        "/fault/engine-panic",
        axum::routing::post(|State(ops): State<Ops>| async move {
            ops.engine.inject_panic();
            "injected\n"
        }),
    );
    let app = app.with_state(Ops { engine, instance });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the HTTP endpoint {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("HTTP endpoint failed: {e}");
        }
    });
    Ok(bound)
}
