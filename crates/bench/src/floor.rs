//! The physical floor of forwarding, measured on this machine in the same run: per forwarded
//! packet, its share of one SRTP decrypt plus one SRTP encrypt and one `sendto` on loopback.
//! No SFU can forward a packet for less than this with the same crypto.

use std::net::UdpSocket;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use rtc::rtp::{Header, Packet};
use rtc::shared::marshal::Marshal;
use rtc::srtp::context::Context as Srtp;
use rtc::srtp::protection_profile::ProtectionProfile;
use serde_json::{Value, json};

fn context(profile: ProtectionProfile) -> anyhow::Result<Srtp> {
    let provider = rtc::crypto::default_provider().map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = vec![7u8; profile.key_len()];
    let salt = vec![9u8; profile.salt_len()];
    Srtp::new(&key, &salt, profile, None, None, provider.crypto())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(subscribers: usize, packets: usize, payload_bytes: usize) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    for (name, profile) in [
        ("AEAD_AES_128_GCM", ProtectionProfile::AeadAes128Gcm),
        (
            "AES_CM_128_HMAC_SHA1_80",
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
    ] {
        let mut publisher = context(profile)?;
        let mut inbound = context(profile)?;
        let mut outbound: Vec<Srtp> = (0..subscribers)
            .map(|_| context(profile))
            .collect::<Result<_, _>>()?;
        let payload = Bytes::from(vec![0xab; payload_bytes]);
        let wire: Vec<_> = (0..packets)
            .map(|i| {
                let header = Header {
                    version: 2,
                    payload_type: 96,
                    sequence_number: i as u16,
                    timestamp: (i / 30) as u32 * 3000,
                    ssrc: 1,
                    ..Default::default()
                };
                let raw = Packet {
                    header,
                    payload: payload.clone(),
                }
                .marshal()?;
                publisher
                    .encrypt_rtp(&raw)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        let sink = UdpSocket::bind("127.0.0.1:0")?;
        let to = sink.local_addr()?;

        let start = Instant::now();
        for packet in &wire {
            let plain = inbound
                .decrypt_rtp(packet)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (i, out) in outbound.iter_mut().enumerate() {
                let mut copy = plain.clone();
                copy[8..12].copy_from_slice(&(100 + i as u32).to_be_bytes());
                let encrypted = out.encrypt_rtp(&copy).map_err(|e| anyhow::anyhow!("{e}"))?;
                sender.send_to(&encrypted, to).context("sendto")?;
            }
        }
        let elapsed = start.elapsed();
        let us = elapsed.as_secs_f64() * 1e6 / (packets * subscribers) as f64;
        println!(
            "floor ({name}): {us:.2} µs per forwarded packet (decrypt share + encrypt + sendto), one core"
        );
        results.push(json!({"profile": name, "usPerForwardedPacket": us}));
    }
    Ok(json!(results))
}
