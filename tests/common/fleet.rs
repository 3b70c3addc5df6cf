//! The fleet under test: the Pub/Sub emulator, `firesfu monitor` processes, fleet-mode
//! broadcast instances, and str0m participants that join again when their room moves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use testpeer::{Leave, Peer, PeerSpec, Report};

use super::{Broadcast, BroadcastOptions, Project, free_tcp_port, http_get_json, log_dir, unique};

struct OwnPubsub {
    pgid: u32,
}

impl Drop for OwnPubsub {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &format!("-{}", self.pgid)])
            .status();
    }
}

static PUBSUB: OnceLock<Result<String, String>> = OnceLock::new();
static OWN_PUBSUB: OnceLock<std::sync::Mutex<Option<OwnPubsub>>> = OnceLock::new();

fn answers(host: &str) -> bool {
    std::net::TcpStream::connect_timeout(&host.parse().unwrap(), Duration::from_millis(300)).is_ok()
}

fn start_pubsub() -> Result<String, String> {
    let host = format!("127.0.0.1:{}", free_tcp_port());
    let log =
        std::fs::File::create(log_dir().join("pubsub-emulator.log")).map_err(|e| e.to_string())?;
    let child = super::watched(&format!(
        "gcloud beta emulators pubsub start --host-port={host}"
    ))
    .stdout(log.try_clone().map_err(|e| e.to_string())?)
    .stderr(log)
    .spawn()
    .map_err(|e| format!("cannot start the Pub/Sub emulator (gcloud): {e}"))?;
    OWN_PUBSUB
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .replace(OwnPubsub { pgid: child.id() });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if answers(&host) {
            return Ok(host);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("the Pub/Sub emulator did not come up within 60 s".into())
}

/// `host:port` of the Pub/Sub emulator (`make test` exports PUBSUB_EMULATOR_HOST).
pub fn pubsub() -> String {
    PUBSUB
        .get_or_init(|| match std::env::var("PUBSUB_EMULATOR_HOST") {
            Ok(host) if answers(&host) => Ok(host),
            Ok(host) => Err(format!("PUBSUB_EMULATOR_HOST={host} does not answer")),
            Err(_) => start_pubsub(),
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Fleet-mode broadcast settings: reports every `report_ms`, placement required.
pub fn fleet_options(instance: &str, report_ms: u64, extra: &[(&str, &str)]) -> BroadcastOptions {
    fleet_options_at(&pubsub(), instance, report_ms, extra)
}

/// [`fleet_options`] with the Pub/Sub emulator at `pubsub`.
pub fn fleet_options_at(
    pubsub: &str,
    instance: &str,
    report_ms: u64,
    extra: &[(&str, &str)],
) -> BroadcastOptions {
    let mut env = vec![
        ("FIRESFU_FLEET".to_string(), "true".to_string()),
        ("PUBSUB_EMULATOR_HOST".to_string(), pubsub.to_owned()),
        ("FIRESFU_LOAD_REPORT_MS".to_string(), report_ms.to_string()),
        ("FIRESFU_DRAIN_GRACE_SECS".to_string(), "30".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    BroadcastOptions {
        instance: Some(instance.into()),
        extra: env,
        ..Default::default()
    }
}

pub async fn fleet_broadcast(
    project: &Project,
    instance: &str,
    extra: &[(&str, &str)],
) -> Broadcast {
    Broadcast::start_with(project, fleet_options(instance, 500, extra)).await
}

/// A running `firesfu monitor`.
pub struct Monitor {
    child: Child,
    pub id: String,
    pub http: std::net::SocketAddr,
    pub log: PathBuf,
}

impl Monitor {
    pub async fn start(project: &Project, id: &str, stale_ms: u64) -> Monitor {
        Monitor::start_at(&pubsub(), project, id, stale_ms).await
    }

    /// [`Monitor::start`] with the Pub/Sub emulator at `pubsub`.
    pub async fn start_at(pubsub: &str, project: &Project, id: &str, stale_ms: u64) -> Monitor {
        let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = log_dir().join(format!("{}-{id}.log", project.id));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_firesfu"))
            .arg("monitor")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("FIRESFU_TEST_LOG").unwrap_or("info,firesfu=debug".into()),
            )
            .env("GOOGLE_CLOUD_PROJECT", &project.id)
            .env("FIRESTORE_EMULATOR_HOST", &project.host)
            .env("PUBSUB_EMULATOR_HOST", pubsub)
            .env("FIRESFU_MONITOR_ID", id)
            // room.moved for the webhook tests (harmless elsewhere: nobody subscribes).
            .env("FIRESFU_EVENTS", "true")
            .env("FIRESFU_STALE_AFTER_MS", stale_ms.to_string())
            .env("FIRESFU_LEASE_MS", "3000")
            .env("FIRESFU_MONITOR_TICK_MS", "100")
            .env("APP_PORT", http.port().to_string())
            .env("FIRESFU_HTTP_BIND_IP", "127.0.0.1")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("cannot start firesfu monitor");
        let mut m = Monitor {
            child,
            id: id.into(),
            http,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("monitor exited ({status}); log:\n{}", m.log_text());
            }
            if m.status().await.is_some() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("monitor did not start; log:\n{}", m.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn status(&self) -> Option<Value> {
        let http = self.http;
        tokio::task::spawn_blocking(move || http_get_json(http, "/status").ok())
            .await
            .ok()
            .flatten()
    }

    pub async fn leads(&self) -> bool {
        self.status().await.is_some_and(|s| s["leader"] == true)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The room's `assignment` (instance, epoch), if any, and its placement error code.
pub async fn assignment(project: &Project, room: &str) -> (Option<(String, i64)>, Option<String>) {
    let doc = project.room_doc(room).await.unwrap_or_default();
    let a = doc.get("assignment").and_then(|a| {
        Some((
            a.get("instance")?.as_str()?.to_owned(),
            a.get("epoch")?.as_i64()?,
        ))
    });
    let error = doc
        .pointer("/placementError/code")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (a, error)
}

/// The room's assignment, once it has one (within 30 s).
pub async fn assigned(project: &Project, room: &str) -> (String, i64) {
    super::eventually(
        &format!("room {room} assigned"),
        Duration::from_secs(30),
        async || assignment(project, room).await.0,
    )
    .await
    .unwrap()
}

/// A person in a room: a str0m peer that joins again (a new session) when the server ends its
/// session with `room-moved`, as the protocol says a client should.
pub struct Member {
    pub name: String,
    room: String,
    generation: u32,
    pub peer: Peer,
    /// Sessions that ended with `room-moved`.
    pub moves: u32,
    /// Its sessions also receive H.264 and G.711 (IP cameras).
    camera_codecs: bool,
}

impl Member {
    pub async fn join(project: &Project, room: &str, name: &str) -> Member {
        Member::join_as(project, room, name, false).await
    }

    /// A member whose sessions also receive what IP cameras send.
    pub async fn join_camera_viewer(project: &Project, room: &str, name: &str) -> Member {
        Member::join_as(project, room, name, true).await
    }

    async fn join_as(project: &Project, room: &str, name: &str, camera_codecs: bool) -> Member {
        let spec = member_spec(room, &format!("{name}-0"), camera_codecs);
        Member {
            name: name.into(),
            room: room.into(),
            generation: 0,
            peer: Peer::join(&project.db, spec).await.unwrap(),
            moves: 0,
            camera_codecs,
        }
    }

    pub fn session(&self) -> String {
        format!("{}-{}", self.name, self.generation)
    }

    /// Joins again if the current session was ended by a move. True when it did.
    pub async fn follow(&mut self, project: &Project) -> bool {
        let r = self.peer.report();
        let mut moved = r
            .error
            .as_ref()
            .is_some_and(|(code, _)| code == "room-moved");
        // The old instance may close the peer connection before the document update arrives;
        // the peer then stops listening, so read the document.
        if !moved && r.finished.is_some() {
            let doc = self.peer.doc.read().await.ok().flatten();
            moved = doc.is_some_and(|d| {
                d.pointer("/error/code").and_then(Value::as_str) == Some("room-moved")
            });
        }
        if !moved {
            return false;
        }
        self.moves += 1;
        self.generation += 1;
        let spec = member_spec(&self.room, &self.session(), self.camera_codecs);
        let next = Peer::join(&project.db, spec).await.unwrap();
        let old = std::mem::replace(&mut self.peer, next);
        let _ = old.leave(Leave::Vanish).await;
        true
    }

    /// What the current session received from `other`'s sessions (any generation).
    pub fn frames_from(report: &Report, other: &str) -> (u64, u64) {
        report
            .received
            .iter()
            .filter(|(tag, _)| tag.starts_with(&format!("{other}-")))
            .fold((0, 0), |(a, v), (_, r)| (a + r.audio, v + r.video))
    }
}

fn member_spec(room: &str, session: &str, camera_codecs: bool) -> PeerSpec {
    let mut spec = PeerSpec::new(room, session);
    spec.camera_codecs = camera_codecs;
    spec
}

/// Follows moves until every member receives audio and video from every other one (through
/// its current session), or fails after `timeout`. Returns the time it took.
pub async fn until_everyone_receives_everyone(
    project: &Project,
    members: &mut [Member],
    frames: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    loop {
        for m in members.iter_mut() {
            m.follow(project).await;
        }
        let all = members.iter().all(|m| {
            let r = m.peer.report();
            names.iter().filter(|n| **n != m.name).all(|n| {
                let (audio, video) = Member::frames_from(&r, n);
                audio >= frames && video >= frames
            })
        });
        if all {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            let reports: Vec<String> = members
                .iter()
                .map(|m| format!("{} ({}): {:?}", m.name, m.session(), m.peer.report()))
                .collect();
            anyhow::bail!(
                "not everyone receives everyone after {timeout:?}:\n{}",
                reports.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn unique_room() -> String {
    unique("room")
}
