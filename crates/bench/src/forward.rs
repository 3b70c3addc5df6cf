//! CPU time per forwarded packet: one publisher (~1000 packets/s) to N subscribers, for firesfu
//! and for Janus, with the same str0m clients. The server runs pinned to one core (the script
//! does that); clients run on the other.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use testpeer::endpoint::{Endpoint, MediaSpec};
use testpeer::{Leave, Peer, PeerSpec, Report, VideoSource};

use crate::janus::JanusSession;
use crate::stats::{cpu_time, firesfu_stats, group_cpu_time};

pub struct Load {
    pub subscribers: usize,
    pub seconds: u64,
    pub frame_bytes: usize,
    pub bind_ip: IpAddr,
    /// Every client over ICE-TCP instead of UDP (firesfu only).
    pub tcp: bool,
}

fn rx_total(reports: &[Report]) -> u64 {
    reports.iter().map(|r| r.rtp_received).sum()
}

fn result(
    name: &str,
    cpu: Duration,
    forwarded: u64,
    received: u64,
    seconds: u64,
    extra: Value,
) -> Value {
    let us = cpu.as_secs_f64() * 1e6 / forwarded.max(1) as f64;
    println!(
        "{name}: {forwarded} packets forwarded in {seconds} s ({:.0}/s), {received} received by subscribers, \
         server CPU {:.2} s ({:.0}% of a core) → {us:.2} µs per forwarded packet",
        forwarded as f64 / seconds as f64,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / seconds as f64 * 100.0,
    );
    json!({"server": name, "forwarded": forwarded, "receivedBySubscribers": received, "seconds": seconds,
           "cpuSeconds": cpu.as_secs_f64(), "usPerForwardedPacket": us, "extra": extra})
}

