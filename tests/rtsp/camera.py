#!/usr/bin/python3
"""A test IP camera: a GStreamer RTSP server with live test media, for the RTSP ingest tests.

Run it with Debian's /usr/bin/python3 (it has `gi`; other Pythons on the machine may not).
`scripts/deps.sh` installs the GStreamer packages it needs.

Mounts (all live, shared: every client of a mount gets the same running pipeline):
  /h264        H.264 constrained baseline (x264, zerolatency, GOP = 1 s) + PCMU 8 kHz mono
  /h264-main   H.264 main (CABAC), no B-frames + PCMU
  /bframes     H.264 main with B-frames (bframes=2, b-adapt off, no zerolatency) + PCMU
  /h265        H.265 main (x265, zerolatency, GOP = 1 s), video only
  /aac         H.264 constrained baseline + AAC-LC 16 kHz mono (RFC 3640, mpeg4-generic)
  /video-only  H.264 constrained baseline, no audio
Video is RTP payload type 96, PCMU 0 (20 ms packets), AAC 97. H.264/H.265 parameter sets are
sent both in the SDP (sprop-parameter-sets / sprop-vps,sps,pps) and in-band before every
keyframe, as real cameras do. At 640x360 the SDP says profile-level-id=42c01e (/h264, /aac,
/video-only: constrained baseline 3.0) and 4d401e (/h264-main, /bframes), packetization-mode=1.
A client that joins a mount another client already plays gets the next keyframe within 1 s.

With --auth basic|digest every mount needs --user/--password (no anonymous access: an
unauthenticated request gets 401). One process serves one auth mode.

Prints exactly one line `ready rtsp://ADDRESS:PORT` on stdout once listening (with --port 0,
the port the system chose); exits 0 on SIGTERM or SIGINT, 1 if it cannot listen.

Latency stamp (--stamp): every video frame carries the sender's wall clock, drawn just before
encoding (after the test pattern and the time overlay):
  value    = Unix time in milliseconds (time.time_ns() // 1_000_000), as 48 bits
  position = a row of 48 square blocks at the top-left corner of the picture: block i covers
             x in [i*B, (i+1)*B), y in [0, B), B = --stamp-block pixels (default 8), so the
             row is 48*B pixels wide and needs width >= 48*B
  bit order= block 0 (leftmost) is the most significant bit (bit 47), block 47 the least
  colors   = white (255,255,255) is 1, black (0,0,0) is 0
A decoder (e.g. a browser drawing the <video> onto a canvas at its natural size) reads the
pixel at the centre of each block, (i*B + B/2, B/2), takes bit = (R+G+B)/3 > 127, and
value = sum(bit_i * 2**(47-i)); in JS use arithmetic, not 32-bit bit operations.
The stamp is drawn about 40 ms before the frame's last RTP packet leaves the camera (measured
on loopback, 640x360@25: p50 38 ms; GStreamer holds each frame for the pipeline latency), so
"now - stamp" at a receiver includes that camera-side delay, as with a real camera's encoder.
"""

import argparse
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

STAMP_BITS = 48


def video_source(o):
    """Raw live video, I420, with the time overlay and, with --stamp, the latency stamp."""
    size = f"width={o.width},height={o.height},framerate={o.fps}/1"
    overlay = "timeoverlay halignment=right valignment=bottom font-desc=\"Sans 18\""
    if o.stamp:
        # cairooverlay draws on BGRx; the encoders want I420.
        return (
            f"videotestsrc is-live=true pattern={o.pattern} ! video/x-raw,format=BGRx,{size} "
            f"! {overlay} ! cairooverlay name=stamp ! videoconvert ! video/x-raw,format=I420 "
        )
    return (
        f"videotestsrc is-live=true pattern={o.pattern} ! video/x-raw,format=I420,{size} "
        f"! {overlay} "
    )


