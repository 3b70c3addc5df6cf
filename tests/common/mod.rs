//! What the integration tests run against: the real Firestore emulator and a real
//! `firesfu broadcast` process, with str0m peers (crate `testpeer`) as clients.
//!
//! `make test` starts one emulator for the whole run and exports `FIRESTORE_EMULATOR_HOST`;
//! without it, the first test starts its own (in its own process group, killed at exit).
//! Every test uses a fresh `demo-…` project, so tests share the emulator without seeing
//! each other's documents.

#![allow(dead_code)]

pub mod bridge;
pub mod documents;
pub mod emulators;
pub mod fleet;
pub mod otlp;
pub mod rtsp;
pub mod sidecar;
pub mod webhooks;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use firestore::FirestoreDb;
use serde_json::Value;

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port below Linux's ephemeral range (32768–60999), for a server that stops and
/// must bind the same port again: a port from the ephemeral range can meanwhile become the
/// local end of some outgoing connection.
pub fn stable_tcp_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An emulator this test process started (only when none was provided).
struct OwnEmulator {
    host: String,
    pgid: u32,
}

impl Drop for OwnEmulator {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &format!("-{}", self.pgid)])
            .status();
    }
}

static EMULATOR: OnceLock<Result<String, String>> = OnceLock::new();
static OWN: OnceLock<std::sync::Mutex<Option<OwnEmulator>>> = OnceLock::new();

fn http_ok(host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&host.parse().unwrap(), Duration::from_millis(300))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = write!(s, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("Ok")
}

