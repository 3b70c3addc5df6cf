//! `bench`: the measurements behind docs/benchmarks.md (run them with `make bench`).

mod api;
mod costs;
mod floor;
mod forward;
mod janus;
mod join;
mod sidecar_memory;
mod stats;

use std::net::IpAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offer → answer and offer → first media latency over the Firestore emulator.
    Join {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 60)]
        joins: usize,
        #[arg(long, default_value = "127.0.0.1")]
        bind_ip: IpAddr,
    },
    /// CPU per forwarded packet through firesfu (1 publisher → N subscribers).
    ForwardFiresfu {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        stats_url: String,
        #[arg(long)]
        pid: u32,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// The same load through Janus's videoroom.
    ForwardJanus {
        #[arg(long)]
        url: String,
        /// Process group of the Janus process.
        #[arg(long)]
        pgid: u32,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Sidecar API: login latency and GET /v1/rooms throughput.
    Api {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 20)]
        logins: usize,
    },
    /// The sidecar's memory and latency under bursts of registrations and logins.
    SidecarMemory {
        #[arg(long)]
        url: String,
        /// The sidecar process (its VmRSS is sampled).
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 100)]
        requests: usize,
    },
    /// Firestore operations per participant-minute for rooms of several sizes.
    FirestoreCosts {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        project: String,
        /// The broadcast's /stats (its Firestore meter, when it has one).
        #[arg(long)]
        stats_url: String,
        #[arg(long, value_delimiter = ',', default_value = "2,8,25")]
        sizes: Vec<usize>,
        /// Steady-state window per room.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value = "127.0.0.1")]
        bind_ip: IpAddr,
    },
    /// The SRTP + UDP floor per forwarded packet.
    Floor {
        #[arg(long, default_value_t = 20)]
        subscribers: usize,
        #[arg(long, default_value_t = 20000)]
        packets: usize,
        #[arg(long, default_value_t = 1100)]
        payload_bytes: usize,
    },
}

#[derive(clap::Args)]
struct LoadArgs {
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Video frame size: 34 kB frames at 30 fps ≈ 950 packets/s (plus 50 audio).
    #[arg(long, default_value_t = 34_000)]
    frame_bytes: usize,
    #[arg(long)]
    bind_ip: IpAddr,
    /// Clients connect over ICE-TCP only.
    #[arg(long)]
    tcp: bool,
}

impl LoadArgs {
    fn load(&self) -> forward::Load {
        forward::Load {
            subscribers: self.subscribers,
            seconds: self.seconds,
            frame_bytes: self.frame_bytes,
            bind_ip: self.bind_ip,
            tcp: self.tcp,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let result = match Args::parse().command {
        Command::Join {
            emulator,
            project,
            joins,
            bind_ip,
        } => join::run(&emulator, &project, joins, bind_ip).await?,
        Command::ForwardFiresfu {
            emulator,
            project,
            stats_url,
            pid,
            load,
        } => forward::firesfu(&emulator, &project, &stats_url, pid, &load.load()).await?,
        Command::ForwardJanus { url, pgid, load } => {
            forward::janus(&url, pgid, &load.load()).await?
        }
        Command::Api {
            url,
            concurrency,
            seconds,
            logins,
        } => api::run(&url, concurrency, seconds, logins).await?,
        Command::SidecarMemory { url, pid, requests } => {
            sidecar_memory::run(&url, pid, requests).await?
        }
        Command::FirestoreCosts {
            emulator,
            project,
            stats_url,
            sizes,
            seconds,
            bind_ip,
        } => costs::run(&emulator, &project, &stats_url, &sizes, seconds, bind_ip).await?,
        Command::Floor {
            subscribers,
            packets,
            payload_bytes,
        } => floor::run(subscribers, packets, payload_bytes)?,
    };
    eprintln!("{}", serde_json::to_string(&result)?);
    Ok(())
}
