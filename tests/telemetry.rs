//! OpenTelemetry export of the sidecar and a broadcast instance into an OTLP receiver inside the
//! test: one join's span tree and trace context, the metrics it moves, no personal data, and
//! nothing at all with `DISABLE_TELEMETRY=true`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::sidecar::{Sidecar, SidecarOptions, database};
use common::{Broadcast, BroadcastOptions, Project, otlp};
use serde_json::json;
use testpeer::{Leave, Peer, PeerSpec};

const T: Duration = Duration::from_secs(20);

fn otel_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_exports_its_span_tree_metrics_and_logs_without_personal_data() {
    let (addr, received) = otlp::start().await;
    let endpoint = format!("http://{addr}");
    let project = Project::new().await;
    let mut s = Sidecar::start(
        &project,
        database(None).await,
        SidecarOptions {
            env: otel_env(&endpoint),
            ..Default::default()
        },
    )
    .await;
    let mut extra = otel_env(&endpoint);
    extra.push(("FIRESFU_JWKS_URL".into(), s.url("/.well-known/jwks.json")));
    extra.push(("FIRESFU_DEV_NO_AUTH".into(), "false".into()));
    let mut sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            extra,
            ..Default::default()
        },
    )
    .await;

    let password = "correct horse battery";
    let (token, user) = s.user("ada").await;
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Telemetry"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, join) = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/join"),
            Some(&token),
            None,
        )
        .await;
    let join_token = join["token"].as_str().unwrap().to_owned();
    let traceparent = join["traceparent"]
        .as_str()
        .expect("the join response carries a traceparent")
        .to_owned();
    let mut spec = PeerSpec::new(&room, "telemetry-peer");
    (spec.token, spec.uid, spec.traceparent) = (
        Some(join_token.clone()),
        Some(user["firebaseUid"].as_str().unwrap().into()),
        Some(traceparent.clone()),
    );
    let a = Peer::join(&project.db, spec).await.unwrap();
    a.wait_until("connected", T, |r| r.connected).await.unwrap();
    // Let media flow through a few metric exports.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let offer_sdp = a.doc.read().await.unwrap().unwrap()["offer"]["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    a.leave(Leave::Close).await.unwrap();
    sfu.terminate();
    s.terminate();

    // Span tree: join → claim (→ token.verify), negotiate, write_answer; in the sidecar's trace.
    let spans = received.spans();
    let by_name = |name: &str| {
        spans
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>()
    };
    let join_spans = by_name("join");
    assert_eq!(
        join_spans.len(),
        1,
        "one join span: {:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    let join_span = &join_spans[0];
    let trace_id = traceparent.split('-').nth(1).unwrap();
    assert_eq!(
        hex(&join_span.trace_id),
        trace_id,
        "the join continues the sidecar request's trace"
    );
    let sidecar_join = spans
        .iter()
        .find(|(_, s)| s.name == "POST /v1/rooms/{id}/join")
        .expect("the sidecar's request span");
    assert_eq!(hex(&sidecar_join.1.trace_id), trace_id);
    let children: HashMap<String, _> = spans
        .iter()
        .filter(|(_, s)| s.parent_span_id == join_span.span_id)
        .map(|(_, s)| (s.name.clone(), s.clone()))
        .collect();
    for name in [
        "firestore.claim",
        "media.negotiate",
        "firestore.write_answer",
    ] {
        assert!(
            children.contains_key(name),
            "{name} under join: {:?}",
            children.keys().collect::<Vec<_>>()
        );
    }
    let verify = by_name("token.verify");
    assert_eq!(verify.len(), 1);
    assert_eq!(
        verify[0].parent_span_id, children["firestore.claim"].span_id,
        "token.verify under the claim"
    );
    let outcome = join_span
        .attributes
        .iter()
        .rev()
        .find(|a| a.key == "outcome")
        .map(|a| format!("{:?}", a.value));
    assert!(
        outcome.unwrap_or_default().contains("connected"),
        "the join span ends at connected"
    );

    // Metrics the join moved.
    let metrics = received.metric_values();
    for name in [
        "firesfu.join.duration",
        "firesfu.firestore.listener.lag",
        "firesfu.participants",
        "firesfu.rooms",
        "firesfu.rtp.packets",
        "firesfu.rtp.bytes",
        "firesfu.packets.dropped",
        "firesfu.rtcp.plis",
        "firesfu.peer.rtt",
        "http.server.request.duration",
    ] {
        assert!(
            metrics.contains_key(name),
            "{name} missing from {:?}",
            metrics.keys().collect::<Vec<_>>()
        );
    }
    assert!(metrics["firesfu.join.duration"] >= 1.0);
    assert!(
        metrics["firesfu.rtp.packets"] > 0.0,
        "publisher packets counted"
    );
    assert!(metrics["http.server.request.duration"] >= 4.0);
    assert!(
        !received.logs.lock().unwrap().is_empty(),
        "logs are exported too"
    );

    // Nothing personal anywhere.
    let text = received.all_text();
    for secret in [
        join_token.as_str(),
        password,
        "a=fingerprint",
        &offer_sdp[..40],
        "correct horse",
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked into telemetry");
    }
    assert!(!text.contains(token.as_str()), "the access token leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_telemetry_sends_nothing() {
    let (addr, received) = otlp::start().await;
    let project = Project::new().await;
    let mut env = otel_env(&format!("http://{addr}"));
    env.push(("DISABLE_TELEMETRY".into(), "true".into()));
    let mut s = Sidecar::start(
        &project,
        database(None).await,
        SidecarOptions {
            env,
            ..Default::default()
        },
    )
    .await;
    let (token, _) = s.user("quiet").await;
    assert_eq!(s.call("GET", "/v1/rooms", Some(&token), None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.terminate();
    assert!(received.is_empty(), "DISABLE_TELEMETRY=true still exported");
}
