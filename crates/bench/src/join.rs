//! Join latency over the Firestore emulator: offer written → answer written, and offer
//! written → first media from the room at the joiner.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use testpeer::{Leave, Peer, PeerSpec};

use crate::stats::summary;

pub async fn run(
    emulator: &str,
    project: &str,
    joins: usize,
    bind_ip: IpAddr,
) -> anyhow::Result<serde_json::Value> {
    let db = testpeer::firestore::connect_emulator(emulator, project).await?;
    let room = format!("join-bench-{:06x}", rand::random::<u32>() & 0xffffff);
    testpeer::firestore::create_room(&db, &room).await?;

    let mut spec = PeerSpec::new(&room, "host");
    (
        spec.recv_audio,
        spec.recv_video,
        spec.follow_wants,
        spec.bind_ip,
    ) = (1, 1, false, bind_ip);
    let host = Peer::join(&db, spec).await?;
    host.wait_until("host connected", Duration::from_secs(20), |r| r.connected)
        .await?;

    let (mut written, mut seen, mut first_media, mut connect) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..joins {
        let mut spec = PeerSpec::new(&room, &format!("joiner{i}"));
        (
            spec.recv_audio,
            spec.recv_video,
            spec.follow_wants,
            spec.bind_ip,
        ) = (1, 1, false, bind_ip);
        let joiner = Peer::join(&db, spec).await?;
        let r = joiner
            .wait_until("media from the host", Duration::from_secs(20), |r| {
                r.video_from("host") > 0
            })
            .await
            .with_context(|| format!("join {i}"))?;
        written.push(
            r.answer_written
                .context("no Firestore timing")?
                .as_secs_f64()
                * 1000.0,
        );
        seen.push(r.answer_latency[0].as_secs_f64() * 1000.0);
        first_media.push(r.first_media.context("no first media")?.as_secs_f64() * 1000.0);
        connect.push(r.connect_time.context("no connect time")?.as_secs_f64() * 1000.0);
        joiner.leave(Leave::Close).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    host.leave(Leave::Close).await?;
    Ok(serde_json::json!([
        summary(
            "offer written -> answer written (Firestore clock), ms",
            written
        ),
        summary(
            "offer write acknowledged -> answer seen by the client, ms",
            seen
        ),
        summary(
            "offer written -> first media from the room at the joiner, ms",
            first_media
        ),
        summary(
            "answer applied -> ICE+DTLS connected (str0m nominates ~0.5 s after its first check), ms",
            connect
        ),
    ]))
}
