//! The `firesfu` command line. Every flag can also come from the environment variable named
//! beside it (listed with defaults in `.env.example`); the variable names of the original Go
//! core are kept where they apply (`APP_NAME`, `APP_PORT`, `GOOGLE_CLOUD_PROJECT`, ...).

use std::net::{IpAddr, SocketAddr};

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::gcp::GcpArgs;

#[derive(Debug, Parser)]
#[command(
    name = "firesfu",
    version,
    about = "A WebRTC SFU with Firestore signalling"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: crate::telemetry::TelemetryArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer offers from Firestore and forward media between the participants of each room.
    Broadcast(BroadcastArgs),
    /// The HTTP API for users, rooms, room images and join tokens (PostgreSQL).
    Sidecar(crate::sidecar::SidecarArgs),
    /// Consume load reports, place every room on one broadcast instance, move rooms off dead
    /// or draining instances (one leader at a time, elected by a Firestore lease).
    Monitor(crate::fleet::monitor::MonitorArgs),
    /// Create, list and revoke the API keys applications' servers call the sidecar with.
    Apikey(crate::sidecar::apikeys::ApikeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub gcp: GcpArgs,
    /// This instance's id in session documents (default: the host name, a pod's name). Stable
    /// across restarts: a restarted instance ends the sessions its previous life left. Two
    /// instances must never share one.
    #[arg(long, env = "FIRESFU_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// The one UDP socket all peers share. `[::]` is dual stack (IPv4 and IPv6; IPv4 only
    /// where the kernel has no IPv6).
    #[arg(long, env = "FIRESFU_UDP_BIND", default_value = "[::]:4443")]
    pub udp_bind: SocketAddr,
    #[command(flatten)]
    pub ice_tcp: IceTcpArgs,
    /// IPs to advertise in ICE candidates (NAT 1:1, e.g. the load balancer's), comma-separated.
    /// Default: the bind address.
    #[arg(
        long = "advertise-ip",
        env = "FIRESFU_ADVERTISE_IPS",
        value_delimiter = ','
    )]
    pub advertise_ips: Vec<IpAddr>,
    /// UDP receive buffer to ask the kernel for, in bytes.
    #[arg(long, env = "FIRESFU_UDP_RECV_BUFFER", default_value_t = 8 << 20)]
    pub udp_recv_buffer: usize,
    /// UDP send buffer to ask the kernel for, in bytes.
    #[arg(long, env = "FIRESFU_UDP_SEND_BUFFER", default_value_t = 4 << 20)]
    pub udp_send_buffer: usize,
    /// Answer as an ICE-lite agent (the client runs the checks).
    #[arg(long, env = "FIRESFU_ICE_LITE", default_value_t = true, action = ArgAction::Set)]
    pub ice_lite: bool,
    /// Close peers silent for this many seconds.
    #[arg(long, env = "FIRESFU_PEER_TIMEOUT_SECS", default_value_t = 15)]
    pub peer_timeout_secs: u64,
    /// Video codecs to forward, comma-separated (VP8, H264, VP9). IP cameras need H264 (their
    /// video is forwarded as it comes, never transcoded).
    #[arg(
        long,
        env = "FIRESFU_VIDEO_CODECS",
        value_delimiter = ',',
        default_value = "VP8,H264"
    )]
    pub video_codecs: Vec<String>,
    /// The key cameras' settings are sealed with: the sidecar's, 32 bytes in base64. Without
    /// it this instance pulls no camera (their state says so). Prefer the file.
    #[arg(long, env = "FIRESFU_CAMERA_KEY", hide_env_values = true)]
    pub camera_key: Option<crate::sealed::KeyText>,
    /// A file holding that key.
    #[arg(long, env = "FIRESFU_CAMERA_KEY_FILE")]
    pub camera_key_file: Option<std::path::PathBuf>,
    /// A camera must answer (DESCRIBE to PLAY) within this many seconds.
    #[arg(
        long,
        env = "FIRESFU_CAMERA_CONNECT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub camera_connect_timeout_secs: u64,
    /// A camera that sends nothing for this many seconds is reconnected.
    #[arg(long, env = "FIRESFU_CAMERA_READ_TIMEOUT_SECS", default_value_t = 5)]
    pub camera_read_timeout_secs: u64,
    /// How far ahead `expiresAt` of live session documents is kept (TTL cleanup), seconds.
    #[arg(long, env = "FIRESFU_SESSION_TTL_SECS", default_value_t = 7200)]
    pub session_ttl_secs: u64,
    /// The sidecar's JWKS (`http://sidecar/.well-known/jwks.json`): sessions must carry a join
    /// token signed by one of its keys.
    #[arg(long, env = "FIRESFU_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// DEVELOPMENT ONLY: admit sessions without a join token (ignored when FIRESFU_JWKS_URL is set).
    #[arg(long, env = "FIRESFU_DEV_NO_AUTH", default_value_t = false, action = ArgAction::Set)]
    pub dev_no_auth: bool,
    /// Port of the HTTP endpoint with /healthz and /stats.
    #[arg(long, env = "APP_PORT", default_value_t = 8080)]
    pub app_port: u16,
    /// Address the HTTP endpoint binds.
    #[arg(long, env = "FIRESFU_HTTP_BIND_IP", default_value = "0.0.0.0")]
    pub http_bind_ip: IpAddr,
    /// On SIGTERM, how long to wait for session documents to be closed, seconds.
    #[arg(long, env = "FIRESFU_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Run as part of a fleet: publish load reports, answer only rooms the monitor assigned to
    /// this instance, drain on SIGTERM. Off: a standalone instance answering every room.
    #[arg(long, env = "FIRESFU_FLEET", default_value_t = false, action = ArgAction::Set)]
    pub fleet: bool,
    /// Publish room events (joins, leaves, tracks, calls) on the events topic for webhooks
    /// (`firesfu sidecar` with FIRESFU_WEBHOOKS delivers them).
    #[arg(long = "events", env = "FIRESFU_EVENTS", default_value_t = false, action = ArgAction::Set)]
    pub publish_events: bool,
    #[command(flatten)]
    pub pubsub: crate::gcp::PubsubArgs,
    #[command(flatten)]
    pub k8s: crate::deploy::k8s::K8sArgs,
    /// Load report interval, milliseconds.
    #[arg(long, env = "FIRESFU_LOAD_REPORT_MS", default_value_t = 2000)]
    pub load_report_ms: u64,
    /// Most rooms the monitor may place here (0 = no limit).
    #[arg(long, env = "FIRESFU_MAX_ROOMS", default_value_t = 0)]
    pub max_rooms: u32,
    /// Most participants on this instance: joiners beyond it get `fleet-full`, and the monitor
    /// stops placing rooms here (0 = no limit).
    #[arg(long, env = "FIRESFU_MAX_PARTICIPANTS", default_value_t = 0)]
    pub max_participants: u32,
    /// Most participants in one room; joiners beyond it get `room-full` (0 = no limit).
    #[arg(long, env = "FIRESFU_MAX_ROOM_PARTICIPANTS", default_value_t = 100)]
    pub max_room_participants: u32,
    /// Most m-lines in one offer (`too-many-m-lines`); `wants` never asks for more slots than fit.
    #[arg(long, env = "FIRESFU_MAX_MEDIA_LINES", default_value_t = 64)]
    pub max_media_lines: u32,
    /// Most tracks one participant publishes (`too-many-tracks`).
    #[arg(long, env = "FIRESFU_MAX_TRACKS_PER_PARTICIPANT", default_value_t = 4)]
    pub max_tracks_per_participant: u32,
    /// How often every held session is checked against its document (a missed delete or close
    /// releases the peer), seconds.
    #[arg(long, env = "FIRESFU_RECONCILE_SECS", default_value_t = 30)]
    pub reconcile_secs: u64,
    /// Most published tracks before the monitor stops placing rooms here (0 = no limit).
    #[arg(long, env = "FIRESFU_MAX_PUBLISHED_TRACKS", default_value_t = 0)]
    pub max_published_tracks: u32,
    /// Draining (first SIGTERM in a fleet): exit once no room is assigned here and no peer is
    /// left, or after this many seconds. A second signal exits at once.
    #[arg(long, env = "FIRESFU_DRAIN_GRACE_SECS", default_value_t = 60)]
    pub drain_grace_secs: u64,
}