def h264(o, kind):
    # threads=1: one slice per picture, like most cameras (zerolatency's sliced threads would
    # cut every picture into slices, and rtph264pay would then repeat SPS/PPS before each
    # slice of a keyframe, which no camera does).
    # x264 itself repeats SPS and PPS before every IDR picture (in-band), so the payloader
    # must not add them again (config-interval=0; -1 would send every keyframe as SPS, PPS,
    # SPS, PPS, IDR); aud=false leaves out access unit delimiters. Keyframes go out as SPS,
    # PPS, IDR, as most cameras send them, and the SDP carries sprop-parameter-sets too.
    common = f"key-int-max={o.fps} bitrate={o.bitrate} threads=1 aud=false"
    if kind == "baseline":
        # ultrafast: no CABAC, no B-frames, no 8x8 transform -> constrained baseline.
        enc = f"x264enc tune=zerolatency speed-preset=ultrafast {common} ! video/x-h264,profile=constrained-baseline"
    elif kind == "main":
        # superfast keeps CABAC (so the stream is really main); zerolatency turns B-frames off.
        enc = f"x264enc tune=zerolatency speed-preset=superfast {common} ! video/x-h264,profile=main"
    elif kind == "bframes":
        enc = f"x264enc speed-preset=superfast bframes=2 b-adapt=false {common} ! video/x-h264,profile=main"
    else:
        raise ValueError(kind)
    return f"{video_source(o)}! {enc} ! rtph264pay name=pay0 pt=96 config-interval=0 "


def h265(o):
    return (
        # Closed GOPs (IDR, not CRA) with VPS, SPS and PPS in-band before each, as for H.264.
        f"{video_source(o)}! x265enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={o.fps} bitrate={o.bitrate} option-string=repeat-headers=1:open-gop=0 "
        f"! video/x-h265,profile=main "
        f"! rtph265pay name=pay0 pt=96 config-interval=0 "
    )


def pcmu(name):
    # 20 ms packets (160 samples at 8 kHz), like a real camera.
    return (
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 samplesperbuffer=160 "
        "! audio/x-raw,rate=8000,channels=1 ! mulawenc "
        f"! rtppcmupay name={name} pt=0 min-ptime=20000000 max-ptime=20000000 "
    )


def aac(name):
    return (
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 "
        "! audio/x-raw,rate=16000,channels=1 ! voaacenc bitrate=32000 "
        f"! rtpmp4gpay name={name} pt=97 "
    )


def mounts(o):
    return {
        "/h264": h264(o, "baseline") + pcmu("pay1"),
        "/h264-main": h264(o, "main") + pcmu("pay1"),
        "/bframes": h264(o, "bframes") + pcmu("pay1"),
        "/h265": h265(o),
        "/aac": h264(o, "baseline") + aac("pay1"),
        "/video-only": h264(o, "baseline"),
    }


def draw_stamp(block):
    def draw(_overlay, ctx, _timestamp, _duration):
        now_ms = time.time_ns() // 1_000_000
        ctx.set_source_rgb(0, 0, 0)
        ctx.rectangle(0, 0, STAMP_BITS * block, block)
        ctx.fill()
        ctx.set_source_rgb(1, 1, 1)
        for i in range(STAMP_BITS):
            if (now_ms >> (STAMP_BITS - 1 - i)) & 1:
                ctx.rectangle(i * block, 0, block, block)
        ctx.fill()

    return draw


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8554, help="0: any free port (printed in the ready line)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--bitrate", type=int, default=1000, help="video bitrate, kbit/s")
    p.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball, smpte, snow, ...)")
    p.add_argument("--auth", choices=["none", "basic", "digest"], default="none")
    p.add_argument("--user", default="camera")
    p.add_argument("--password", default="secret")
    p.add_argument("--stamp", action="store_true", help="draw the sender's wall clock (ms) into each frame")
    p.add_argument("--stamp-block", type=int, default=8, help="stamp block size in pixels")
    o = p.parse_args()
    if o.stamp and o.width < STAMP_BITS * o.stamp_block:
        p.error(f"--stamp needs --width >= {STAMP_BITS * o.stamp_block}")

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address(o.address)
    server.set_service(str(o.port))

    permissions = None
    if o.auth != "none":
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        if o.auth == "basic":
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(o.user, o.password), token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        else:
            auth.add_digest(o.user, o.password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        # No default token: anonymous requests are refused with 401 on every mount.
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera-user", "media.factory.access", True)
        permissions.add_permission_for_role("camera-user", "media.factory.construct", True)

    def configure(_factory, media):
        stamp = media.get_element().get_by_name("stamp")
        if stamp is not None:
            stamp.connect("draw", draw_stamp(o.stamp_block))

    table = server.get_mount_points()
    for path, launch in mounts(o).items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {launch})")
        factory.set_shared(True)
        if permissions is not None:
            factory.set_permissions(permissions)
        factory.connect("media-configure", configure)
        table.add_factory(path, factory)

    if server.attach(None) == 0:
        print(f"camera: cannot listen on {o.address}:{o.port}", file=sys.stderr, flush=True)
        sys.exit(1)

    def stop():
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, stop)
    print(f"ready rtsp://{o.address}:{server.get_bound_port()}", flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
