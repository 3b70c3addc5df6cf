//! Emulators a chaos test owns: on a port fixed for the test's lifetime, so they can be killed
//! (SIGKILL: the in-memory data is gone, as after a crash), frozen (SIGSTOP: connections hang)
//! and started again where the clients look for them. The shared emulators of `make test`
//! are never touched.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{log_dir, stable_tcp_port, watched};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Firestore,
    Pubsub,
}

pub struct OwnedEmulator {
    kind: Kind,
    /// `127.0.0.1:port`, the same across restarts.
    pub host: String,
    starts: u32,
    /// The watchdogs of every start (each kills its emulator if this test process dies).
    watchdogs: Vec<std::process::Child>,
}

impl OwnedEmulator {
    pub fn start(kind: Kind) -> OwnedEmulator {
        let mut e = OwnedEmulator {
            kind,
            host: format!("127.0.0.1:{}", stable_tcp_port()),
            starts: 0,
            watchdogs: Vec::new(),
        };
        e.spawn();
        e
    }

    fn log(&self) -> PathBuf {
        let port = self.host.rsplit(':').next().unwrap_or_default();
        log_dir().join(format!("{:?}-{port}-{}.log", self.kind, self.starts).to_lowercase())
    }

    /// Starts the emulator (in a watched process group) and waits until it answers.
    fn spawn(&mut self) -> Duration {
        let started = Instant::now();
        let command = match self.kind {
            Kind::Firestore => {
                format!("gcloud emulators firestore start --host-port={}", self.host)
            }
            Kind::Pubsub => format!(
                "gcloud beta emulators pubsub start --host-port={}",
                self.host
            ),
        };
        self.starts += 1;
        let log = std::fs::File::create(self.log()).unwrap();
        let watchdog = watched(&command)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {:?} emulator (gcloud): {e}", self.kind));
        self.watchdogs.push(watchdog);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let up = match self.kind {
                Kind::Firestore => super::http_ok(&self.host),
                Kind::Pubsub => self.answers(),
            };
            if up {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the {:?} emulator did not come up within 60 s", self.kind);
    }

    fn answers(&self) -> bool {
        std::net::TcpStream::connect_timeout(
            &self.host.parse().unwrap(),
            Duration::from_millis(300),
        )
        .is_ok()
    }

    /// The process group of the running emulator (gcloud and its JVM share it).
    fn group(&self) -> Option<String> {
        let out = Command::new("pgrep")
            .args(["-f", "--", &format!("--host-port={}$", self.host)])
            .output()
            .ok()?;
        let pid = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .to_owned();
        let out = Command::new("ps")
            .args(["-o", "pgid=", "-p", &pid])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|g| !g.is_empty())
    }

    fn signal(&self, signal: &str) {
        let group = self
            .group()
            .unwrap_or_else(|| panic!("the {:?} emulator is not running", self.kind));
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{group}")])
            .status();
    }

    /// SIGKILL, like a crash: everything it held is lost. Returns once the port is closed.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answers() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again, empty, on the same port; returns how long it took to answer.
    pub fn restart(&mut self) -> Duration {
        self.spawn()
    }

    /// SIGSTOP: it keeps its data but answers nothing (connections hang) until [`Self::thaw`].
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }
}

impl Drop for OwnedEmulator {
    fn drop(&mut self) {
        if self.group().is_some() {
            self.signal("CONT");
            self.signal("KILL");
        }
        for w in &mut self.watchdogs {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}
