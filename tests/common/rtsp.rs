//! The test IP camera: `tests/rtsp/camera.py`, a GStreamer RTSP server with live test media
//! (H.264 baseline/main/B-frames, H.265, PCMU, AAC; optional Basic or Digest auth; optional
//! latency stamp), run as its own process for the RTSP ingest tests.
//!
//! Each camera listens on a port below the ephemeral range ([`stable_tcp_port`]) so that
//! [`RtspCamera::stop`] then [`RtspCamera::start_again`] serves the same URLs, as a camera that
//! reboots does. It runs in its own process group under a small bash watchdog that stops it
//! when this test process dies (statics and leaked values are never dropped); [`Drop`] kills
//! the group. Logs: `log_dir()/rtsp-camera-<port>-<start>.log`.
//!
//! Starting is blocking (about 0.1 s until the camera prints `ready`); call it before or
//! outside the async parts of a test, or accept the short block.
//! `scripts/deps.sh` installs what the camera needs (GStreamer, its RTSP server, x264/x265).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use super::{log_dir, stable_tcp_port};

/// The camera's mounts (see `tests/rtsp/camera.py`). Video is payload type 96, PCMU 0, AAC 97;
/// parameter sets are in the SDP and in-band before every keyframe; a keyframe every second.
pub mod mount {
    /// H.264 constrained baseline (profile-level-id 42c01e at 640x360) + PCMU 8 kHz mono.
    pub const H264: &str = "/h264";
    /// H.264 main (CABAC), no B-frames (4d401e) + PCMU.
    pub const H264_MAIN: &str = "/h264-main";
    /// H.264 main with B-frames (2, so decode order differs from presentation order) + PCMU.
    pub const BFRAMES: &str = "/bframes";
    /// H.265 main, video only.
    pub const H265: &str = "/h265";
    /// H.264 constrained baseline + AAC-LC 16 kHz mono (MPEG4-GENERIC, RFC 3640).
    pub const AAC: &str = "/aac";
    /// H.264 constrained baseline, no audio track.
    pub const VIDEO_ONLY: &str = "/video-only";
    pub const ALL: [&str; 6] = [H264, H264_MAIN, BFRAMES, H265, AAC, VIDEO_ONLY];
}

/// Debian's Python: it has `gi` (other Pythons on the machine may not).
const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp/camera.py")
}

/// How clients must authenticate. With `Basic` or `Digest`, every mount needs the
/// credentials; requests without them, or with wrong ones, get 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraAuth {
    None,
    Basic,
    Digest,
}

