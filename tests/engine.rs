//! The media engine on its own (no Firestore): offers from str0m endpoints applied through the
//! engine's handle, as signalling applies them.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firesfu::media::{
    CloseReason, CodecSupport, MediaConfig, MediaLimits, NegotiationError, SessionKey,
    SessionOffer, spawn_engine,
};
use testpeer::VideoSource;
use testpeer::endpoint::{Endpoint, MediaSpec};

fn config(limits: MediaLimits) -> MediaConfig {
    MediaConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        advertise: vec![],
        tcp: vec![],
        tcp_limits: Default::default(),
        receive_buffer: 1 << 20,
        send_buffer: 1 << 20,
        ice_lite: true,
        peer_timeout: Duration::from_secs(15),
        codecs: CodecSupport {
            audio: vec!["opus".into()],
            video: vec!["VP8".into()],
        },
        limits,
    }
}

async fn offer(tag: &str) -> String {
    let spec = MediaSpec {
        tag: tag.into(),
        publish_audio: true,
        publish_video: true,
        video: VideoSource::Tagged { frame_bytes: 100 },
        video_delay: std::time::Duration::ZERO,
        remb: None,
        camera_codecs: false,
    };
    let report = Arc::new(Mutex::new(testpeer::Report::default()));
    let mut ep = Endpoint::bind(IpAddr::from([127, 0, 0, 1]), spec, report)
        .await
        .unwrap();
    ep.first_offer(1, 1).unwrap().0
}

fn key(room: &str, session: &str) -> SessionKey {
    SessionKey {
        room: room.into(),
        session: session.into(),
    }
}

fn session_offer(
    key: SessionKey,
    peer: Option<firesfu::media::PeerId>,
    sdp: String,
) -> SessionOffer {
    SessionOffer {
        display_name: key.session.clone(),
        key,
        peer,
        sdp,
        receives: true,
        sources: Default::default(),
        presenters: 1,
        watch: None,
    }
}

/// Peers after the engine's next housekeeping (its counters refresh every second).
async fn peers_after_housekeeping(engine: &firesfu::media::EngineHandle) -> usize {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    engine.stats().peers
}

#[tokio::test]
async fn a_reoffer_for_a_peer_that_closed_creates_no_phantom_peer() {
    let (engine, _events) = spawn_engine(config(MediaLimits::default())).unwrap();
    let k = key("r", "ada");
    let first = engine
        .negotiate(session_offer(k.clone(), None, offer("ada").await))
        .await
        .unwrap();
    assert!(first.answer.contains("a=end-of-candidates"));
    // The peer closes (it timed out, say) while the session re-offers for it.
    engine.close(first.peer, CloseReason::Timeout);
    let again = engine
        .negotiate(session_offer(
            k.clone(),
            Some(first.peer),
            offer("ada").await,
        ))
        .await;
    assert_eq!(again.unwrap_err(), NegotiationError::Closed);
    assert_eq!(
        peers_after_housekeeping(&engine).await,
        0,
        "no peer nobody knows of"
    );
    assert!(engine.sessions().is_empty());
    engine.join();
}

#[tokio::test]
async fn rooms_and_instances_admit_up_to_their_participant_limits() {
    let limits = MediaLimits {
        room_participants: 2,
        participants: 3,
        ..MediaLimits::default()
    };
    let (engine, _events) = spawn_engine(config(limits)).unwrap();
    for s in ["a", "b"] {
        engine
            .negotiate(session_offer(key("r1", s), None, offer(s).await))
            .await
            .unwrap();
    }
    let third = engine
        .negotiate(session_offer(key("r1", "c"), None, offer("c").await))
        .await;
    assert_eq!(third.unwrap_err(), NegotiationError::RoomFull { max: 2 });
    engine
        .negotiate(session_offer(key("r2", "d"), None, offer("d").await))
        .await
        .unwrap();
    let fifth = engine
        .negotiate(session_offer(key("r3", "e"), None, offer("e").await))
        .await;
    assert_eq!(
        fifth.unwrap_err(),
        NegotiationError::InstanceFull { max: 3 }
    );
    assert_eq!(peers_after_housekeeping(&engine).await, 3);
    engine.join();
}

/// The `a=mid` of the offer's first m-line of `kind`.
fn mid_of(sdp: &str, kind: &str) -> String {
    let section = sdp.split("\r\nm=").find(|s| s.starts_with(kind)).unwrap();
    let mid = section
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .unwrap();
    mid.trim().to_owned()
}

#[tokio::test]
async fn a_room_takes_as_many_screen_shares_as_its_presenter_limit() {
    use firesfu::media::TrackSource;
    let (engine, _events) = spawn_engine(config(MediaLimits::default())).unwrap();
    let sharing = |session: &str, sdp: String, kind: &str, presenters: u32| {
        let mut offer = session_offer(key("r1", session), None, sdp.clone());
        offer.sources = [(mid_of(&sdp, kind), TrackSource::Screen)].into();
        offer.presenters = presenters;
        offer
    };
    let a = engine
        .negotiate(sharing("a", offer("a").await, "video", 1))
        .await
        .unwrap();
    assert!(a.roster.presents(), "{:?}", a.roster);
    let refused = engine
        .negotiate(sharing("b", offer("b").await, "video", 1))
        .await;
    let refused = refused.unwrap_err();
    assert_eq!(
        refused,
        NegotiationError::PresenterBusy {
            presenter: "a".into(),
            max: 1
        }
    );
    assert_eq!(
        refused.to_string(),
        "a is presenting; the room allows one screen share at a time"
    );
    // Without a share b joins, its video a camera; with room for two it may share.
    let b = engine
        .negotiate(session_offer(key("r1", "b"), None, offer("b").await))
        .await
        .unwrap();
    assert!(!b.roster.presents());
    assert!(
        b.roster
            .sources
            .values()
            .all(|s| matches!(s, TrackSource::Camera | TrackSource::Microphone))
    );
    engine
        .negotiate(sharing("c", offer("c").await, "video", 2))
        .await
        .unwrap();
    // The source must fit the m-line's kind.
    let wrong = engine
        .negotiate(sharing("d", offer("d").await, "audio", 0))
        .await;
    assert!(matches!(
        wrong.unwrap_err(),
        NegotiationError::SourceKind { .. }
    ));
    engine.join();
}