pub async fn firesfu(
    emulator: &str,
    project: &str,
    stats_url: &str,
    pid: u32,
    load: &Load,
) -> anyhow::Result<Value> {
    let db = testpeer::firestore::connect_emulator(emulator, project).await?;
    let room = format!("fwd-bench-{:06x}", rand::random::<u32>() & 0xffffff);
    testpeer::firestore::create_room(&db, &room).await?;
    let transport = if load.tcp {
        testpeer::endpoint::Transport::Tcp
    } else {
        testpeer::endpoint::Transport::Udp
    };
    let mut spec = PeerSpec::new(&room, "pub");
    (spec.follow_wants, spec.bind_ip, spec.transport) = (false, load.bind_ip, transport);
    spec.video = VideoSource::Tagged {
        frame_bytes: load.frame_bytes,
    };
    let publisher = Peer::join(&db, spec).await?;
    let mut subs = Vec::new();
    for i in 0..load.subscribers {
        let mut spec = PeerSpec::new(&room, &format!("sub{i}"));
        (
            spec.publish_audio,
            spec.publish_video,
            spec.recv_audio,
            spec.recv_video,
        ) = (false, false, 1, 1);
        (spec.follow_wants, spec.bind_ip, spec.transport) = (false, load.bind_ip, transport);
        // One at a time: the clients share a core with the emulator.
        let sub = Peer::join(&db, spec).await?;
        sub.wait_until("media", Duration::from_secs(60), |r| {
            r.video_from("pub") > 10
        })
        .await?;
        subs.push(sub);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (cpu0, s0) = (cpu_time(pid)?, firesfu_stats(stats_url).await?);
    let rx0 = rx_total(&subs.iter().map(Peer::report).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    let (cpu1, s1) = (cpu_time(pid)?, firesfu_stats(stats_url).await?);
    let rx1 = rx_total(&subs.iter().map(Peer::report).collect::<Vec<_>>());

    let counter = |s: &Value, k: &str| s[k].as_u64().unwrap_or(0);
    let forwarded = counter(&s1, "rtpForwarded") - counter(&s0, "rtpForwarded");
    let rtp_in = counter(&s1, "rtpIn") - counter(&s0, "rtpIn");
    let padding = counter(&s1, "droppedPadding") - counter(&s0, "droppedPadding");
    let extra = json!({"publisherPacketsPerSecond": rtp_in as f64 / load.seconds as f64,
                       "paddingDropped": padding,
                       "kernelReceiveDrops": s1["kernelReceiveDrops"], "sendErrors": s1["sendErrors"],
                       "tcpSendDropped": s1["tcpSendDropped"], "peersOverTcp": s1["peersOverTcp"]});
    println!(
        "firesfu: publisher sent {:.0} packets/s ({padding} padding-only probes not forwarded)",
        rtp_in as f64 / load.seconds as f64
    );
    let out = result(
        if load.tcp { "firesfu-tcp" } else { "firesfu" },
        cpu1 - cpu0,
        forwarded,
        rx1 - rx0,
        load.seconds,
        extra,
    );
    for s in subs {
        s.leave(Leave::Close).await?;
    }
    publisher.leave(Leave::Close).await?;
    Ok(out)
}

/// A str0m endpoint driven in its own task until dropped.
struct Running {
    report: Arc<Mutex<Report>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spawn_loop(mut ep: Endpoint, report: Arc<Mutex<Report>>) -> Running {
    let task = tokio::spawn(async move {
        loop {
            if ep.step().await.is_err() {
                break;
            }
        }
    });
    Running { report, task }
}

pub async fn janus(base: &str, pgid: u32, load: &Load) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    // The room: no bitrate cap, so Janus forwards everything the publisher sends.
    let admin = JanusSession::create(&http, base).await?;
    let admin_handle = admin.attach().await?;
    let room = 4242;
    let _ = admin
        .message(
            &admin_handle,
            json!({"request": "create", "room": room, "publishers": 1, "bitrate": 0,
                                        "audiocodec": "opus", "videocodec": "vp8", "fir_freq": 0}),
            None,
        )
        .await;

    let report = Arc::new(Mutex::new(Report::default()));
    let spec = MediaSpec {
        tag: "pub".into(),
        publish_audio: true,
        publish_video: true,
        video: VideoSource::Tagged {
            frame_bytes: load.frame_bytes,
        },
        video_delay: Duration::ZERO,
        remb: None,
        camera_codecs: false,
    };
    let mut ep = Endpoint::bind(load.bind_ip, spec, report.clone()).await?;
    let session = JanusSession::create(&http, base).await?;
    let handle = session.attach().await?;
    session
        .message(
            &handle,
            json!({"request": "join", "ptype": "publisher", "room": room, "display": "pub"}),
            None,
        )
        .await?;
    let joined = session
        .wait_event("joined", |e| {
            e["plugindata"]["data"]["videoroom"] == "joined"
        })
        .await?;
    let feed = joined["plugindata"]["data"]["id"].clone();
    let (offer, pending) = ep.first_offer(0, 0)?;
    session
        .message(
            &handle,
            json!({"request": "publish", "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer})),
        )
        .await?;
    session.candidates_done(&handle).await?;
    let answered = session
        .wait_event("publish answer", |e| e["jsep"]["type"] == "answer")
        .await?;
    ep.accept_answer(
        pending,
        answered["jsep"]["sdp"].as_str().context("answer sdp")?,
    )?;
    let publisher = spawn_loop(ep, report);
    // Janus lists a feed only once its PeerConnection is up.
    session
        .wait_event("publisher webrtcup", |e| e["janus"] == "webrtcup")
        .await?;
    let _keep = (session, admin);

    let mut subs = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..load.subscribers {
        let report = Arc::new(Mutex::new(Report::default()));
        let spec = MediaSpec {
            tag: format!("sub{i}"),
            publish_audio: false,
            publish_video: false,
            video: VideoSource::Tagged { frame_bytes: 0 },
            video_delay: std::time::Duration::ZERO,
            remb: None,
            camera_codecs: false,
        };
        let mut ep = Endpoint::bind(load.bind_ip, spec, report.clone()).await?;
        let session = JanusSession::create(&http, base).await?;
        let handle = session.attach().await?;
        session
            .message(&handle, json!({"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}), None)
            .await?;
        let offered = session
            .wait_event("subscriber offer", |e| e["jsep"]["type"] == "offer")
            .await?;
        let answer = ep.accept_offer(offered["jsep"]["sdp"].as_str().context("offer sdp")?)?;
        session
            .message(
                &handle,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer})),
            )
            .await?;
        session.candidates_done(&handle).await?;
        subs.push(spawn_loop(ep, report));
        sessions.push(session);
    }
    let reports = || {
        subs.iter()
            .map(|s| s.report.lock().map(|r| r.clone()).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while reports().iter().any(|r| r.rtp_received < 200) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "Janus subscribers got no media: {:?}",
            reports().iter().map(|r| r.rtp_received).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (cpu0, rx0, sent0) = (
        group_cpu_time(pgid)?,
        rx_total(&reports()),
        publisher.report.lock().unwrap().sent_video,
    );
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    let (cpu1, rx1, sent1) = (
        group_cpu_time(pgid)?,
        rx_total(&reports()),
        publisher.report.lock().unwrap().sent_video,
    );
    // Janus has no forwarding counter we can read cheaply: what the subscribers received is
    // what it forwarded (firesfu's run shows the two agree within loss).
    let received = rx1 - rx0;
    let extra =
        json!({"publisherVideoFramesPerSecond": (sent1 - sent0) as f64 / load.seconds as f64});
    Ok(result(
        "janus",
        cpu1 - cpu0,
        received,
        received,
        load.seconds,
        extra,
    ))
}