/// ICE-TCP: passive TCP candidates for clients whose network blocks UDP.
#[derive(Debug, Clone, Args)]
pub struct IceTcpArgs {
    /// Serve ICE-TCP next to UDP (UDP stays preferred by candidate priority).
    #[arg(long = "ice-tcp", env = "FIRESFU_ICE_TCP", default_value_t = true, action = ArgAction::Set)]
    pub enabled: bool,
    /// Where ICE-TCP listens. Default: the UDP bind address with the UDP port's number.
    #[arg(long = "ice-tcp-bind", env = "FIRESFU_ICE_TCP_BIND")]
    pub bind: Option<SocketAddr>,
    /// More ICE-TCP listeners, comma-separated `BIND[=PORT]`: PORT is what the candidates
    /// advertise when a load balancer maps it (say 443, which networks that allow nothing
    /// else allow) to BIND's port. Example: `[::]:4444=443`.
    #[arg(long = "ice-tcp-extra", env = "FIRESFU_ICE_TCP_EXTRA", value_delimiter = ',', value_parser = parse_tcp_listen)]
    pub extra: Vec<crate::media::TcpListen>,
    /// Most ICE-TCP connections from one client address. A whole office may sit behind one
    /// NAT address (browsers open one or two connections each); connections that do not
    /// authenticate within 5 s are closed, so this only bounds what one address can hold.
    #[arg(
        long = "ice-tcp-max-per-ip",
        env = "FIRESFU_ICE_TCP_MAX_PER_IP",
        default_value_t = 256
    )]
    pub max_per_ip: usize,
    /// Most ICE-TCP connections in all.
    #[arg(
        long = "ice-tcp-max",
        env = "FIRESFU_ICE_TCP_MAX",
        default_value_t = 4096
    )]
    pub max: usize,
}