fn start_emulator() -> Result<String, String> {
    let port = free_tcp_port();
    let host = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(log_dir().join("firestore-emulator.log"))
        .map_err(|e| e.to_string())?;
    let child = watched(&format!(
        "gcloud emulators firestore start --host-port={host}"
    ))
    .stdout(log.try_clone().map_err(|e| e.to_string())?)
    .stderr(log)
    .spawn()
    .map_err(|e| format!("cannot start the Firestore emulator (gcloud): {e}"))?;
    OWN.get_or_init(Default::default)
        .lock()
        .unwrap()
        .replace(OwnEmulator {
            host: host.clone(),
            pgid: child.id(),
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_ok(&host) {
            return Ok(host);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("the Firestore emulator did not come up within 60 s".into())
}

/// Starts `command` in a new process group with a watchdog: it is killed when this test
/// process exits (statics are never dropped, so a `Drop` would not run). gcloud makes its own
/// process group, hence the `kill -- -$g`.
pub fn watched(command: &str) -> Command {
    let script = format!(
        "{command} & g=$!; trap 'kill -- -$g 2>/dev/null; kill 0' EXIT; \
         while kill -0 {} 2>/dev/null; do sleep 1; done",
        std::process::id()
    );
    let mut c = Command::new("setsid");
    c.args(["bash", "-c", &script]);
    c
}

/// `host:port` of the Firestore emulator.
pub fn emulator() -> String {
    EMULATOR
        .get_or_init(|| match std::env::var("FIRESTORE_EMULATOR_HOST") {
            Ok(host) if http_ok(&host) => Ok(host),
            Ok(host) => Err(format!("FIRESTORE_EMULATOR_HOST={host} does not answer")),
            Err(_) => start_emulator(),
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A fresh project on the shared emulator.
pub struct Project {
    pub id: String,
    pub host: String,
    pub db: FirestoreDb,
}

impl Project {
    pub async fn new() -> Project {
        Project::at(&emulator()).await
    }

    /// A fresh project on the Firestore emulator at `host`.
    pub async fn at(host: &str) -> Project {
        let host = host.to_owned();
        let id = unique("demo-t");
        let db = testpeer::firestore::connect_emulator(&host, &id)
            .await
            .unwrap();
        Project { id, host, db }
    }

    pub async fn room(&self, name: &str) -> String {
        testpeer::firestore::create_room(&self.db, name)
            .await
            .unwrap();
        name.to_owned()
    }

    /// A str0m participant with the default spec (publishes audio and video, follows `wants`).
    pub async fn join(&self, room: &str, session: &str) -> testpeer::Peer {
        testpeer::Peer::join(&self.db, testpeer::PeerSpec::new(room, session))
            .await
            .unwrap()
    }

    /// The room's document, if there is one.
    pub async fn room_doc(&self, room: &str) -> Option<Value> {
        self.db
            .fluent()
            .select()
            .by_id_in("rooms")
            .obj()
            .one(room)
            .await
            .ok()
            .flatten()
    }

    /// The public document of one of the room's cameras (`rooms/{room}/cameras/{id}`).
    pub async fn camera_doc(&self, room: &str, camera: &str) -> Option<Value> {
        self.db
            .fluent()
            .select()
            .by_id_in("cameras")
            .parent(self.db.parent_path("rooms", room).unwrap())
            .obj()
            .one(camera)
            .await
            .ok()
            .flatten()
    }

    /// The room's `participants` documents (the roster the server writes).
    pub async fn roster(&self, room: &str) -> Vec<firestore::FirestoreDocument> {
        self.db
            .fluent()
            .select()
            .from("participants")
            .parent(self.db.parent_path("rooms", room).unwrap())
            .query()
            .await
            .unwrap()
    }
}

/// A running `firesfu broadcast`.
pub struct Broadcast {
    child: Child,
    pub http: SocketAddr,
    pub udp: SocketAddr,
    pub instance: String,
    pub log: PathBuf,
}

pub struct BroadcastOptions {
    pub instance: Option<String>,
    pub peer_timeout_secs: u64,
    pub extra: Vec<(String, String)>,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        BroadcastOptions {
            instance: None,
            peer_timeout_secs: 15,
            extra: vec![],
        }
    }
}

impl Broadcast {
    pub async fn start(project: &Project) -> Broadcast {
        Broadcast::start_with(project, BroadcastOptions::default()).await
    }

    pub async fn start_with(project: &Project, options: BroadcastOptions) -> Broadcast {
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let udp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let instance = options.instance.clone().unwrap_or_else(|| unique("bc"));
        let log = log_dir().join(format!("{}-{instance}.log", project.id));
        let file = std::fs::File::create(&log).unwrap();
        // `make bench` runs the release build (FIRESFU_TEST_BIN); tests, this one.
        let bin = std::env::var("FIRESFU_TEST_BIN").unwrap_or(env!("CARGO_BIN_EXE_firesfu").into());
        let mut cmd = Command::new(bin);
        cmd.arg("broadcast")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("FIRESFU_TEST_LOG").unwrap_or("info,firesfu=debug".into()),
            )
            .env("GOOGLE_CLOUD_PROJECT", &project.id)
            .env("FIRESTORE_EMULATOR_HOST", &project.host)
            .env("FIRESFU_INSTANCE_ID", &instance)
            .env("FIRESFU_UDP_BIND", udp.to_string())
            .env("FIRESFU_DEV_NO_AUTH", "true")
            .env(
                "FIRESFU_PEER_TIMEOUT_SECS",
                options.peer_timeout_secs.to_string(),
            )
            .env("APP_PORT", http.port().to_string())
            .env("FIRESFU_HTTP_BIND_IP", "127.0.0.1")
            .env("FIRESFU_SHUTDOWN_GRACE_SECS", "5");
        for (k, v) in &options.extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("cannot start firesfu");
        let mut b = Broadcast {
            child,
            http,
            udp,
            instance,
            log,
        };
        b.wait_healthy().await;
        b
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("firesfu exited ({status}); log:\n{}", self.log_text());
            }
            if self.stats().await.is_ok() && self.log_text().contains("broadcast is serving") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("firesfu did not become healthy; log:\n{}", self.log_text());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        firesfu::process::resident_kib(self.child.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/stats` counters.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        let http = self.http;
        tokio::task::spawn_blocking(move || http_get_json(http, "/stats")).await?
    }

    pub async fn stat(&self, name: &str) -> u64 {
        self.stats()
            .await
            .ok()
            .and_then(|s| s.get(name).and_then(Value::as_u64))
            .unwrap_or(0)
    }

    /// SIGTERM, then wait for the exit (the process ends its sessions first).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM without waiting.
    pub fn signal_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The exit status, once the process has exited within `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Broadcast {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

pub(crate) fn http_get_json(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out.split_once("\r\n\r\n").context("no HTTP body")?.1;
    Ok(serde_json::from_str(body)?)
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
