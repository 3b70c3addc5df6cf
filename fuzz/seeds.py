"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/): offers Chromium made
(captured/), offers in the forms Chromium (simulcast by rid, and by SSRC group) and str0m write, session documents around
them, RTP packets of each codec as they arrive (VP8, VP9, H.264, Opus with extensions), join
tokens, load reports and datagrams. Run from fuzz/: python3 seeds.py"""
import json
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def crlf(lines):
    return "\r\n".join(lines) + "\r\n"


SESSION = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
           "a=group:BUNDLE 0 1", "a=extmap-allow-mixed", "a=msid-semantic: WMS s1"]
ICE = ["c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:Xo4f", "a=ice-pwd:l3E0tXh5dbHzp9ZMdAE3Kx7c",
       "a=ice-options:trickle", "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass"]
AUDIO = ["m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8", *ICE, "a=mid:0",
         "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
         "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
         "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=sendonly", "a=msid:s1 a1", "a=rtcp-mux", "a=rtcp-rsize",
         "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc", "a=fmtp:111 minptime=10;useinbandfec=1",
         "a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000",
         "a=rtpmap:8 PCMA/8000", "a=ssrc:1001 cname:c", "a=ssrc:1001 msid:s1 a1"]
VIDEO_HEAD = ["m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103", *ICE, "a=mid:1",
              "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
              "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
              "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
              "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
              "a=sendonly", "a=msid:s1 v1", "a=rtcp-mux", "a=rtcp-rsize",
              "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 ccm fir",
              "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
              "a=rtpmap:98 VP9/90000", "a=fmtp:98 profile-id=0", "a=rtpmap:99 rtx/90000", "a=fmtp:99 apt=98",
              "a=rtpmap:102 H264/90000",
              "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
              "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102"]
RIDS = ["a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]
SIM = ["a=ssrc-group:FID 2001 2011", "a=ssrc-group:SIM 2001 2002 2003", "a=ssrc-group:FID 2002 2012",
       "a=ssrc-group:FID 2003 2013"] + [f"a=ssrc:{s} cname:c" for s in (2001, 2011, 2002, 2012, 2003, 2013)]
SLOT = ["m=video 9 UDP/TLS/RTP/SAVPF 96 97", *ICE, "a=mid:2", "a=recvonly", "a=rtcp-mux",
        "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 transport-cc", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96"]

chromium_rid = crlf(SESSION + AUDIO + VIDEO_HEAD + RIDS + SLOT)
chromium_sim = crlf(SESSION + AUDIO + VIDEO_HEAD + SIM)
receive_only = crlf(SESSION + [l.replace("sendonly", "recvonly") for l in AUDIO[:-2]] + SLOT)
str0m = crlf(["v=0", "o=str0m-1 1 2 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
              "a=fingerprint:sha-256 " + ":".join(["01"] * 32), "a=ice-ufrag:abcd", "a=ice-pwd:efghijklmnopqrstuvwxyz12",
              "a=ice-options:trickle", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
              "a=setup:actpass", "a=mid:0", "a=sendonly", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2",
              "a=fmtp:111 minptime=10;useinbandfec=1", "a=ssrc:1 cname:x", "a=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host",
              "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=setup:actpass", "a=mid:1", "a=sendonly",
              "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
              "a=ssrc-group:FID 2 3", "a=ssrc:2 cname:x", "a=ssrc:3 cname:x", "a=end-of-candidates"])
offers = {"chromium-rid": chromium_rid, "chromium-sim": chromium_sim, "receive-only": receive_only, "str0m": str0m}
# Offers Chromium 156 made (createOffer with a canvas and an oscillator as camera and microphone:
# simulcast by rid plus receive slots, plain, receive-only), kept verbatim in captured/.
for name in sorted(os.listdir(os.path.join(HERE, "captured"))):
    with open(os.path.join(HERE, "captured", name), newline="") as f:
        offers[name.removesuffix(".sdp")] = f.read()
for name, sdp in offers.items():
    put("offer_sdp", name, sdp)
    doc = {"v": 1, "uid": "u1", "displayName": "Ada", "token": None, "state": "offered",
           "offer": {"sdp": sdp, "revision": 1}}
    put("session_document", name + ".json", json.dumps(doc))
put("session_document", "answered.json", json.dumps({"v": 1, "displayName": "Ada", "state": "answered",
    "offer": {"sdp": "v=0", "revision": 2}, "answer": {"sdp": "v=0", "revision": 1}, "instance": "bc-1",
    "receive": {"2": {"maxHeight": 360, "pinned": True}, "3": {"maxHeight": 0}}}))
put("session_document", "closed.json", json.dumps({"v": 1, "state": "closed"}))


def rtp(pt, seq, ts, ssrc, payload, marker=False, exts=None):
    first = 0x80 | (0x10 if exts else 0)
    head = struct.pack("!BBHII", first, pt | (0x80 if marker else 0), seq, ts, ssrc)
    if exts:
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in exts)
        body += b"\0" * (-len(body) % 4)
        head += struct.pack("!HH", 0xBEDE, len(body) // 4) + body
    return head + payload


vp8_key = bytes([0x90, 0x80, 0x81, 0x23]) + bytes([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]) + b"\x55" * 40
vp8_delta = bytes([0x90, 0x80, 0x81, 0x24, 0x01]) + b"\x66" * 40
vp9_key = bytes([0x8e, 0x81, 0x23, 0x18, 0x05, 0x00, 0x02, 0xd0, 0x01, 0x01]) + b"\x77" * 30
h264_sps = bytes([0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8])
h264_stapa = bytes([0x18]) + struct.pack("!H", len(h264_sps)) + h264_sps + struct.pack("!H", 4) + bytes([0x68, 0xce, 0x3c, 0x80])
h264_fua = bytes([0x7c, 0x85]) + b"\x88" * 40
opus = bytes([0xfc]) + b"\x11" * 60
packets = {
    "vp8-key": rtp(96, 100, 9000, 1111, vp8_key, True, [(4, b"1"), (10, b"f")]),
    "vp8-delta": rtp(96, 101, 12000, 1111, vp8_delta, True, [(3, b"\x00\x07")]),
    "vp9-key": rtp(98, 7, 90000, 2222, vp9_key, True),
    "h264-stap-a": rtp(102, 5, 3000, 3333, h264_stapa),
    "h264-fu-a": rtp(102, 6, 3000, 3333, h264_fua, True),
    "opus-level": rtp(111, 55, 48000, 4444, opus, False, [(1, b"\x8a"), (4, b"0")]),
}
for name, p in packets.items():
    put("rtp_rewrite", name, p)
    # The datagram target: mode 1 (video) / 2 (audio) + seq, timestamp, marker, payload.
    mode = 2 if name.startswith("opus") else 1
    put("datagram", "rtp-" + name, bytes([mode]) + p[2:8] + bytes([p[1] >> 7]) + p[12:])
stun = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, b"fuzzfuzzfuzz")
put("datagram", "stun-binding", bytes([0]) + stun)
put("datagram", "dtls-alert", bytes([0]) + bytes([21, 0xfe, 0xfd, 0, 1]) + b"\0" * 8 + bytes([0, 2, 2, 40]))
put("datagram", "srtp-garbage", bytes([0]) + rtp(96, 1, 1, 5, b"\x00" * 30))
put("datagram", "srtcp-garbage", bytes([0]) + bytes([0x81, 200, 0, 6]) + b"\x01" * 28)
put("datagram", "stranger", bytes([3]) + stun)

b64 = lambda b: __import__("base64").urlsafe_b64encode(b).rstrip(b"=")
header = b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}).encode())
claims = b64(json.dumps({"iss": "firesfu-sidecar", "aud": "firesfu-broadcast", "sub": "u1", "room": "room-1",
                         "name": "Ada", "grants": {"publish": True, "subscribe": True}, "iat": 1799999990,
                         "exp": 1800000100, "jti": "j1"}).encode())
put("join_token", "eddsa", header + b"." + claims + b"." + b64(b"\x01" * 64))
put("join_token", "none-alg", b64(b'{"alg":"none"}') + b"." + claims + b".")
put("join_token", "hs256", b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + claims + b"." + b64(b"\x02" * 32))

proto = os.path.join(HERE, "..", "proto")
text = """instance_id: "bc-1" advertised_addresses: "10.0.0.1:4443" capacity { max_rooms: 50 max_participants: 500 }
rooms { room_id: "r1" participants: 3 published_tracks: 6 forwarded_tracks: 6 } rooms { room_id: "r2" participants: 1 }
bitrate_in_bps: 3000000 packet_loss: 0.01 cpu_cores: 0.4 sent_at_unix_ms: 1800000000000 sequence: 7 version: "0.1.0" """
try:
    enc = subprocess.run(["protoc", f"-I{proto}", "--encode=firesfu.fleet.v1.LoadReport",
                          "firesfu/fleet/v1/load_report.proto"], input=text.encode(), capture_output=True, check=True).stdout
    put("load_report", "report", enc)
except (OSError, subprocess.CalledProcessError) as e:
    print("load_report seed: protoc failed:", getattr(e, "stderr", e))
put("load_report", "empty", b"")
