//! `testpeer`: join a firesfu room from the command line with an independent WebRTC stack
//! (str0m), publish tagged or real VP8 media, and print what arrived as JSON.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use testpeer::{Leave, Peer, PeerSpec, VideoSource};

#[derive(Parser)]
#[command(about = "A str0m participant for firesfu rooms (Firestore emulator)")]
struct Args {
    /// Firestore emulator host:port.
    #[arg(long, env = "FIRESTORE_EMULATOR_HOST")]
    emulator: String,
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    project: String,
    #[arg(long)]
    room: String,
    /// Display name; also the session id unless --session is given.
    #[arg(long)]
    name: String,
    #[arg(long)]
    session: Option<String>,
    /// Join token (from the sidecar's POST /v1/rooms/{id}/join).
    #[arg(long)]
    token: Option<String>,
    /// The `uid` written into the session document (a join token's `sub`).
    #[arg(long)]
    uid: Option<String>,
    /// Create the room document first.
    #[arg(long)]
    create_room: bool,
    /// Local address for the peer's socket (its ICE host candidate).
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Connect over ICE-TCP only (an active TCP candidate, no UDP).
    #[arg(long)]
    tcp: bool,
    #[arg(long, default_value_t = 0)]
    recv_audio: usize,
    #[arg(long, default_value_t = 0)]
    recv_video: usize,
    /// Do not re-offer when the server wants more receive slots.
    #[arg(long)]
    no_follow: bool,
    #[arg(long)]
    no_audio: bool,
    #[arg(long)]
    no_video: bool,
    /// Send real VP8 frames from this IVF file instead of tagged frames.
    #[arg(long)]
    ivf: Option<PathBuf>,
    /// Leave after this many seconds (default: on SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Exit 0 only if media from this many other participants arrived.
    #[arg(long, default_value_t = 0)]
    expect_sources: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = testpeer::firestore::connect_emulator(&args.emulator, &args.project).await?;
    if args.create_room {
        testpeer::firestore::create_room(&db, &args.room).await?;
    }
    let session = args.session.clone().unwrap_or_else(|| args.name.clone());
    let mut spec = PeerSpec::new(&args.room, &session);
    spec.display_name = args.name.clone();
    spec.bind_ip = args.bind_ip;
    if args.tcp {
        spec.transport = testpeer::endpoint::Transport::Tcp;
    }
    spec.token = args.token.clone();
    spec.uid = args.uid.clone();
    spec.recv_audio = args.recv_audio;
    spec.recv_video = args.recv_video;
    spec.follow_wants = !args.no_follow;
    spec.publish_audio = !args.no_audio;
    spec.publish_video = !args.no_video;
    if let Some(ivf) = &args.ivf {
        spec.video = VideoSource::Ivf(ivf.clone());
    }
    let peer = Peer::join(&db, spec).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let limit = Duration::from_secs(args.seconds.unwrap_or(u64::MAX / 4));
    tokio::select! {
        _ = tokio::time::sleep(limit) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let r = peer.leave(Leave::Close).await?;
    let received: serde_json::Map<String, serde_json::Value> = r
        .received
        .iter()
        .map(|(k, v)| (k.clone(), json!({"audio": v.audio, "video": v.video})))
        .collect();
    println!(
        "{}",
        json!({
            "state": r.state,
            "error": r.error,
            "answeredRevision": r.answered_revision,
            "answerLatencyMs": r.answer_latency.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
            "connected": r.connected,
            "sentAudio": r.sent_audio,
            "sentVideo": r.sent_video,
            "received": received,
            "corrupt": r.corrupt,
            "foreign": r.foreign,
            "keyframeRequests": r.keyframe_requests,
            "rttMs": r.rtt.map(|d| d.as_secs_f64() * 1000.0),
        })
    );
    if r.received.len() < args.expect_sources {
        anyhow::bail!(
            "media arrived from {} sources; expected {}",
            r.received.len(),
            args.expect_sources
        );
    }
    Ok(())
}