impl CameraAuth {
    fn arg(self) -> &'static str {
        match self {
            CameraAuth::None => "none",
            CameraAuth::Basic => "basic",
            CameraAuth::Digest => "digest",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CameraOptions {
    /// The address it listens on (and that its URLs name).
    pub address: String,
    /// `None`: a fresh [`stable_tcp_port`].
    pub port: Option<u16>,
    pub auth: CameraAuth,
    pub user: String,
    pub password: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// A `videotestsrc` pattern: `ball`, `smpte`, `snow`, …
    pub pattern: String,
    /// Draw the sender's wall clock into every frame (see `tests/rtsp/camera.py` for the
    /// encoding: 48 blocks of 8x8 px at the top-left, most significant bit first, white = 1,
    /// Unix time in ms). Needs `width >= 384`.
    pub stamp: bool,
    /// Run inside this network namespace (`ip netns exec`); `address` must be one of its
    /// addresses.
    pub netns: Option<String>,
}

impl Default for CameraOptions {
    fn default() -> Self {
        CameraOptions {
            address: "127.0.0.1".into(),
            port: None,
            auth: CameraAuth::None,
            user: "camera".into(),
            // A test may set one with `:`, `@` or `%` in it: `url_with_credentials`
            // percent-encodes it, as users paste camera URLs.
            password: "secret".into(),
            width: 640,
            height: 360,
            fps: 25,
            bitrate_kbps: 1000,
            pattern: "ball".into(),
            stamp: false,
            netns: None,
        }
    }
}

impl CameraOptions {
    pub fn with_auth(auth: CameraAuth) -> CameraOptions {
        CameraOptions {
            auth,
            ..Default::default()
        }
    }

    /// A camera inside the network namespace `netns`, listening on `address` there.
    pub fn in_netns(netns: &str, address: &str) -> CameraOptions {
        CameraOptions {
            address: address.into(),
            netns: Some(netns.into()),
            ..Default::default()
        }
    }
}

/// A running test camera (see the module documentation).
pub struct RtspCamera {
    pub options: CameraOptions,
    pub port: u16,
    /// The log of the current (or last) start.
    pub log: PathBuf,
    /// How long the last start took until the camera listened.
    pub started_in: Duration,
    starts: u32,
    /// The watchdog shell: the leader of the camera's process group, and its parent.
    child: Option<Child>,
}

impl RtspCamera {
    /// Starts the camera and waits until it listens (panics with its log otherwise).
    pub fn start(options: CameraOptions) -> RtspCamera {
        let port = options.port.unwrap_or_else(stable_tcp_port);
        let mut camera = RtspCamera {
            options,
            port,
            log: PathBuf::new(),
            started_in: Duration::ZERO,
            starts: 0,
            child: None,
        };
        camera.spawn();
        camera
    }

    /// Starts a camera inside the network namespace `netns`, listening on `address` there.
    pub fn start_in_netns(netns: &str, address: &str, options: CameraOptions) -> RtspCamera {
        RtspCamera::start(CameraOptions {
            address: address.into(),
            netns: Some(netns.into()),
            ..options
        })
    }

    fn command_line(&self) -> String {
        let o = &self.options;
        let mut args: Vec<String> = Vec::new();
        if let Some(ns) = &o.netns {
            args.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        args.push(PYTHON.into());
        args.push(script().display().to_string());
        for (k, v) in [
            ("--address", o.address.clone()),
            ("--port", self.port.to_string()),
            ("--auth", o.auth.arg().into()),
            ("--user", o.user.clone()),
            ("--password", o.password.clone()),
            ("--width", o.width.to_string()),
            ("--height", o.height.to_string()),
            ("--fps", o.fps.to_string()),
            ("--bitrate", o.bitrate_kbps.to_string()),
            ("--pattern", o.pattern.clone()),
        ] {
            args.push(k.into());
            args.push(v);
        }
        if o.stamp {
            args.push("--stamp".into());
        }
        args.iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts the camera under a watchdog shell in a new process group. The shell forwards
    /// SIGTERM (and its own end) to the camera and exits with the camera's status; it stops
    /// the camera when this test process is gone.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the camera is already running");
        self.starts += 1;
        self.log = log_dir().join(format!("rtsp-camera-{}-{}.log", self.port, self.starts));
        let log = std::fs::File::create(&self.log).unwrap();
        let watchdog = format!(
            r#"{command} &
c=$!
finish() {{
  kill -TERM $c 2>/dev/null
  for _ in $(seq 50); do kill -0 $c 2>/dev/null || break; sleep 0.1; done
  kill -KILL $c 2>/dev/null
  wait $c
  exit $?
}}
trap finish TERM INT HUP
# Alive and not a zombie (a killed test process can stay one for a while).
alive() {{ s=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null) && [ "${{s%% *}}" != Z ]; }}
while alive {test} && alive $c; do sleep 0.2; done
alive $c && finish
wait $c"#,
            command = self.command_line(),
            test = std::process::id(),
        );
        let started = Instant::now();
        let mut child = Command::new("bash")
            .args(["-c", &watchdog])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start bash for the test camera");
        let deadline = started + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("ready rtsp://")) {
                let expected = format!("ready rtsp://{}:{}", self.options.address, self.port);
                assert_eq!(line, expected, "unexpected ready line; log:\n{text}");
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the test camera exited ({status}) before it was ready; log {}:\n{text}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                panic!(
                    "the test camera was not ready within 30 s; log {}:\n{text}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.started_in = started.elapsed();
        self.child = Some(child);
    }

    /// `rtsp://address:port/mount` (`mount` with or without its leading `/`).
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://{}/{}", self.host(), mount.trim_start_matches('/'))
    }

    /// The URL with the camera's user and password in it (percent-encoded).
    pub fn url_with_credentials(&self, mount: &str) -> String {
        self.url_with(mount, &self.options.user, &self.options.password)
    }

    /// The URL with the given user and password (e.g. a wrong one).
    pub fn url_with(&self, mount: &str, user: &str, password: &str) -> String {
        format!(
            "rtsp://{}:{}@{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.host(),
            mount.trim_start_matches('/')
        )
    }

    /// `address:port`.
    pub fn host(&self) -> String {
        if self.options.address.contains(':') {
            format!("[{}]:{}", self.options.address, self.port)
        } else {
            format!("{}:{}", self.options.address, self.port)
        }
    }

    /// The process group (the watchdog shell's pid), while running.
    pub fn pgid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_group(&self, signal: &str) {
        if let Some(g) = self.pgid() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), "--", &format!("-{g}")])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGTERM (the camera closes its server and exits 0), then waits. Returns the camera's
    /// exit status; after 5 s it is killed (status 137).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the camera is not running");
        self.signal_cont();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Anything left in the group (nothing, normally).
        self.signal_group_of(child.id(), "KILL");
        wait_group_gone(child.id(), Duration::from_secs(5));
        status
    }

    /// Starts it again after [`Self::stop`] or [`Self::kill`]: same port, same options, so the
    /// same URLs. Waits until it listens.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// SIGKILL, like a power cut: connections are reset, no goodbye. Returns once the whole
    /// process group is gone (so the port is free for [`Self::start_again`]).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal_group_of(child.id(), "KILL");
            let _ = child.wait();
            wait_group_gone(child.id(), Duration::from_secs(5));
        }
    }

    /// SIGSTOP: the camera keeps its connections but sends and answers nothing (a hung
    /// camera or a dead link) until [`Self::thaw`].
    pub fn freeze(&self) {
        self.signal_group("STOP");
    }

    pub fn thaw(&self) {
        self.signal_cont();
    }

    fn signal_cont(&self) {
        self.signal_group("CONT");
    }

    fn signal_group_of(&self, pgid: u32, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until no process of group `pgid` exists any more (killed processes linger briefly
/// until they are reaped).
fn wait_group_gone(pgid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let alive = Command::new("kill")
            .args(["-0", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Quotes `s` for bash.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for URL userinfo).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
