//! PostgreSQL clusters and `firesfu sidecar` processes for the integration tests.
//!
//! `make test` starts one cluster and exports `FIRESFU_TEST_PG`; each test gets its own
//! database in it. A test that stops the database runs its own cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Project, free_tcp_port, log_dir, stable_tcp_port, unique};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A cluster this test owns (initdb'd into a folder of the system's temporary directory, which
/// `postgres` can enter wherever the checkout is; run as `postgres`).
pub struct OwnCluster {
    dir: PathBuf,
    pub port: u16,
}

fn as_postgres(args: &[&str]) -> std::process::ExitStatus {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runuser")
}

impl OwnCluster {
    pub fn start() -> OwnCluster {
        let dir = std::env::temp_dir().join(unique("firesfu-pg"));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chown")
            .arg("postgres")
            .arg(&dir)
            .status()
            .unwrap();
        let data = dir.join("data");
        let initdb = format!("{PG_BIN}/initdb");
        assert!(
            as_postgres(&[
                &initdb,
                "-D",
                data.to_str().unwrap(),
                "-U",
                "firesfu",
                "--auth=trust"
            ])
            .success()
        );
        let c = OwnCluster {
            dir,
            port: stable_tcp_port(),
        };
        c.resume();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://firesfu@127.0.0.1:{}", self.port)
    }

    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        assert!(
            as_postgres(&[
                &pg_ctl,
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &opts,
                "start"
            ])
            .success()
        );
    }

    pub fn stop(&self) {
        let data = self.dir.join("data");
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        as_postgres(&[
            &pg_ctl,
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh database on the shared cluster (or on `cluster`), as a connection URL.
pub async fn database(cluster: Option<&OwnCluster>) -> String {
    let base = match cluster {
        Some(c) => c.url(),
        None => std::env::var("FIRESFU_TEST_PG")
            .expect("FIRESFU_TEST_PG: run the tests with `make test`"),
    };
    let name = unique("t").replace('-', "_");
    let admin = sqlx::PgPool::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    format!("{base}/{name}")
}

pub struct Sidecar {
    child: Child,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub log: PathBuf,
    pub db: String,
}

#[derive(Default)]
pub struct SidecarOptions {
    pub join_key_pem: Option<String>,
    pub bridge: Option<(String, String)>,
    pub env: Vec<(String, String)>,
}

impl Sidecar {
    pub async fn start(project: &Project, db: String, options: SidecarOptions) -> Sidecar {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = log_dir().join(format!("{}-sidecar-{}.log", project.id, addr.port()));
        let file = std::fs::File::create(&log).unwrap();
        // Like the broadcast's: FIRESFU_TEST_BIN (a release build for `make bench`) or this one.
        let bin = std::env::var("FIRESFU_TEST_BIN").unwrap_or(env!("CARGO_BIN_EXE_firesfu").into());
        let mut cmd = Command::new(bin);
        cmd.arg("sidecar")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,firesfu=debug")
            .env("GOOGLE_CLOUD_PROJECT", &project.id)
            .env("FIRESTORE_EMULATOR_HOST", &project.host)
            .env("DATABASE_URL", &db)
            .env("APP_PORT", addr.port().to_string())
            .env("FIRESFU_SIDECAR_BIND_IP", "127.0.0.1");
        let dir = log_dir();
        if let Some(pem) = options.join_key_pem {
            let path = dir.join(format!("{}-join-key.pem", project.id));
            std::fs::write(&path, pem).unwrap();
            cmd.env("FIRESFU_JOIN_KEY_FILE", path);
        }
        if let Some((issuer, public_pem)) = options.bridge {
            let path = dir.join(format!("{}-bridge.pub.pem", project.id));
            std::fs::write(&path, public_pem).unwrap();
            cmd.env("FIRESFU_BRIDGE_ISSUER", issuer)
                .env("FIRESFU_BRIDGE_PUBLIC_KEY_FILE", path);
        }
        for (k, v) in options.env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("cannot start firesfu sidecar");
        let mut s = Sidecar {
            child,
            addr,
            http: reqwest::Client::new(),
            log,
            db,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "sidecar exited ({status}):\n{}",
                    std::fs::read_to_string(&s.log).unwrap_or_default()
                );
            }
            if s.http
                .get(s.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not healthy:\n{}",
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process's resident memory, KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        firesfu::process::resident_kib(self.child.id())
    }

    /// `(status, body)`; the body is JSON when it parses, else a string.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a room as the holder of `token`; returns its id.
    pub async fn room(&self, token: &str, name: &str) -> String {
        let (status, room) = self
            .call(
                "POST",
                "/v1/rooms",
                Some(token),
                Some(serde_json::json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{room}");
        room["id"].as_str().unwrap().to_owned()
    }

    /// Registers and logs in; returns the access token and the user document.
    pub async fn user(&self, name: &str) -> (String, Value) {
        let creds = serde_json::json!({"username": name, "password": "correct horse battery"});
        let (status, _) = self
            .call("POST", "/v1/accounts", None, Some(creds.clone()))
            .await;
        assert_eq!(status, 201);
        let (status, login) = self.call("POST", "/v1/sessions", None, Some(creds)).await;
        assert_eq!(status, 200, "{login}");
        (
            login["accessToken"].as_str().unwrap().to_owned(),
            login["user"].clone(),
        )
    }
}

impl Sidecar {
    /// SIGKILL and wait: a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (the process flushes its telemetry on the way out).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts a problem+json response with the given status and type slug.
pub fn assert_problem(got: &(u16, Value), status: u16, slug: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(
        got.1["type"],
        format!("urn:firesfu:problem:{slug}"),
        "{}",
        got.1
    );
    assert_eq!(got.1["status"], status);
}
