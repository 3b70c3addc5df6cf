//! Generates the fleet's and the events' protobuf messages (`proto/`) with prost. `protoc` comes from the
//! system (Debian's protobuf-compiler, installed by scripts/deps.sh) or $PROTOC; nothing is
//! downloaded at build time.
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(
        &[
            "proto/firesfu/fleet/v1/load_report.proto",
            "proto/firesfu/events/v1/event.proto",
        ],
        &["proto"],
    )
}
