//! Webhook tests' helpers: the Python receiver (`tests/webhooks/receiver.py`, which verifies
//! deliveries with the `standardwebhooks` library), a broadcast and a sidecar wired to the
//! events topic, and API keys made with `firesfu apikey`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::fleet::pubsub;
use super::sidecar::{Sidecar, SidecarOptions};
use super::{Broadcast, BroadcastOptions, Project, eventually, free_tcp_port, log_dir, unique};

pub struct Receiver {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let port = free_tcp_port();
        let dir = log_dir().join(unique("receiver"));
        std::fs::create_dir_all(&dir).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py");
        let child = Command::new("python3")
            .args([script, &port.to_string(), dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("receiver.log")).unwrap(),
            ))
            .spawn()
            .expect("python3");
        let r = Receiver { child, port, dir };
        eventually(
            "the receiver listens",
            Duration::from_secs(20),
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", r.log()));
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("receiver.log")).unwrap_or_default()
    }

    pub fn url(&self, behaviour: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{behaviour}/{name}", self.port)
    }

    /// Tells the receiver `name`'s signing secret.
    pub fn secret(&self, name: &str, secret: &str) {
        let path = self.dir.join("secrets.json");
        let mut all: BTreeMap<String, String> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        all.insert(name.into(), secret.into());
        let tmp = self.dir.join("secrets.json.tmp");
        std::fs::write(&tmp, serde_json::to_string(&all).unwrap()).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// A `flaky` endpoint's answers from now on: 204 (`true`) or 503.
    pub fn flaky(&self, name: &str, ok: bool) {
        std::fs::write(
            self.dir.join(format!("flaky-{name}")),
            if ok { "ok" } else { "fail" },
        )
        .unwrap();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("deliveries.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The requests `name` received.
    pub fn requests_of(&self, name: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["name"] == name)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broadcast instance publishing events (standalone, no placement).
pub async fn broadcast(project: &Project) -> Broadcast {
    Broadcast::start_with(
        project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_EVENTS".into(), "true".into()),
                ("PUBSUB_EMULATOR_HOST".into(), pubsub()),
            ],
            ..Default::default()
        },
    )
    .await
}

/// The sidecar's environment for delivering webhooks, with quick retries: 50 ms ×4 per
/// attempt (at most 1 s), given up `retry_for_secs` after the event arrived, 2 s per attempt.
pub fn sidecar_env(retry_for_secs: u64) -> Vec<(String, String)> {
    [
        ("FIRESFU_WEBHOOKS", "true".to_string()),
        ("PUBSUB_EMULATOR_HOST", pubsub()),
        ("FIRESFU_WEBHOOK_RETRY_BASE_MS", "50".into()),
        ("FIRESFU_WEBHOOK_RETRY_MAX_MS", "1000".into()),
        ("FIRESFU_WEBHOOK_RETRY_FOR_SECS", retry_for_secs.to_string()),
        ("FIRESFU_WEBHOOK_TIMEOUT_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A sidecar delivering webhooks, once its subscription exists (events published before that
/// are not kept for it).
pub async fn sidecar(project: &Project, db: String, retry_for_secs: u64) -> Sidecar {
    let s = Sidecar::start(
        project,
        db,
        SidecarOptions {
            env: sidecar_env(retry_for_secs),
            ..Default::default()
        },
    )
    .await;
    subscribed(&s).await;
    s
}

pub async fn subscribed(s: &Sidecar) {
    eventually(
        "the events subscription",
        Duration::from_secs(30),
        async || {
            std::fs::read_to_string(&s.log)
                .unwrap_or_default()
                .contains("taking events for webhooks")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(&s.log).unwrap_or_default()
        )
    });
}

/// `firesfu apikey …` against `db`: (success, stdout, stderr).
pub fn apikey(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firesfu"))
        .arg("apikey")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .output()
        .expect("firesfu apikey");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Revokes the newest key of `apikey list`'s output.
pub fn revoke_newest(db: &str, listed: &str) {
    let id = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .next_back()
        .expect("a key")["id"]
        .as_str()
        .expect("its id")
        .to_owned();
    assert!(apikey(db, &["revoke", &id]).0);
}

/// A new key with the `webhooks` scope.
pub fn webhooks_key(db: &str) -> String {
    let (ok, key, err) = apikey(db, &["create", "--name", "tests", "--scope", "webhooks"]);
    assert!(ok, "{err}");
    assert!(key.starts_with("fsk_"), "{key}");
    key
}

/// Registers `url` as an endpoint (`types`: all when empty) and tells the receiver its secret.
pub async fn endpoint(
    s: &Sidecar,
    key: &str,
    receiver: &Receiver,
    (behaviour, name): (&str, &str),
    types: &[&str],
) -> String {
    let (status, body) = s
        .call(
            "POST",
            "/v1/webhooks",
            Some(key),
            Some(json!({"url": receiver.url(behaviour, name), "eventTypes": types, "description": name})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    receiver.secret(name, body["secret"].as_str().unwrap());
    body["id"].as_str().unwrap().to_owned()
}

/// The deliveries `name` verified and accepted (2xx), first acceptance of each id, in arrival
/// order.
pub fn accepted(receiver: &Receiver, name: &str) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    receiver
        .requests_of(name)
        .into_iter()
        .filter(|r| r["verified"] == true && r["status"] == 204)
        .filter(|r| seen.insert(r["id"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// `type` of each delivery.
pub fn types(deliveries: &[Value]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d["event"]["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}