impl IceTcpArgs {
    /// The listeners to open, given the UDP bind address.
    pub fn listens(&self, udp_bind: SocketAddr) -> Vec<crate::media::TcpListen> {
        if !self.enabled {
            return Vec::new();
        }
        let main = crate::media::TcpListen {
            // Port 0: the UDP socket's port number.
            bind: self.bind.unwrap_or(SocketAddr::new(udp_bind.ip(), 0)),
            advertised_port: 0,
        };
        std::iter::once(main)
            .chain(self.extra.iter().copied())
            .collect()
    }
}

fn parse_tcp_listen(s: &str) -> Result<crate::media::TcpListen, String> {
    let (bind, port) = match s.rsplit_once('=') {
        Some((bind, port)) => (
            bind,
            port.parse::<u16>()
                .map_err(|_| format!("{port:?} is not a port number"))?,
        ),
        None => (s, 0),
    };
    let bind = bind
        .parse::<SocketAddr>()
        .map_err(|_| format!("{bind:?} is not an address:port (e.g. [::]:4444)"))?;
    Ok(crate::media::TcpListen {
        bind,
        advertised_port: port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn extra_ice_tcp_listeners_parse() {
        let l = parse_tcp_listen("[::]:4444=443").unwrap();
        assert_eq!(l.bind, "[::]:4444".parse::<SocketAddr>().unwrap());
        assert_eq!(l.advertised_port, 443);
        assert_eq!(parse_tcp_listen("0.0.0.0:5000").unwrap().advertised_port, 0);
        assert!(parse_tcp_listen("nonsense=443").is_err());
        assert!(parse_tcp_listen("0.0.0.0:1=99999").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_instance_is_named_after_its_host_unless_configured() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["firesfu", "broadcast", "--project", "demo-p"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Broadcast(args) => crate::broadcast::instance_id(&args),
                _ => unreachable!(),
            }
        };
        // Stable across restarts: no random part (a restarted pod finds its previous life).
        assert_eq!(parse(&[]), crate::process::host_name("firesfu"));
        assert_eq!(parse(&[]), parse(&[]));
        assert_eq!(parse(&["--instance-id", "bc-7"]), "bc-7");
    }

    #[test]
    fn every_env_variable_is_in_env_example() {
        let example = include_str!("../.env.example");
        let cmd = Cli::command();
        let mut commands = vec![&cmd];
        commands.extend(cmd.get_subcommands());
        for c in commands {
            for arg in c.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let name = env.to_string_lossy();
                    assert!(
                        example
                            .lines()
                            .any(|l| l.trim_start_matches("# ").starts_with(&format!("{name}="))),
                        "{name} is missing from .env.example"
                    );
                }
            }
        }
    }
}
